//! What `persist` reads from its environment at cold start.

use inventory::PipelineError;
use inventory::adapters::postgres::DatabaseConfig;

/// What the function reads from its environment at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, PipelineError> {
        Self::from_lookup(inventory::config::process_env)
    }

    /// Reads variables through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        Ok(Self {
            database: DatabaseConfig::from_lookup(get)?,
        })
    }
}
