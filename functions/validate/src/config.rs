//! What `validate` reads from its environment at cold start.

use inventory::PipelineError;
use inventory::adapters::postgres::DatabaseConfig;
use inventory::adapters::s3_rejections::RejectionsConfig;
use inventory::config::FromEnv;

/// What the function reads from its environment at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// Where suppliers' own rejections go; `None` when no supplier is mapped to an account.
    pub rejections: Option<RejectionsConfig>,
}

impl FromEnv for Config {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        Ok(Self {
            database: DatabaseConfig::from_lookup(&get)?,
            rejections: RejectionsConfig::from_lookup(&get)?,
        })
    }
}
