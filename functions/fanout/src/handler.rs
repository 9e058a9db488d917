//! One invocation: plan the chunks, put oversized records, start the executions (bounded
//! concurrency), and answer the event source mapping (see the crate docs for what it is told).

use crate::event::stream_records;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use futures::StreamExt as _;
use inventory::PipelineError;
use inventory::ports::{ExecutionStarter, ObjectKind, ObjectStore, StartOutcome};
use inventory::steps::fanout::{PlannedChunk, plan_chunks};

/// Most executions being started at once. Step Functions' `StartExecution` bucket refills at a
/// few hundred per second per account; eight in flight keeps one invocation well below that
/// and still starts a 20-chunk batch in about three round trips.
pub const MAX_STARTS_IN_FLIGHT: usize = 8;

/// Fans one batch out. `Ok` with the records to redeliver (an empty list when every chunk
/// started); `Err` with a permanent error, which fails the whole invocation.
#[tracing::instrument(skip_all, fields(records = event.records.len()))]
pub async fn handle(
    event: KinesisEvent,
    starter: &dyn ExecutionStarter,
    store: &dyn ObjectStore,
) -> Result<KinesisEventResponse, PipelineError> {
    let chunks = plan_chunks(stream_records(event)?, store.bucket())?;
    let mut starts = futures::stream::iter(chunks.iter().enumerate())
        .map(|(i, chunk)| async move { (i, start_chunk(chunk, starter, store).await) })
        .buffer_unordered(MAX_STARTS_IN_FLIGHT);

    let mut failed = vec![false; chunks.len()];
    let (mut started, mut already) = (0usize, 0usize);
    while let Some((i, outcome)) = starts.next().await {
        match outcome {
            Ok(StartOutcome::Started) => started += 1,
            Ok(StartOutcome::AlreadyStarted) => already += 1,
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    execution = %chunks[i].execution_name(),
                    first_sequence = %chunks[i].checkpoint_sequence(),
                    error_type = e.kind.name(),
                    error = %e.detailed(),
                    "chunk not started; its records go back to the stream"
                );
                failed[i] = true;
            }
            // Dropping `starts` abandons the starts in flight: the whole batch comes back.
            Err(e) => return Err(e),
        }
    }

    let mut response = KinesisEventResponse::default();
    for (chunk, _) in chunks.iter().zip(&failed).filter(|(_, failed)| **failed) {
        response.add_failure(chunk.checkpoint_sequence());
    }
    tracing::info!(
        chunks = chunks.len(),
        started,
        already_started = already,
        failed = response.batch_item_failures.len(),
        "batch fanned out"
    );
    Ok(response)
}

/// Puts the chunk's oversized records, then starts its execution: a started execution never
/// refers to an object that is not there.
#[tracing::instrument(skip_all, fields(execution = %chunk.execution_name(), records = chunk.input.records.len(), input_bytes = chunk.input_json.len()))]
async fn start_chunk(
    chunk: &PlannedChunk,
    starter: &dyn ExecutionStarter,
    store: &dyn ObjectStore,
) -> Result<StartOutcome, PipelineError> {
    for record in &chunk.oversized {
        store
            .put(&record.key, record.data.clone(), ObjectKind::Bytes)
            .await?;
    }
    starter
        .start(&chunk.execution_name(), &chunk.input_json)
        .await
}

#[cfg(test)]
mod tests;
