//! Migrations against real PostgreSQL: concurrent runs (two deploys, two cold starts) apply
//! the schema exactly once, and a current schema is left alone.

use crate::event_store::count;
use anyhow::Result;
use integration_tests::postgres::TestDb;

#[tokio::test]
async fn concurrent_migration_runs_all_succeed_and_apply_the_schema_once() -> Result<()> {
    let t = TestDb::empty().await?;
    let mut runs = Vec::new();
    for _ in 0..6 {
        let db = t.connect(1).await?;
        runs.push(tokio::spawn(async move { migration::run(&db).await }));
    }

    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await??);
    }

    applied.sort();
    assert_eq!(
        applied,
        migration::known(),
        "each migration was applied by exactly one run"
    );
    assert_eq!(
        count(&t.db, "seaql_migrations").await?,
        i64::try_from(migration::known().len())?
    );
    for table in [
        "inventory_events",
        "inventory_update_keys",
        "inventory_update_key_ids",
        "product_offers",
        "product_summaries",
        "quarantined_records",
    ] {
        assert_eq!(count(&t.db, table).await?, 0, "{table} exists and is empty");
    }
    t.cleanup().await
}

#[tokio::test]
async fn a_current_schema_is_left_alone() -> Result<()> {
    let t = TestDb::new().await?;

    let applied = migration::run(&t.db).await?;

    assert!(applied.is_empty(), "{applied:?}");
    assert_eq!(
        count(&t.db, "seaql_migrations").await?,
        i64::try_from(migration::known().len())?
    );
    t.cleanup().await
}
