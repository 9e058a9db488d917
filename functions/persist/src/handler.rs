//! One invocation: the payload must be a [`PersistInput`]; its updates are appended once and
//! the products they changed reported.

use inventory::pipeline::{PersistInput, PersistOutput};
use inventory::ports::EventStore;
use inventory::{PipelineError, usecase};
use serde_json::Value;

/// Handles one invocation: the payload must be a [`PersistInput`].
pub async fn handle(
    payload: Value,
    store: &dyn EventStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<PersistOutput, PipelineError> {
    let input: PersistInput = serde_json::from_value(payload).map_err(|e| {
        PipelineError::invalid_payload(format!(
            "persist expects {{chunk, updates}} (PersistInput): {e}"
        ))
    })?;
    usecase::persist_chunk(&input, store, now).await
}
