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
        let applied = migration::run(&self.db)
            .await
            .map_err(|e| db_error("could not run the migrations", e))?;
        tracing::info!(applied = ?applied, "migrations run");
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
