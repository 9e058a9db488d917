//! Validate: a chunk's records become valid updates or quarantined rejections, each with
//! its reason; one bad record never fails the chunk.

use crate::domain::rejection::{Rejection, RejectionCode};
use crate::domain::update::{
    MAX_RECORD_BYTES, SourcePosition, check_validation_delay, parse_record,
};
use crate::error::PipelineError;
use crate::ports::{Quarantine, QuarantinedRecord};
use crate::steps::payloads::{ChunkInput, RejectedRecord, SourceRecord, ValidateOutput};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::payloads::ObjectRef;

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
