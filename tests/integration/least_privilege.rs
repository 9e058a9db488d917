//! Least privilege on real PostgreSQL: a login role in the migrations' `inventory_writer`
//! group can do what the functions do (validate's quarantine, persist's append and projection
//! update, the reads) and nothing else: no UPDATE, DELETE or TRUNCATE of the event store, and
//! no DDL. `schema-migrate` creates that login from the functions' secret, follows a changed
//! secret, and refuses to hand over a privileged or badly named role.
//!
//! Roles are cluster-wide: each test names its roles after its own database and drops them.

use crate::event_store::{count, pid};
use crate::quarantine::mixed_chunk;
use anyhow::{Context, Result};
use async_trait::async_trait;
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::{
    DatabaseConfig, DatabaseTarget, PgEventStore, PgQuarantine, TlsMode, connect, list_quarantine,
    load_offers,
};
use inventory::config::DbCredentials;
use inventory::ports::{LoginSecret, SchemaMigrator};
use inventory::steps::payloads::PersistInput;
use inventory::steps::{persist_updates, validate_chunk};
use inventory::{ErrorKind, PipelineError};
use inventory_schema_migrate::PgSchemaMigrator;
use migration::LoginRoleOutcome;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use std::sync::{Arc, Mutex};

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
            target: DatabaseTarget::Url(inventory::redact::SecretUrl::new(url)),
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

    let checked = does_only_what_the_functions_do(&t, &writer).await;

    writer.close().await.ok();
    login.drop_role(&t.db).await?;
    checked?;
    t.cleanup().await
}

/// Validates, persists (twice) and reads as `writer`, then tries what no function may do.
async fn does_only_what_the_functions_do(t: &TestDb, writer: &DatabaseConnection) -> Result<()> {
    let input = mixed_chunk();

    let validated = validate_chunk(
        &input,
        &PgQuarantine::new(writer.clone()),
        crate::quarantine::soon_after(&input),
    )
    .await?;
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
    // The previous release's Persist, still running while the stack updates, records its keys
    // as this role too, through migration 9's trigger.
    let previous = crate::partitions::recorded_by_previous_release(
        writer,
        &validated.valid.iter().collect::<Vec<_>>(),
    )
    .await?;
    let newer = crate::event_store::update("product9", "s9", 1, "1", 9);
    let previous_new = crate::partitions::recorded_by_previous_release(writer, &[&newer]).await?;
    let offers = load_offers(writer, &pid("product123")).await?;
    let quarantined = list_quarantine(writer, 0, 100).await?;

    assert!(persisted.appended > 0, "the writer's appends landed");
    assert_eq!(
        persisted.appended + persisted.duplicates,
        validated.valid.len()
    );
    assert_eq!(again.appended, 0, "a redelivery appends nothing");
    assert!(
        previous.is_empty(),
        "this release's keys are repeats for the previous release: {previous:?}"
    );
    assert_eq!(previous_new, [newer.update_key.as_str()]);
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
        "DELETE FROM inventory_update_keys",
        "DELETE FROM inventory_update_key_ids",
        "TRUNCATE inventory_events_default",
        "DROP TABLE inventory_events_default",
        "SET inventory.move_default_partition = 'on'; DELETE FROM inventory_events_default",
        "CALL partman.partition_data_proc('public.inventory_events')",
    ] {
        let message = refused(writer, sql).await;
        assert!(is_permission_error(&message), "{sql}: {message}");
    }
    assert_eq!(
        count(&t.db, "inventory_events").await?,
        i64::try_from(persisted.appended)?,
        "the event store is as the writer left it"
    );
    Ok(())
}

#[tokio::test]
async fn migrating_many_databases_at_once_shares_one_writer_role() -> Result<()> {
    let dbs: Vec<TestDb> = futures_join(4).await?;

    let row = dbs[0]
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
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

/// The functions' login secret, changed by the test between runs.
struct TestLoginSecret(Mutex<(String, String)>);

impl TestLoginSecret {
    fn new(username: &str, password: &str) -> Arc<Self> {
        Arc::new(Self(Mutex::new((username.to_owned(), password.to_owned()))))
    }

    fn set_password(&self, password: &str) {
        self.0.lock().expect("lock").1 = password.to_owned();
    }
}

#[async_trait]
impl LoginSecret for TestLoginSecret {
    async fn read(&self) -> Result<DbCredentials, PipelineError> {
        let (username, password) = self.0.lock().expect("lock").clone();
        Ok(DbCredentials {
            username,
            password: password.into(),
        })
    }
}

/// The role's stored password verifier (`pg_authid` is readable by the test's superuser).
async fn stored_verifier(admin: &DatabaseConnection, role: &str) -> Result<Option<String>> {
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            [role.into()],
        ))
        .await?
        .with_context(|| format!("role {role} exists"))?;
    Ok(row.try_get("", "rolpassword")?)
}

/// Whether `verifier` (`SCRAM-SHA-256$<i>:<salt>$<StoredKey>:<ServerKey>`) is the one for
/// `password`: recomputed with its own salt and iterations.
fn verifier_accepts(verifier: &str, password: &str) -> Result<bool> {
    use base64::Engine as _;
    let rest = verifier
        .strip_prefix("SCRAM-SHA-256$")
        .with_context(|| format!("not a SCRAM verifier: {verifier}"))?;
    let (params, _) = rest.split_once('$').context("no keys")?;
    let (iterations, salt) = params.split_once(':').context("no salt")?;
    let salt = base64::engine::general_purpose::STANDARD.decode(salt)?;
    Ok(migration::scram::scram_sha256_verifier(password, &salt, iterations.parse()?) == verifier)
}

/// LOGIN, INHERIT, a member of the writer group, and nothing more.
async fn login_flags(admin: &DatabaseConnection, role: &str) -> Result<Vec<bool>> {
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT rolcanlogin, rolinherit, pg_has_role(oid, $2, 'MEMBER'), \
                    rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls \
             FROM pg_roles WHERE rolname = $1",
            [role.into(), migration::WRITER_ROLE.into()],
        ))
        .await?
        .with_context(|| format!("role {role} exists"))?;
    (0..8)
        .map(|i| Ok(row.try_get_by_index::<bool>(i)?))
        .collect()
}

async fn drop_role(admin: &DatabaseConnection, role: &str) -> Result<()> {
    admin
        .execute_unprepared(&format!("DROP ROLE IF EXISTS \"{role}\""))
        .await
        .with_context(|| format!("dropping role {role}"))?;
    Ok(())
}

/// A login role of the test's own, dropped when the test ends, failed or not (roles outlive
/// the test's database). Declare it after the [`TestDb`], so it goes first.
struct RoleGuard {
    name: String,
    url: String,
}

impl RoleGuard {
    fn new(t: &TestDb) -> Self {
        Self {
            name: format!("{}_app", t.name()),
            url: t.url.clone(),
        }
    }
}

impl Drop for RoleGuard {
    /// `Drop` cannot await: the drop runs on a thread and runtime of its own.
    fn drop(&mut self) {
        let (name, url) = (self.name.clone(), self.url.clone());
        let outcome = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let db = sea_orm::Database::connect(url).await?;
                drop_role(&db, &name).await?;
                db.close().await.ok();
                Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) | Err(e) = outcome.map_err(|_| anyhow::anyhow!("drop thread panicked")) {
            eprintln!("could not drop role {}: {e:#}", self.name);
        }
    }
}

#[tokio::test]
async fn schema_migrate_creates_the_functions_login_follows_its_secret_and_the_login_is_least_privileged()
-> Result<()> {
    let t = TestDb::empty().await?;
    let guard = RoleGuard::new(&t);
    let role = guard.name.clone();
    let first = "First-password-0123456789abcdef";
    // Quotes, a backslash and dollar quoting: the literal must arrive exactly.
    let second = r"Second';DROP_ROLE_postgres;--\$$x'";
    let secret = TestLoginSecret::new(&role, first);
    let migrator = PgSchemaMigrator {
        db: t.db.clone(),
        login: Some(secret.clone() as Arc<dyn LoginSecret>),
        retention: None,
    };

    let applied = migrator.migrate().await?;
    let after_first = stored_verifier(&t.db, &role).await?.context("a password")?;
    secret.set_password(second);
    let applied_again = migrator.migrate().await?;
    let after_second = stored_verifier(&t.db, &role).await?.context("a password")?;
    let same_again = inventory_schema_migrate::ensure_login(&t.db, secret.as_ref()).await?;

    assert_eq!(applied, migration::known(), "the first run migrated");
    assert!(applied_again.is_empty(), "{applied_again:?}");
    assert!(verifier_accepts(&after_first, first)?, "{after_first}");
    assert!(
        verifier_accepts(&after_second, second)?,
        "the new password is set"
    );
    assert!(
        !verifier_accepts(&after_second, first)?,
        "the old one is gone"
    );
    assert_eq!(same_again, LoginRoleOutcome::Updated);
    assert_eq!(
        login_flags(&t.db, &role).await?,
        [true, true, true, false, false, false, false, false],
        "LOGIN INHERIT member of {}, and no other power",
        migration::WRITER_ROLE
    );

    // The functions' way in: the target with the secret's user and password.
    let login = connect(
        &DatabaseConfig {
            target: DatabaseTarget::Url(inventory::redact::SecretUrl::new(t.url.clone())),
            tls: TlsMode::AsConfigured,
            pool_max: 2,
        },
        Some(secret.read().await?),
    )
    .await?;
    let who = login
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_user::text AS u",
        ))
        .await?
        .context("a row")?
        .try_get::<String>("", "u")?;
    assert_eq!(
        who, role,
        "connected as the login, not the test's superuser"
    );
    let checked = does_only_what_the_functions_do(&t, &login).await;
    login.close().await.ok();
    checked?;

    // The verifier check agrees with the server's own hashing of a password.
    t.db.execute_unprepared(&format!(
        "SET password_encryption = 'scram-sha-256'; ALTER ROLE \"{role}\" PASSWORD 'server-hashed-0123456789'"
    ))
    .await?;
    let by_server = stored_verifier(&t.db, &role).await?.context("a password")?;
    assert!(
        verifier_accepts(&by_server, "server-hashed-0123456789")?,
        "{by_server}"
    );
    assert!(!verifier_accepts(&by_server, second)?);
    drop(guard);
    t.cleanup().await
}

#[tokio::test]
async fn concurrent_runs_create_the_login_once_and_all_succeed() -> Result<()> {
    let t = TestDb::new().await?;
    let guard = RoleGuard::new(&t);
    let secret = TestLoginSecret::new(&guard.name, "Concurrent-password-0123456789");
    let mut runs = Vec::new();
    for _ in 0..4 {
        let (db, secret) = (t.connect(1).await?, secret.clone());
        runs.push(tokio::spawn(async move {
            inventory_schema_migrate::ensure_login(&db, secret.as_ref()).await
        }));
    }

    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await?);
    }

    let mut outcomes = outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
    outcomes.sort_by_key(|o| *o != LoginRoleOutcome::Created);
    assert_eq!(
        outcomes,
        [
            LoginRoleOutcome::Created,
            LoginRoleOutcome::Updated,
            LoginRoleOutcome::Updated,
            LoginRoleOutcome::Updated
        ]
    );
    drop(guard);
    t.cleanup().await
}

#[tokio::test]
async fn schema_migrate_refuses_a_privileged_or_badly_named_login_and_changes_nothing() -> Result<()>
{
    let t = TestDb::new().await?;
    let before = stored_verifier(&t.db, "postgres").await?;
    let missing = format!("{}_never", t.name());

    let as_superuser = inventory_schema_migrate::ensure_login(
        &t.db,
        TestLoginSecret::new("postgres", "Takeover-password-0123456789").as_ref(),
    )
    .await;
    let injected = inventory_schema_migrate::ensure_login(
        &t.db,
        TestLoginSecret::new(
            &format!("{missing}\" SUPERUSER --"),
            "Takeover-password-0123456789",
        )
        .as_ref(),
    )
    .await;

    for (what, result) in [("superuser", as_superuser), ("bad name", injected)] {
        let e: PipelineError = result.expect_err(what);
        assert_eq!(e.kind, ErrorKind::Misconfigured, "{what}: {e:?}");
        assert!(
            !e.detailed().contains("Takeover-password"),
            "{what}: {}",
            e.detailed()
        );
    }
    assert_eq!(
        stored_verifier(&t.db, "postgres").await?,
        before,
        "the superuser's password is untouched"
    );
    let created =
        t.db.query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_roles WHERE rolname LIKE $1",
            [format!("{missing}%").into()],
        ))
        .await?
        .context("a row")?
        .try_get::<i64>("", "n")?;
    assert_eq!(created, 0, "no role was created");
    t.cleanup().await
}
