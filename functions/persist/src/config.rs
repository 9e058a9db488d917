//! What `persist` reads from its environment at cold start.

use inventory::PipelineError;
use inventory::adapters::postgres::DatabaseConfig;
use inventory::config::FromEnv;

/// What the function reads from its environment at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
}

impl FromEnv for Config {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        Ok(Self {
            database: DatabaseConfig::from_lookup(get)?,
        })
    }
}
