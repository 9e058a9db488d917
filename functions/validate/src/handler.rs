//! One invocation: the payload must be a [`ChunkInput`]; its records are validated and the
//! bad ones quarantined.

use inventory::ports::Quarantine;
use inventory::steps::payloads::{ChunkInput, ValidateOutput};
use inventory::{PipelineError, steps};
use serde_json::Value;

/// Handles one invocation at `now`: the payload must be a [`ChunkInput`].
pub async fn handle(
    payload: Value,
    quarantine: &dyn Quarantine,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ValidateOutput, PipelineError> {
    let input: ChunkInput = serde_json::from_value(payload).map_err(|e| {
        PipelineError::invalid_payload(format!("validate expects a chunk (ChunkInput): {e}"))
    })?;
    steps::validate_chunk(&input, quarantine, now).await
}
