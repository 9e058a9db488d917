//! What `archive` reads from its environment at cold start.

use inventory::PipelineError;
use inventory::adapters::s3::ArchiveConfig;

/// What `archive` reads from the environment: `ARCHIVE_BUCKET`, `ARCHIVE_KMS_KEY_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub archive: ArchiveConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, PipelineError> {
        Self::from_lookup(inventory::config::process_env)
    }

    /// Reads variables through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        Ok(Self {
            archive: ArchiveConfig::from_lookup(get)?,
        })
    }
}
