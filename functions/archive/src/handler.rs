//! One invocation: the execution's chunk in, where it was archived out.

use inventory::ports::ObjectStore;
use inventory::{ArchiveOutput, ChunkInput, PipelineError, steps};

/// One invocation: the execution's chunk in, where it was archived out. A payload that is
/// not a chunk fails as `Inventory.InvalidPayload`.
pub async fn handle(
    payload: serde_json::Value,
    store: &dyn ObjectStore,
) -> Result<ArchiveOutput, PipelineError> {
    let input: ChunkInput = serde_json::from_value(payload).map_err(|e| {
        PipelineError::invalid_payload(format!("the archive input is not a chunk: {e}"))
    })?;
    steps::archive_chunk(&input, store).await
}
