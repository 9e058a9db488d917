//! Persist: a chunk's valid updates appended to the event store and applied to the
//! projection, once each whatever the retries.

use crate::domain::update::RETURN_MARGIN;
use crate::error::PipelineError;
use crate::ports::EventStore;
use crate::steps::payloads::{PersistInput, PersistOutput};

/// `Err(invalid_payload)` when an update of `input` reached the stream more than
/// [`RETURN_MARGIN`] before `now`: its key, and that of any earlier copy, may be forgotten
/// already ([`crate::domain::update::DEDUP_WINDOW`]), so appending it could append it twice. Only an
/// execution redriven again and again reaches Persist that late; the error is permanent, and a
/// new execution with the same input (`inventory redrive-failed --new-execution`) keeps the
/// records in the quarantine, from where a replay sends them with a new arrival.
pub fn check_persist_delay(
    input: &PersistInput,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), PipelineError> {
    match input
        .updates
        .iter()
        .find(|u| now - u.source.arrived_at > RETURN_MARGIN)
    {
        None => Ok(()),
        Some(u) => Err(PipelineError::invalid_payload(format!(
            "update {} reached the stream at {}, more than {} days ago: too late to append \
             safely; start a new execution with this input (inventory redrive-failed \
             --new-execution), which keeps its records in the quarantine for a replay",
            u.update_key,
            u.source.arrived_at.to_rfc3339(),
            RETURN_MARGIN.num_days()
        ))),
    }
}

/// Persist at `now`: refuses a chunk that arrived too long ago ([`check_persist_delay`]), then
/// appends it ([`persist_updates`]).
pub async fn persist_chunk(
    input: &PersistInput,
    store: &dyn EventStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<PersistOutput, PipelineError> {
    check_persist_delay(input, now)?;
    persist_updates(input, store).await
}

/// Persist: append events and update the projection, once per update whatever the retries.
#[tracing::instrument(skip_all, fields(chunk = %input.chunk.execution_name(), updates = input.updates.len()))]
pub async fn persist_updates(
    input: &PersistInput,
    store: &dyn EventStore,
) -> Result<PersistOutput, PipelineError> {
    if input.updates.is_empty() {
        return Ok(PersistOutput::default());
    }
    let outcome = store.append(&input.updates).await?;
    Ok(PersistOutput {
        appended: outcome.appended,
        duplicates: outcome.duplicates,
        changed: outcome.changed,
    })
}
