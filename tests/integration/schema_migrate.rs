//! Migrations against real PostgreSQL: concurrent runs (two deploys, two cold starts) apply
//! the schema exactly once, a current schema is left alone, and so is one a newer release
//! migrated (after a rollback), unless this build's own migrations are missing below it.

use crate::event_store::count;
use anyhow::Result;
use integration_tests::postgres::TestDb;
use migration::MigratorTrait as _;
use sea_orm::ConnectionTrait as _;

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

/// After a rollback, this build meets the schema a newer release migrated: the migrations it
/// does not know stay and nothing is applied, so the rollback's migration run succeeds, and
/// the newer ones are named.
#[tokio::test]
async fn a_schema_a_newer_release_migrated_is_left_as_it_is() -> Result<()> {
    let t = TestDb::new().await?;
    t.db.execute_unprepared(&format!(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('{NEWER}', 0)"
    ))
    .await?;

    let run = migration::run_reporting(&t.db).await?;

    assert!(run.applied.is_empty(), "{:?}", run.applied);
    assert_eq!(run.newer, [NEWER]);
    assert_eq!(
        count(&t.db, "seaql_migrations").await?,
        i64::try_from(migration::known().len() + 1)?
    );
    t.cleanup().await
}

/// A database with a newer release's migration but without one of this build's is not a
/// rollback this build can run on: the run fails, names both, and applies nothing.
#[tokio::test]
async fn a_newer_schema_that_lacks_one_of_this_builds_migrations_is_refused() -> Result<()> {
    let t = TestDb::empty().await?;
    let known = migration::known();
    migration::Migrator::up(&t.db, Some(u32::try_from(known.len() - 1)?)).await?;
    t.db.execute_unprepared(&format!(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('{NEWER}', 0)"
    ))
    .await?;

    let e = migration::run(&t.db)
        .await
        .expect_err("a gap below a newer migration");

    let last = known.last().map(String::as_str).unwrap_or_default();
    assert!(
        e.to_string().contains(NEWER) && e.to_string().contains(last),
        "{e}"
    );
    assert_eq!(
        count(&t.db, "seaql_migrations").await?,
        i64::try_from(known.len())?,
        "nothing applied"
    );
    t.cleanup().await
}

/// A migration no build of this repository has: as a newer release's would be.
const NEWER: &str = "m20991231_000099_from_a_newer_release";
