//! SeaORM migrations for the inventory pipeline's database: the append-only event store, the
//! product projection, the quarantine of rejected records, the least-privilege role the
//! functions use, and (in [`login_role`]) the functions' login in that role, whose password is
//! sent only as its SCRAM verifier (computed in [`scram`]).
//!
//! [`run`] applies pending migrations under a PostgreSQL advisory lock, so two deploys or two
//! cold starts running it at once apply each migration exactly once. Migrations are never
//! edited once shipped: add a new file instead.

pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbBackend, Statement, TransactionTrait};

/// The `MigrationTrait` impl of a migration that is two SQL texts: it runs the module's `UP`
/// on the way up and its `DOWN` on the way down, each as one unprepared batch.
macro_rules! sql_migration {
    () => {
        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                manager
                    .get_connection()
                    .execute_unprepared(UP)
                    .await
                    .map(|_| ())
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                manager
                    .get_connection()
                    .execute_unprepared(DOWN)
                    .await
                    .map(|_| ())
            }
        }
    };
}
pub(crate) use sql_migration;

mod m20261124_000001_create_event_store;
mod m20261124_000002_create_projection;
mod m20261124_000003_create_quarantine;
mod m20261124_000004_grant_writer_role;
mod m20261124_000005_drop_unread_event_index;
mod m20261206_000006_partition_event_store;
mod m20261206_000007_projection_snapshots;
mod m20261206_000008_event_store_retention;
mod m20261207_000009_update_key_ids;
mod m20261207_000010_typed_event_columns;

pub mod login_role;
pub mod scram;

pub use login_role::{LoginRole, LoginRoleError, LoginRoleOutcome, ensure_login_role};
pub use m20261124_000004_grant_writer_role::WRITER_ROLE;

/// Key of the advisory lock that serialises migration runs ("inv-migr" in ASCII). Nothing
/// else in the database may use it.
pub const MIGRATION_LOCK_KEY: i64 = 0x696e_762d_6d69_6772;

/// The project's migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_event_store::Migration),
            Box::new(m20261124_000002_create_projection::Migration),
            Box::new(m20261124_000003_create_quarantine::Migration),
            Box::new(m20261124_000004_grant_writer_role::Migration),
            Box::new(m20261124_000005_drop_unread_event_index::Migration),
            Box::new(m20261206_000006_partition_event_store::Migration),
            Box::new(m20261206_000007_projection_snapshots::Migration),
            Box::new(m20261206_000008_event_store_retention::Migration),
            Box::new(m20261207_000009_update_key_ids::Migration),
            Box::new(m20261207_000010_typed_event_columns::Migration),
        ]
    }
}

/// Applies every pending migration and returns the names of those it applied (empty when the
/// schema was already current).
///
/// Everything runs in one transaction on one connection that first takes
/// `pg_advisory_xact_lock(MIGRATION_LOCK_KEY)`: a concurrent run waits for this one to commit,
/// then finds nothing pending. The lock is released on commit or rollback, and by the server
/// if the process dies mid-run, so it can never be left behind. PostgreSQL's DDL is
/// transactional, so a failed run leaves the schema as it was.
///
/// A database that a newer release migrated (this build is the one a rollback went back to)
/// has migrations this build does not know. They stay, nothing is applied, and this build runs
/// on the schema as it is: each migration keeps the release before it working (docs/deploy.md,
/// "Rolling back"), so a rollback completes instead of failing on the newer migrations. Only
/// if this build also has a migration the database lacks is that an error: applying it below
/// newer ones was never tested.
pub async fn run(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    Ok(run_reporting(db).await?.applied)
}

/// What a migration run did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRun {
    /// The migrations it applied, oldest first.
    pub applied: Vec<String>,
    /// The migrations the database has that this build does not know, oldest first: those of
    /// a newer release, after a rollback to this one (empty otherwise).
    pub newer: Vec<String>,
}

/// [`run`], with the migrations of a newer release it found left in place.
pub async fn run_reporting(db: &DatabaseConnection) -> Result<MigrationRun, DbErr> {
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK_KEY.into()],
    ))
    .await?;
    Migrator::install(&txn).await?;
    let applied = applied_names(&txn).await?;
    let known = known();
    let newer: Vec<&String> = applied.iter().filter(|a| !known.contains(a)).collect();
    if !newer.is_empty() {
        let missing: Vec<&String> = known.iter().filter(|k| !applied.contains(k)).collect();
        txn.commit().await?;
        if missing.is_empty() {
            return Ok(MigrationRun {
                applied: Vec::new(),
                newer: newer.into_iter().cloned().collect(),
            });
        }
        return Err(DbErr::Custom(format!(
            "the database has migrations this build does not know ({}), but not this build's {}: \
             deploy the release that applied them, or a newer one",
            names(&newer),
            names(&missing)
        )));
    }
    let pending: Vec<String> = Migrator::get_pending_migrations(&txn)
        .await?
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    if !pending.is_empty() {
        Migrator::up(&txn, None).await?;
    }
    txn.commit().await?;
    Ok(MigrationRun {
        applied: pending,
        newer: Vec::new(),
    })
}

/// The names of the migrations the database has applied, oldest first.
async fn applied_names(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT version FROM seaql_migrations ORDER BY version",
    ))
    .await?
    .iter()
    .map(|r| r.try_get::<String>("", "version"))
    .collect()
}

fn names(list: &[&String]) -> String {
    list.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names of all migrations this build knows, oldest first.
pub fn known() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_names_follow_the_seaorm_convention_and_are_ordered() {
        let names = known();
        assert_eq!(names.len(), 10);
        for n in &names {
            let (stamp, rest) = n.split_at(16);
            assert!(stamp.starts_with('m') && stamp.as_bytes()[9] == b'_', "{n}");
            assert!(
                stamp[1..].chars().all(|c| c.is_ascii_digit() || c == '_'),
                "{n}"
            );
            assert!(rest.starts_with('_') && rest.len() > 1, "{n}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "migrations must be listed oldest first");
    }
}
