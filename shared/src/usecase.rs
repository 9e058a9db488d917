//! The pipeline's use cases, one per state-machine task. Each takes its input payload and the
//! ports it needs, so the Lambda handlers stay a few lines long.

use crate::error::PipelineError;
use crate::keys::ArchiveKey;
use crate::pipeline::{
    ArchiveOutput, CacheInvalidateInput, CacheInvalidateOutput, ChunkInput, PersistInput,
    PersistOutput, RejectedRecord, SourceRecord, ValidateOutput,
};
use crate::ports::{
    EventStore, ObjectKind, ObjectStore, ProductCache, Quarantine, QuarantinedRecord,
};
use crate::rejection::{Rejection, RejectionCode};
use crate::update::{
    MAX_RECORD_BYTES, RETURN_MARGIN, SourcePosition, check_validation_delay, parse_record,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use std::io::Write as _;

/// Validate: parse every record; quarantine the bad ones with their reasons; pass the good
/// ones on. One bad record never fails the chunk. `now` is when this validation runs: a record
/// that reached the stream longer ago than any redrive could take is rejected
/// ([`check_validation_delay`]).
#[tracing::instrument(skip_all, fields(chunk = %input.execution_name(), records = input.records.len()))]
pub async fn validate_chunk(
    input: &ChunkInput,
    quarantine: &dyn Quarantine,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ValidateOutput, PipelineError> {
    let mut valid = Vec::with_capacity(input.records.len());
    let mut rejected = Vec::new();
    let mut to_quarantine = Vec::new();
    for record in &input.records {
        let position = SourcePosition {
            shard_id: input.chunk.shard_id.clone(),
            sequence_number: record.sequence_number.clone(),
            arrived_at: record.arrived_at,
        };
        let (raw, outcome) = match decode(record) {
            Ok(bytes) => {
                let outcome = check_validation_delay(record.arrived_at, now)
                    .and_then(|()| parse_record(&bytes, &position));
                (Some(bytes), outcome)
            }
            Err(reason) => (None, Err(reason)),
        };
        match outcome {
            Ok(update) => valid.push(update),
            Err(reason) => {
                tracing::info!(sequence_number = %record.sequence_number, code = %reason.code, "record rejected");
                rejected.push(RejectedRecord {
                    sequence_number: record.sequence_number.clone(),
                    reason: reason.clone(),
                });
                to_quarantine.push(QuarantinedRecord {
                    stream: input.chunk.stream.clone(),
                    shard_id: input.chunk.shard_id.clone(),
                    sequence_number: record.sequence_number.clone(),
                    partition_key: record.partition_key.clone(),
                    arrived_at: record.arrived_at,
                    reason,
                    raw,
                    payload_ref: record.data_ref.clone(),
                });
            }
        }
    }
    if !to_quarantine.is_empty() {
        quarantine.quarantine(&to_quarantine).await?;
    }
    Ok(ValidateOutput {
        chunk: input.chunk.clone(),
        valid,
        rejected,
    })
}

/// A record's bytes, or the reason they can't be had inline.
fn decode(record: &SourceRecord) -> Result<Vec<u8>, Rejection> {
    match (&record.data, &record.data_ref) {
        (Some(b64), _) => BASE64.decode(b64).map_err(|e| {
            Rejection::new(
                RejectionCode::PayloadUnavailable,
                format!("record data is not valid base64 ({e})"),
            )
        }),
        (None, Some(r)) => Err(Rejection::new(
            RejectionCode::RecordTooLarge,
            format!(
                "record is {} bytes, the limit is {MAX_RECORD_BYTES}; kept at s3://{}/{}",
                r.bytes, r.bucket, r.key
            ),
        )),
        (None, None) => Err(Rejection::new(
            RejectionCode::PayloadUnavailable,
            "record has neither data nor data_ref",
        )),
    }
}

/// One line of an archive object: the record exactly as the stream delivered it.
#[derive(Debug, Serialize)]
struct ArchiveLine<'a> {
    stream: &'a str,
    shard_id: &'a str,
    #[serde(flatten)]
    record: &'a SourceRecord,
}

/// Encodes a chunk's records, valid or not, as gzip JSON lines. The lines are written to
/// memory first and compressed in one call: the serializer writes token by token, and
/// flate2 zeroes its output buffer on every write, which made encoding cost more than the
/// upload.
pub fn encode_archive(input: &ChunkInput) -> Result<Vec<u8>, PipelineError> {
    let mut lines = Vec::with_capacity(input.records.len() * 256);
    for record in &input.records {
        let line = ArchiveLine {
            stream: &input.chunk.stream,
            shard_id: &input.chunk.shard_id,
            record,
        };
        serde_json::to_writer(&mut lines, &line).map_err(|e| {
            PipelineError::with_source(
                crate::ErrorKind::Internal,
                "could not encode the archive",
                e,
            )
        })?;
        lines.push(b'\n');
    }
    let mut gz = GzEncoder::new(Vec::with_capacity(lines.len() / 3), Compression::fast());
    gz.write_all(&lines)
        .and_then(|()| gz.finish())
        .map_err(|e| {
            PipelineError::with_source(
                crate::ErrorKind::Internal,
                "could not compress the archive",
                e,
            )
        })
}

/// Archive: the chunk's raw records as one object at a key that is the same on every retry.
#[tracing::instrument(skip_all, fields(chunk = %input.execution_name(), records = input.records.len()))]
pub async fn archive_chunk(
    input: &ChunkInput,
    store: &dyn ObjectStore,
) -> Result<ArchiveOutput, PipelineError> {
    let first_arrival = input
        .records
        .iter()
        .map(|r| r.arrived_at)
        .min()
        .ok_or_else(|| PipelineError::invalid_payload("archive input has no records"))?;
    let key = ArchiveKey::for_chunk(&input.chunk.stream, first_arrival, &input.execution_name());
    let body = encode_archive(input)?;
    let bytes = body.len();
    store.put(&key, body, ObjectKind::GzipJsonLines).await?;
    Ok(ArchiveOutput {
        bucket: store.bucket().to_owned(),
        key: key.to_string(),
        records: input.records.len(),
        bytes,
    })
}

/// `Err(invalid_payload)` when an update of `input` reached the stream more than
/// [`RETURN_MARGIN`] before `now`: its key, and that of any earlier copy, may be forgotten
/// already ([`crate::update::DEDUP_WINDOW`]), so appending it could append it twice. Only an
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

/// Cache-invalidate: fence and evict the changed products in one round trip.
#[tracing::instrument(skip_all, fields(products = input.products.len()))]
pub async fn invalidate_cache(
    input: &CacheInvalidateInput,
    cache: &dyn ProductCache,
) -> Result<CacheInvalidateOutput, PipelineError> {
    if input.products.is_empty() {
        return Ok(CacheInvalidateOutput::default());
    }
    cache.invalidate(&input.products).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ObjectRef;

    fn record(data: Option<&str>, data_ref: Option<ObjectRef>) -> SourceRecord {
        SourceRecord {
            sequence_number: "1".into(),
            partition_key: "p-1".into(),
            arrived_at: chrono::DateTime::UNIX_EPOCH,
            data: data.map(str::to_owned),
            data_ref,
        }
    }

    #[test]
    fn a_record_without_usable_bytes_is_rejected_with_the_reason() {
        assert_eq!(
            decode(&record(Some("e30="), None)).expect("inline"),
            b"{}".to_vec()
        );

        let e = decode(&record(Some("not base64!"), None)).expect_err("bad base64");
        assert_eq!(e.code, RejectionCode::PayloadUnavailable);
        assert!(e.message.contains("base64"), "{}", e.message);

        let kept = ObjectRef {
            bucket: "inventory-archive".into(),
            key: "oversized/1".into(),
            bytes: 2_000_000,
        };
        let e = decode(&record(None, Some(kept))).expect_err("oversized");
        assert_eq!(e.code, RejectionCode::RecordTooLarge);
        assert!(
            e.message.contains("2000000 bytes")
                && e.message.contains("s3://inventory-archive/oversized/1"),
            "{}",
            e.message
        );

        let e = decode(&record(None, None)).expect_err("nothing");
        assert_eq!(e.code, RejectionCode::PayloadUnavailable);
        assert_eq!(e.message, "record has neither data nor data_ref");
    }
}
