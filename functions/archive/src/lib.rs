//! The `archive` task: writes a chunk's raw records, valid or not, to S3 as one gzip
//! JSON-lines object at a key that is the same on every retry (SPEC invariant 1).

use aws_config::SdkConfig;
use inventory::adapters::s3::ArchiveConfig;
use inventory::ports::ArchiveStore;
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

/// The S3 client. With an endpoint override (`AWS_ENDPOINT_URL`, the local emulator) it
/// addresses buckets by path, since `bucket.127.0.0.1` names no host.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// One invocation: the execution's chunk in, where it was archived out. A payload that is
/// not a chunk fails as `Inventory.InvalidPayload`.
pub async fn handle(
    payload: serde_json::Value,
    store: &dyn ArchiveStore,
) -> Result<ArchiveOutput, Diagnostic> {
    let input: ChunkInput = serde_json::from_value(payload).map_err(|e| {
        PipelineError::invalid_payload(format!("the archive input is not a chunk: {e}"))
    })?;
    Ok(usecase::archive_chunk(&input, store).await?)
}

#[cfg(test)]
mod tests;
