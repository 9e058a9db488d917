//! The `schema-migrate` function: applies pending database migrations. Invoked directly it
//! answers with what it applied; as a CloudFormation custom resource it migrates on Create and
//! Update, does nothing destructive on Delete, and always answers CloudFormation through the
//! request's `ResponseURL` (see [`inventory::adapters::custom_resource`]).
//!
//! After the migrations it ensures the functions' login role (see [`migration::login_role`]):
//! with `APP_DB_SECRET_ARN` set, it reads that secret's `username` and `password` on every run
//! (so a changed secret converges on the next run) and creates or updates the role. Without
//! it (local stack, tests) there is no such role to manage, and it says so in the log.
//!
//! Invoked with `{"action":"maintain"}` (daily, by the stack's schedule) it runs the event
//! store's partition maintenance instead (see
//! [`inventory::adapters::postgres::maintain_event_store`]) and fails, so the invocation counts
//! as an error and alarms, when the partitions do not reach far enough ahead or events sit in
//! the default partition.
//!
//! Invoked with `{"action":"retain"}` (hourly) it runs the event store's retention (see
//! [`inventory::adapters::postgres::retain_event_store`]): days older than
//! `EVENT_RETENTION_DAYS` are exported to the archive bucket, verified and dropped, within the
//! invocation's time left less a margin; what is left goes on at the next run.

use async_trait::async_trait;
use inventory::adapters::custom_resource::{
    self, Budget, CustomResourceEvent, Outcome, RequestKind, ResponseSender,
};
use inventory::adapters::postgres::{
    DatabaseConfig, DatabaseConnection, db_error, maintain_event_store, retain_event_store,
};
use inventory::adapters::s3::ArchiveConfig;
use inventory::config::{DbCredentials, Vars};
use inventory::partitions::PartitionReport;
use inventory::ports::{ExportStore, LoginSecret, SchemaMigrator};
use inventory::redact::ExposeSecret as _;
use inventory::retention::{RetentionConfig, RetentionReport};
use inventory::{ErrorKind, PipelineError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The physical id of the schema resource: the same on every Create, so a replacement never
/// makes CloudFormation "delete" the schema.
pub const PHYSICAL_ID: &str = "inventory-database-schema";

/// What the function reads from its environment at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The migration user's connection (`DB_SECRET_ARN` is the master user's secret).
    pub database: DatabaseConfig,
    /// `APP_DB_SECRET_ARN`: the functions' login secret, when the role is managed here.
    pub app_secret_arn: Option<String>,
    /// `EVENT_RETENTION_DAYS` with `ARCHIVE_BUCKET` (and `ARCHIVE_KMS_KEY_ID`): where the
    /// retention exports old days. `None` when `EVENT_RETENTION_DAYS` is not set: the
    /// `retain` action then refuses, naming the variable.
    pub retention: Option<(RetentionConfig, ArchiveConfig)>,
}

impl Config {
    pub fn from_env() -> Result<Self, PipelineError> {
        Self::from_lookup(inventory::config::process_env)
    }

    /// Reads the configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        let app_secret_arn = Vars::new(&get).optional("APP_DB_SECRET_ARN");
        let database = DatabaseConfig::from_lookup(&get)?;
        if app_secret_arn.is_some() && app_secret_arn.as_deref() == database.secret_arn() {
            return Err(PipelineError::misconfigured(
                "environment variables APP_DB_SECRET_ARN and DB_SECRET_ARN name the same secret: the functions' login must not be the migration user",
            ));
        }
        let retention = match Vars::new(&get).optional(RetentionConfig::DAYS_VAR) {
            None => None,
            Some(_) => Some((
                RetentionConfig::from_lookup(&get)?,
                ArchiveConfig::from_lookup(&get)?,
            )),
        };
        Ok(Self {
            database,
            app_secret_arn,
            retention,
        })
    }
}

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

/// A direct invocation's payload: `{}` (or nothing) migrates, `{"action":"maintain"}`
/// maintains the event store's partitions, `{"action":"retain"}` runs its retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    #[serde(default)]
    pub action: Action,
}

/// What a direct invocation asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Migrate,
    Maintain,
    Retain,
}

/// How long a deploy lets the retention run after the migrations.
pub const DEPLOY_RETENTION_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// The answer to `{"action":"retain"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetainOutput {
    pub event_store: RetentionReport,
}

/// Time kept back from the invocation's deadline: the part or drop in flight when the budget
/// runs out finishes within it (a part is seconds).
pub const RETENTION_MARGIN: std::time::Duration = std::time::Duration::from_secs(90);

/// The answer to `{"action":"maintain"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintainOutput {
    pub event_store: PartitionReport,
}

/// A direct invocation's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateOutput {
    /// Migrations this run applied (empty when the schema was current).
    pub applied: Vec<String>,
    /// Every migration this build knows, oldest first.
    pub known: Vec<String>,
}

/// Whether a payload is a CloudFormation custom-resource request (even a malformed one, which
/// still gets a FAILED answer when it has a `ResponseURL`).
pub fn is_custom_resource(payload: &Value) -> bool {
    payload.get("RequestType").is_some() || payload.get("ResponseURL").is_some()
}

/// Handles one invocation of either kind.
pub async fn handle(
    payload: Value,
    budget: &Budget,
    sender: &ResponseSender,
    migrator: Arc<dyn SchemaMigrator>,
) -> Result<Value, PipelineError> {
    if is_custom_resource(&payload) {
        let response = custom_resource::respond(payload, budget, sender, move |event| {
            on_custom_resource(migrator, event)
        })
        .await?;
        return to_value(&response);
    }
    let payload = if payload.is_null() {
        Value::Object(Default::default())
    } else {
        payload
    };
    let request: MigrateRequest = serde_json::from_value(payload).map_err(|e| {
        PipelineError::invalid_payload(format!(
            "schema-migrate expects {{}}, {{\"action\":\"maintain\"}}, {{\"action\":\"retain\"}} or a CloudFormation custom-resource request: {e}"
        ))
    })?;
    match request.action {
        Action::Migrate => {
            let applied = migrator.migrate().await?;
            to_value(&MigrateOutput {
                applied,
                known: migration::known(),
            })
        }
        Action::Maintain => to_value(&MaintainOutput {
            event_store: maintain_checked(migrator.as_ref()).await?,
        }),
        Action::Retain => {
            let deadline =
                std::time::Instant::now() + budget.time_left.saturating_sub(RETENTION_MARGIN);
            to_value(&RetainOutput {
                event_store: retain_logged(migrator.as_ref(), deadline).await?,
            })
        }
    }
}

/// The retention, then its log line: "event store retention ran" when every due day is gone
/// (the line the stack's heartbeat alarm counts: infra/template.yaml,
/// EventStoreRetentionRanFilter), "event store retention continues" when the run stopped with
/// days left (its time budget, a running rebuild, another run), which the next run picks up.
pub async fn retain_logged(
    migrator: &dyn SchemaMigrator,
    deadline: std::time::Instant,
) -> Result<RetentionReport, PipelineError> {
    let report = migrator.retain(deadline).await?;
    let retired_days = report.retired_days.len();
    if report.complete() {
        tracing::info!(
            retired_days,
            exported_parts = report.exported_parts,
            exported_events = report.exported_events,
            overdue_days = report.overdue_days,
            oldest_from = ?report.oldest_from,
            "event store retention ran"
        );
    } else {
        tracing::info!(
            retired_days,
            exported_parts = report.exported_parts,
            exported_events = report.exported_events,
            overdue_days = report.overdue_days,
            oldest_from = ?report.oldest_from,
            stopped = report.stopped.as_deref().unwrap_or_default(),
            "event store retention continues"
        );
    }
    Ok(report)
}

/// The event store's partition maintenance, then a check of what it left; on success, the log
/// line the stack's heartbeat alarm counts (infra/template.yaml, EventStoreMaintainedFilter).
pub async fn maintain_checked(
    migrator: &dyn SchemaMigrator,
) -> Result<PartitionReport, PipelineError> {
    let report = migrator.maintain().await?;
    report.check(chrono::Utc::now())?;
    tracing::info!(
        partitions = report.partitions,
        covered_until = ?report.covered_until,
        pruned_keys = report.pruned_keys,
        database_bytes = report.database_bytes,
        "event store partitions maintained"
    );
    Ok(report)
}

/// Create and Update migrate; Delete leaves the schema (and the data) alone: the database
/// goes away with its own resource.
pub async fn on_custom_resource(
    migrator: Arc<dyn SchemaMigrator>,
    event: CustomResourceEvent,
) -> Result<Outcome, PipelineError> {
    let applied = match event.kind {
        RequestKind::Create | RequestKind::Update => {
            let applied = migrator.migrate().await?;
            // A deploy maintains the partitions too, so the heartbeat has its first data point
            // before the first daily run. Its failure does not fail the deploy: the migrations
            // are what the deploy needs, and the daily run reports and alarms.
            if let Err(e) = maintain_checked(migrator.as_ref()).await {
                tracing::warn!(error_type = e.kind.name(), error = %e.detailed(), "event store maintenance after the migrations failed");
            }
            // And a short retention run, so the retention's heartbeat has its first data point
            // on a new stack (nothing is due there) instead of alarming until the first hourly
            // run; on a stack with days due it stops after DEPLOY_RETENTION_BUDGET and the
            // hourly runs go on.
            let deadline = std::time::Instant::now() + DEPLOY_RETENTION_BUDGET;
            if let Err(e) = retain_logged(migrator.as_ref(), deadline).await {
                tracing::warn!(error_type = e.kind.name(), error = %e.detailed(), "event store retention after the migrations failed");
            }
            applied
        }
        RequestKind::Delete => {
            tracing::info!("Delete: the schema is left as it is");
            Vec::new()
        }
    };
    let latest = migration::known().last().cloned().unwrap_or_default();
    Ok(Outcome {
        // Keep the id CloudFormation knows on Update and Delete; a stable one on Create.
        physical_resource_id: Some(
            event
                .physical_resource_id
                .clone()
                .unwrap_or_else(|| PHYSICAL_ID.to_owned()),
        ),
        data: [
            ("Applied".to_owned(), applied.len().to_string()),
            ("LatestMigration".to_owned(), latest),
        ]
        .into(),
    })
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, PipelineError> {
    serde_json::to_value(v).map_err(|e| {
        PipelineError::with_source(ErrorKind::Internal, "could not encode the answer", e)
    })
}

#[cfg(test)]
mod tests;
