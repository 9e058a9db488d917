//! The migrators: the project's migrations (and the functions' login role, and the event
//! store's maintenance and retention) on PostgreSQL, and the stand-in that answers every
//! request with the cold start's failure.

use async_trait::async_trait;
use inventory::adapters::postgres::{
    DatabaseConnection, db_error, maintain_event_store, retain_event_store,
};
use inventory::config::DbCredentials;
use inventory::domain::partitions::PartitionReport;
use inventory::domain::retention::{RetentionConfig, RetentionReport};
use inventory::ports::{ExportStore, LoginSecret, SchemaMigrator};
use inventory::redact::ExposeSecret as _;
use inventory::{ErrorKind, PipelineError};
use std::sync::Arc;

/// The functions' login secret in Secrets Manager, read afresh on every run.
#[derive(Debug, Clone)]
pub struct SecretsManagerLogin {
    pub client: aws_sdk_secretsmanager::Client,
    pub arn: String,
}

#[async_trait]
impl LoginSecret for SecretsManagerLogin {
    async fn read(&self) -> Result<DbCredentials, PipelineError> {
        inventory::adapters::postgres::credentials_from_secret(&self.client, &self.arn).await
    }
}

/// The project's migrations on a PostgreSQL pool, under the migration advisory lock; then the
/// functions' login role, when `login` says where its secret is.
#[derive(Clone)]
pub struct PgSchemaMigrator {
    pub db: DatabaseConnection,
    pub login: Option<Arc<dyn LoginSecret>>,
    /// How long events stay, and where old days go; `None` when not configured.
    pub retention: Option<(RetentionConfig, Arc<dyn ExportStore>)>,
}

#[async_trait]
impl SchemaMigrator for PgSchemaMigrator {
    #[tracing::instrument(skip_all)]
    async fn migrate(&self) -> Result<Vec<String>, PipelineError> {
        let run = migration::run_reporting(&self.db)
            .await
            .map_err(|e| db_error("could not run the migrations", e))?;
        let applied = run.applied;
        tracing::info!(applied = ?applied, "migrations run");
        if !run.newer.is_empty() {
            tracing::warn!(newer = ?run.newer, "the database has migrations of a newer release (a rollback): this build runs on its schema as it is");
        }
        match &self.login {
            Some(secret) => {
                ensure_login(&self.db, secret.as_ref()).await?;
            }
            None => {
                tracing::info!("APP_DB_SECRET_ARN is not set: no functions' login role to manage")
            }
        }
        Ok(applied)
    }

    #[tracing::instrument(skip_all)]
    async fn maintain(&self) -> Result<PartitionReport, PipelineError> {
        maintain_event_store(&self.db).await
    }

    #[tracing::instrument(skip_all)]
    async fn retain(&self, deadline: std::time::Instant) -> Result<RetentionReport, PipelineError> {
        let Some((config, store)) = &self.retention else {
            return Err(PipelineError::misconfigured(format!(
                "environment variable {} is not set: this function keeps every event and has nowhere to export old ones",
                RetentionConfig::DAYS_VAR
            )));
        };
        retain_event_store(
            &self.db,
            store.as_ref(),
            *config,
            chrono::Utc::now(),
            deadline,
        )
        .await
    }
}

/// Reads the functions' login and makes the database agree with it. Logs the role's name and
/// what was done; never the password.
#[tracing::instrument(skip_all)]
pub async fn ensure_login(
    db: &DatabaseConnection,
    secret: &dyn LoginSecret,
) -> Result<migration::LoginRoleOutcome, PipelineError> {
    let credentials = secret.read().await?;
    let role =
        migration::LoginRole::new(&credentials.username, credentials.password.expose_secret())
            .map_err(login_error)?;
    let outcome = migration::ensure_login_role(db, &role)
        .await
        .map_err(login_error)?;
    tracing::info!(role = role.name(), outcome = ?outcome, member_of = migration::WRITER_ROLE, "functions' login role ensured");
    Ok(outcome)
}

/// A bad secret (name, password, a privileged role) is a configuration error; the database's
/// refusals keep their own kinds.
fn login_error(e: migration::LoginRoleError) -> PipelineError {
    use migration::LoginRoleError as E;
    match e {
        E::Db(e) => db_error("could not ensure the functions' login role", e),
        e @ (E::BadName(_) | E::BadPassword | E::Privileged(_)) => PipelineError::misconfigured(
            format!("the functions' login secret (APP_DB_SECRET_ARN) is unusable: {e}"),
        ),
    }
}

impl std::fmt::Debug for PgSchemaMigrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSchemaMigrator")
            .field("manages_login", &self.login.is_some())
            .field("retention", &self.retention.as_ref().map(|(c, _)| c.days))
            .finish_non_exhaustive()
    }
}

/// Stands in for the migrator when the cold start could not set up the database (bad
/// configuration, unreadable secret), so every request still gets an answer naming the
/// problem, and CloudFormation hears FAILED instead of waiting for an hour.
#[derive(Debug, Clone)]
pub struct UnavailableMigrator {
    kind: ErrorKind,
    message: String,
}

impl UnavailableMigrator {
    pub fn new(cause: &PipelineError) -> Self {
        Self {
            kind: cause.kind,
            message: format!("the function could not start: {}", cause.detailed()),
        }
    }
}

#[async_trait]
impl SchemaMigrator for UnavailableMigrator {
    async fn migrate(&self) -> Result<Vec<String>, PipelineError> {
        Err(PipelineError::new(self.kind, self.message.clone()))
    }

    async fn maintain(&self) -> Result<PartitionReport, PipelineError> {
        Err(PipelineError::new(self.kind, self.message.clone()))
    }

    async fn retain(&self, _: std::time::Instant) -> Result<RetentionReport, PipelineError> {
        Err(PipelineError::new(self.kind, self.message.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::adapters::postgres::{DatabaseConfig, connect};
    use inventory::config::FromEnv as _;
    use inventory::ports::ObjectKind;
    use std::sync::atomic::Ordering;
    use test_support::stub_http::StubServer;

    /// A lazy pool on `url`: nothing is connected until a statement runs.
    async fn pool(url: &str) -> DatabaseConnection {
        let url = url.to_owned();
        let config =
            DatabaseConfig::from_lookup(move |name| (name == "DATABASE_URL").then(|| url.clone()))
                .expect("config");
        connect(&config, None).await.expect("lazy pool")
    }

    /// An export store that is never reached.
    struct NoExports;

    #[async_trait]
    impl ExportStore for NoExports {
        fn location(&self, key: &str) -> String {
            format!("nowhere/{key}")
        }
        async fn put(&self, _: &str, _: Vec<u8>, _: ObjectKind) -> Result<(), PipelineError> {
            Err(PipelineError::new(ErrorKind::Internal, "not in this test"))
        }
        async fn get(&self, _: &str) -> Result<Vec<u8>, PipelineError> {
            Err(PipelineError::new(ErrorKind::Internal, "not in this test"))
        }
    }

    #[tokio::test]
    async fn the_login_is_read_from_the_secret_named_by_its_arn() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-db-AbCdEf";
        let secret = serde_json::json!({
            "ARN": arn,
            "Name": "app-db",
            "SecretString": r#"{"username":"inventory_app","password":"Abcdefghijklmnop1234"}"#,
        });
        let stub = StubServer::always(
            200,
            &[("content-type", "application/x-amz-json-1.1")],
            &secret.to_string(),
        )
        .await;
        let conf = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .endpoint_url(stub.endpoint())
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "test", "test", None, None, "stub",
            ))
            .build();
        let login = SecretsManagerLogin {
            client: aws_sdk_secretsmanager::Client::from_conf(conf),
            arn: arn.to_owned(),
        };

        let credentials = login.read().await.expect("read");

        assert_eq!(credentials.username, "inventory_app");
        assert_eq!(credentials.password.expose_secret(), "Abcdefghijklmnop1234");
        assert_eq!(stub.received()[0].json()["SecretId"], arn);
    }

    #[tokio::test]
    async fn a_database_that_does_not_answer_fails_the_migrations_as_transient() {
        let (address, offered) = test_support::closing_peer();
        let migrator = PgSchemaMigrator {
            db: pool(&format!("postgres://migrator@{address}/inventory")).await,
            login: None,
            retention: None,
        };

        let e = migrator.migrate().await.expect_err("no database");

        assert_eq!(e.kind, ErrorKind::DependencyUnavailable, "{e:?}");
        assert_eq!(e.message, "could not run the migrations");
        assert!(offered.load(Ordering::SeqCst) >= 1, "it tried the database");
    }

    #[test]
    fn a_database_refusing_the_login_role_keeps_its_kind_and_a_bad_secret_is_misconfiguration() {
        use migration::sea_orm::RuntimeErr;
        let refused = login_error(migration::LoginRoleError::Db(migration::DbErr::Conn(
            RuntimeErr::Internal("connection reset".into()),
        )));
        assert_eq!(refused.kind, ErrorKind::DependencyUnavailable);
        assert_eq!(
            refused.message,
            "could not ensure the functions' login role"
        );

        let privileged = login_error(migration::LoginRoleError::Privileged("postgres".into()));
        assert_eq!(privileged.kind, ErrorKind::Misconfigured);
        assert!(
            privileged.message.starts_with(
                "the functions' login secret (APP_DB_SECRET_ARN) is unusable: role postgres"
            ),
            "{}",
            privileged.message
        );
    }

    #[tokio::test]
    async fn debug_says_whether_the_login_and_retention_are_managed_and_never_the_database_url() {
        let db = pool("postgres://migrator:hunter2@127.0.0.1:1/inventory").await;
        let plain = PgSchemaMigrator {
            db: db.clone(),
            login: None,
            retention: None,
        };
        let full = PgSchemaMigrator {
            db,
            login: Some(Arc::new(SecretsManagerLogin {
                client: aws_sdk_secretsmanager::Client::from_conf(
                    aws_sdk_secretsmanager::Config::builder()
                        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
                        .build(),
                ),
                arn: "arn:x".into(),
            })),
            retention: Some((
                RetentionConfig::new(30).expect("valid"),
                Arc::new(NoExports),
            )),
        };

        assert_eq!(
            format!("{plain:?}"),
            "PgSchemaMigrator { manages_login: false, retention: None, .. }"
        );
        assert_eq!(
            format!("{full:?}"),
            "PgSchemaMigrator { manages_login: true, retention: Some(30), .. }"
        );
    }

    #[tokio::test]
    async fn a_failed_cold_start_fails_every_action_with_its_kind_and_cause() {
        let cause = PipelineError::new(ErrorKind::DependencyUnavailable, "secret unreadable");
        let broken = UnavailableMigrator::new(&cause);

        let errors = [
            broken.migrate().await.expect_err("migrate"),
            broken.maintain().await.expect_err("maintain"),
            broken
                .retain(std::time::Instant::now())
                .await
                .expect_err("retain"),
        ];

        for e in errors {
            assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
            assert_eq!(e.message, "the function could not start: secret unreadable");
        }
    }
}
