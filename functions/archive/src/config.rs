//! What `archive` reads from its environment at cold start.

use inventory::PipelineError;
use inventory::adapters::s3::ArchiveConfig;
use inventory::config::FromEnv;

/// What `archive` reads from the environment: `ARCHIVE_BUCKET`, `ARCHIVE_KMS_KEY_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub archive: ArchiveConfig,
}

impl FromEnv for Config {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        Ok(Self {
            archive: ArchiveConfig::from_lookup(get)?,
        })
    }
}
