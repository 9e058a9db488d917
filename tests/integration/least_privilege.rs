//! Least privilege on real PostgreSQL: a login role in the migrations' `inventory_writer`
//! group can do what the functions do (validate's quarantine, persist's append and projection
//! update, the reads) and nothing else: no UPDATE, DELETE or TRUNCATE of the event store, and
//! no DDL.

use crate::event_store::{count, pid};
use crate::quarantine::mixed_chunk;
use anyhow::{Context, Result};
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::{
    DatabaseConfig, DatabaseTarget, PgEventStore, PgQuarantine, TlsMode, connect, list_quarantine,
    load_offers,
};
use inventory::pipeline::PersistInput;
use inventory::usecase::{persist_updates, validate_chunk};
use sea_orm::{ConnectionTrait, DatabaseConnection};

/// A login role of its own in the writer group, dropped by [`WriterLogin::drop_role`].
struct WriterLogin {
    name: String,
}

impl WriterLogin {
    async fn create(admin: &DatabaseConnection, test: &TestDb) -> Result<Self> {
        let name = format!("{}_fn", test.name());
        admin
            .execute_unprepared(&format!(
                "CREATE ROLE \"{name}\" LOGIN IN ROLE {}",
                migration::WRITER_ROLE
            ))
            .await
            .with_context(|| format!("creating login role {name}"))?;
        Ok(Self { name })
    }

    /// A pool on the test database as this role, built the way the functions build theirs.
    async fn pool(&self, test: &TestDb) -> Result<DatabaseConnection> {
        let url = test
            .url
            .replacen("postgres@", &format!("{}@", self.name), 1);
        anyhow::ensure!(url != test.url, "the test URL names no user: {}", test.url);
        let config = DatabaseConfig {
            target: DatabaseTarget::Url(url),
            tls: TlsMode::AsConfigured,
            pool_max: 2,
        };
        Ok(connect(&config, None).await?)
    }

    async fn drop_role(self, admin: &DatabaseConnection) -> Result<()> {
        admin
            .execute_unprepared(&format!("DROP ROLE IF EXISTS \"{}\"", self.name))
            .await
            .with_context(|| format!("dropping role {}", self.name))?;
        Ok(())
    }
}

/// Runs `sql` as the writer and returns the server's refusal.
async fn refused(db: &DatabaseConnection, sql: &str) -> String {
    match db.execute_unprepared(sql).await {
        Ok(_) => format!("ALLOWED: {sql}"),
        Err(e) => e.to_string(),
    }
}

fn is_permission_error(message: &str) -> bool {
    message.contains("permission denied") || message.contains("must be owner")
}

#[tokio::test]
async fn the_writer_role_appends_and_projects_but_cannot_rewrite_history_or_change_the_schema()
-> Result<()> {
    let t = TestDb::new().await?;
    let login = WriterLogin::create(&t.db, &t).await?;
    let writer = login.pool(&t).await?;
    let input = mixed_chunk();

    let validated = validate_chunk(&input, &PgQuarantine::new(writer.clone())).await?;
    let persisted = persist_updates(
        &PersistInput {
            chunk: input.chunk.clone(),
            updates: validated.valid.clone(),
        },
        &PgEventStore::new(writer.clone()),
    )
    .await?;
    let again = persist_updates(
        &PersistInput {
            chunk: input.chunk.clone(),
            updates: validated.valid.clone(),
        },
        &PgEventStore::new(writer.clone()),
    )
    .await?;
    let offers = load_offers(&writer, &pid("product123")).await?;
    let quarantined = list_quarantine(&writer, 0, 100).await?;

    assert!(persisted.appended > 0, "the writer's appends landed");
    assert_eq!(
        persisted.appended + persisted.duplicates,
        validated.valid.len()
    );
    assert_eq!(again.appended, 0, "a redelivery appends nothing");
    assert!(
        !offers.is_empty(),
        "the projection was updated and is readable"
    );
    assert_eq!(quarantined.len(), validated.rejected.len());
    assert_eq!(
        count(&t.db, "inventory_events").await?,
        i64::try_from(persisted.appended)?
    );
    for sql in [
        "UPDATE inventory_events SET event_type = 'x'",
        "DELETE FROM inventory_events",
        "TRUNCATE inventory_events",
        "TRUNCATE product_offers",
        "DELETE FROM quarantined_records",
        "UPDATE quarantined_records SET reason_code = 'x'",
        "DROP TABLE product_offers",
        "CREATE TABLE evil (id int)",
        "ALTER TABLE inventory_events DISABLE TRIGGER ALL",
        "CREATE INDEX evil_idx ON product_offers (quantity)",
    ] {
        let message = refused(&writer, sql).await;
        assert!(is_permission_error(&message), "{sql}: {message}");
    }
    assert_eq!(
        count(&t.db, "inventory_events").await?,
        i64::try_from(persisted.appended)?,
        "the event store is as the writer left it"
    );

    writer.close().await.ok();
    login.drop_role(&t.db).await?;
    t.cleanup().await
}

#[tokio::test]
async fn migrating_many_databases_at_once_shares_one_writer_role() -> Result<()> {
    let dbs: Vec<TestDb> = futures_join(4).await?;

    let row = dbs[0]
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = '{}'",
                migration::WRITER_ROLE
            ),
        ))
        .await?
        .context("the writer role exists")?;
    let flags: Vec<bool> = (0..4)
        .map(|i| row.try_get_by_index::<bool>(i))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        flags, [false; 4],
        "NOLOGIN, and no superuser, CREATEROLE or CREATEDB"
    );
    for t in dbs {
        t.cleanup().await?;
    }
    Ok(())
}

/// `n` databases created and migrated concurrently (each migration creates the role if absent).
async fn futures_join(n: usize) -> Result<Vec<TestDb>> {
    let runs: Vec<_> = (0..n).map(|_| tokio::spawn(TestDb::new())).collect();
    let mut dbs = Vec::with_capacity(n);
    for run in runs {
        dbs.push(run.await??);
    }
    Ok(dbs)
}
