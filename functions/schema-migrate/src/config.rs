//! What `schema-migrate` reads from its environment at cold start.

use inventory::PipelineError;
use inventory::adapters::postgres::DatabaseConfig;
use inventory::adapters::s3::ArchiveConfig;
use inventory::config::FromEnv;
use inventory::config::Vars;
use inventory::domain::retention::RetentionConfig;

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

impl FromEnv for Config {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
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
