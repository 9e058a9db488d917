//! The `archive` task: writes a chunk's raw records, valid or not, to S3 as one gzip
//! JSON-lines object at a key that is the same on every retry (SPEC invariant 1).

use inventory::adapters::s3::ArchiveConfig;
use inventory::ports::ObjectStore;
use inventory::{ArchiveOutput, ChunkInput, PipelineError, usecase};
use lambda_runtime::Diagnostic;

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

/// One invocation: the execution's chunk in, where it was archived out. A payload that is
/// not a chunk fails as `Inventory.InvalidPayload`.
pub async fn handle(
    payload: serde_json::Value,
    store: &dyn ObjectStore,
) -> Result<ArchiveOutput, Diagnostic> {
    let input: ChunkInput = serde_json::from_value(payload).map_err(|e| {
        PipelineError::invalid_payload(format!("the archive input is not a chunk: {e}"))
    })?;
    Ok(usecase::archive_chunk(&input, store).await?)
}

#[cfg(test)]
mod tests;
