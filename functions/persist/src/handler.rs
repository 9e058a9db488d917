//! One invocation: the payload must be a [`PersistInput`]; its updates are appended once and
//! the products they changed reported.

use inventory::ports::EventStore;
use inventory::steps::payloads::{PersistInput, PersistOutput};
use inventory::{PipelineError, steps};
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
    steps::persist_chunk(&input, store, now).await
}
