//! Fan-out rules: how one delivered Kinesis batch becomes the chunks that start one
//! state-machine execution each.
//!
//! The rules, each one tested below:
//! - Records are grouped by (stream, shard). The event source mapping delivers one shard per
//!   invocation, but nothing here relies on that. Within a shard the delivery order is kept:
//!   chunks follow each other, and records keep their order inside a chunk.
//! - A chunk's serialised execution input is at most [`MAX_CHUNK_PAYLOAD_BYTES`], and it holds
//!   at most [`MAX_CHUNK_RECORDS`] records. The size is measured on the exact JSON that is
//!   sent, not estimated.
//! - A record larger than [`MAX_INLINE_RECORD_BYTES`] travels by reference: its bytes go to S3
//!   at [`ArchiveKey::for_oversized_record`] and the chunk carries `data_ref`. Validate then
//!   quarantines it as `record_too_large`. Nothing is dropped.
//! - Chunks are cut greedily from the first record of each shard group, so a chunk's extent
//!   depends only on the records from its own first record on. The same batch always gives the
//!   same chunks, the same JSON and the same execution names.
//! - [`ChunkId::index`] is **not** the chunk's position in the batch. When a chunk cannot be
//!   started, the event source mapping redelivers the shard from that chunk's first record
//!   (see [`PlannedChunk::checkpoint_sequence`]); the chunks after it are then cut exactly as
//!   before, and a name that counted chunks from the start of the batch would change and start
//!   a second execution for each of them. The sequence range alone identifies a chunk within a
//!   shard, so `index` is 0, and counts up only to keep apart chunks that would otherwise share
//!   a sequence range (a malformed batch that repeats a sequence number).

use crate::domain::keys::ArchiveKey;
use crate::error::{ErrorKind, PipelineError};
use crate::steps::payloads::{
    ChunkId, ChunkInput, MAX_CHUNK_PAYLOAD_BYTES, MAX_CHUNK_RECORDS, MAX_INLINE_RECORD_BYTES,
    ObjectRef, SourceRecord,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// One record as the stream delivered it, before chunking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// The stream's name (not its ARN).
    pub stream: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    /// The stream's `ApproximateArrivalTimestamp`.
    pub arrived_at: DateTime<Utc>,
    /// The record's bytes, decoded.
    pub data: Vec<u8>,
}

/// A record's bytes that must be in S3 before its chunk's execution starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedRecord {
    pub key: ArchiveKey,
    pub data: Vec<u8>,
}

/// One execution to start: its input, the exact JSON sent, and the objects to put first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChunk {
    pub input: ChunkInput,
    /// The execution input as sent; at most [`MAX_CHUNK_PAYLOAD_BYTES`] bytes.
    pub input_json: String,
    /// Oversized records of this chunk, to put in S3 before the execution starts.
    pub oversized: Vec<OversizedRecord>,
}

impl PlannedChunk {
    pub fn execution_name(&self) -> String {
        self.input.execution_name()
    }

    /// The sequence number to report in `batchItemFailures` when this chunk's execution could
    /// not be started: its first record. The event source mapping resumes the shard from the
    /// lowest reported sequence number, so this chunk and everything after it come back, and
    /// nothing before it does.
    pub fn checkpoint_sequence(&self) -> &str {
        &self.input.chunk.first_sequence
    }
}

/// Splits a delivered batch into chunks (see the module docs for the rules). Oversized records
/// are referenced in `oversized_bucket`.
///
/// Fails with [`ErrorKind::InvalidPayload`] only for a batch no stream delivers: a record
/// without a sequence number, or one whose metadata alone (partition key, sequence number)
/// cannot fit a chunk.
pub fn plan_chunks(
    records: Vec<StreamRecord>,
    oversized_bucket: &str,
) -> Result<Vec<PlannedChunk>, PipelineError> {
    let mut chunks = Vec::new();
    for ((stream, shard_id), group) in group_by_shard(records) {
        ShardChunker::new(&stream, &shard_id, oversized_bucket).plan(group, &mut chunks)?;
    }
    Ok(chunks)
}

/// Groups records by (stream, shard), in order of each group's first record, keeping the
/// delivery order inside each group.
fn group_by_shard(records: Vec<StreamRecord>) -> Vec<((String, String), Vec<StreamRecord>)> {
    let mut groups: Vec<((String, String), Vec<StreamRecord>)> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for record in records {
        let key = (record.stream.clone(), record.shard_id.clone());
        match index.get(&key) {
            Some(&i) => groups[i].1.push(record),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![record]));
            }
        }
    }
    groups
}

/// A record ready to go into a chunk, with its exact serialised size.
struct Placed {
    record: SourceRecord,
    json_len: usize,
    oversized: Option<OversizedRecord>,
}

/// Cuts one shard's records into chunks.
struct ShardChunker<'a> {
    stream: &'a str,
    shard_id: &'a str,
    bucket: &'a str,
    /// Chunks already cut per (first, last) sequence, for [`ChunkId::index`].
    ranges: HashMap<(String, String), u32>,
}

impl<'a> ShardChunker<'a> {
    fn new(stream: &'a str, shard_id: &'a str, bucket: &'a str) -> Self {
        Self {
            stream,
            shard_id,
            bucket,
            ranges: HashMap::new(),
        }
    }

    fn plan(
        mut self,
        records: Vec<StreamRecord>,
        out: &mut Vec<PlannedChunk>,
    ) -> Result<(), PipelineError> {
        let mut current: Vec<Placed> = Vec::new();
        let mut current_bytes = 0usize;
        for record in records {
            let placed = self.place(record)?;
            if let Some(first) = current.first() {
                let first_sequence = &first.record.sequence_number;
                // JSON size with this record added: envelope + records + one comma between each.
                let with_it = self.envelope_len(first_sequence, &placed.record.sequence_number)
                    + current_bytes
                    + placed.json_len
                    + current.len();
                if current.len() >= MAX_CHUNK_RECORDS || with_it > MAX_CHUNK_PAYLOAD_BYTES {
                    out.push(self.cut(std::mem::take(&mut current))?);
                    current_bytes = 0;
                }
            }
            current_bytes += placed.json_len;
            current.push(placed);
        }
        if !current.is_empty() {
            out.push(self.cut(current)?);
        }
        Ok(())
    }

    /// Decides whether a record travels inline or by reference, and measures it.
    fn place(&self, record: StreamRecord) -> Result<Placed, PipelineError> {
        if record.sequence_number.is_empty() {
            return Err(PipelineError::invalid_payload(format!(
                "a record of shard {} has no sequence number",
                self.shard_id
            )));
        }
        if record.data.len() <= MAX_INLINE_RECORD_BYTES {
            let inline = SourceRecord {
                sequence_number: record.sequence_number.clone(),
                partition_key: record.partition_key.clone(),
                arrived_at: record.arrived_at,
                data: Some(BASE64.encode(&record.data)),
                data_ref: None,
            };
            let json_len = json_len(&inline)?;
            if self.fits_alone(&inline.sequence_number, json_len) {
                return Ok(Placed {
                    record: inline,
                    json_len,
                    oversized: None,
                });
            }
        }
        let key =
            ArchiveKey::for_oversized_record(self.stream, self.shard_id, &record.sequence_number);
        let by_ref = SourceRecord {
            sequence_number: record.sequence_number,
            partition_key: record.partition_key,
            arrived_at: record.arrived_at,
            data: None,
            data_ref: Some(ObjectRef {
                bucket: self.bucket.to_owned(),
                key: key.to_string(),
                bytes: record.data.len() as u64,
            }),
        };
        let json_len = json_len(&by_ref)?;
        if !self.fits_alone(&by_ref.sequence_number, json_len) {
            return Err(PipelineError::invalid_payload(format!(
                "record {} of shard {} does not fit a chunk even by reference ({json_len} bytes of metadata)",
                by_ref.sequence_number, self.shard_id
            )));
        }
        Ok(Placed {
            record: by_ref,
            json_len,
            oversized: Some(OversizedRecord {
                key,
                data: record.data,
            }),
        })
    }

    fn fits_alone(&self, sequence_number: &str, json_len: usize) -> bool {
        self.envelope_len(sequence_number, sequence_number) + json_len <= MAX_CHUNK_PAYLOAD_BYTES
    }

    /// Size of a chunk's JSON with no records, with room for the largest possible `index`.
    fn envelope_len(&self, first_sequence: &str, last_sequence: &str) -> usize {
        let empty = ChunkInput {
            chunk: self.chunk_id(first_sequence, last_sequence, u32::MAX),
            records: Vec::new(),
        };
        // Serialising plain strings and numbers cannot fail; count the worst case if it did.
        serde_json::to_vec(&empty).map_or(MAX_CHUNK_PAYLOAD_BYTES, |v| v.len())
    }

    fn chunk_id(&self, first_sequence: &str, last_sequence: &str, index: u32) -> ChunkId {
        ChunkId {
            stream: self.stream.to_owned(),
            shard_id: self.shard_id.to_owned(),
            first_sequence: first_sequence.to_owned(),
            last_sequence: last_sequence.to_owned(),
            index,
        }
    }

    fn cut(&mut self, placed: Vec<Placed>) -> Result<PlannedChunk, PipelineError> {
        let (Some(first), Some(last)) = (placed.first(), placed.last()) else {
            return Err(PipelineError::new(
                ErrorKind::Internal,
                "tried to cut an empty chunk",
            ));
        };
        let range = (
            first.record.sequence_number.clone(),
            last.record.sequence_number.clone(),
        );
        let seen = self.ranges.entry(range.clone()).or_insert(0);
        let index = *seen;
        *seen += 1;
        let chunk = self.chunk_id(&range.0, &range.1, index);
        let mut records = Vec::with_capacity(placed.len());
        let mut oversized = Vec::new();
        for p in placed {
            records.push(p.record);
            oversized.extend(p.oversized);
        }
        let input = ChunkInput { chunk, records };
        let input_json = serde_json::to_string(&input).map_err(|e| {
            PipelineError::with_source(ErrorKind::Internal, "could not serialise a chunk", e)
        })?;
        if input_json.len() > MAX_CHUNK_PAYLOAD_BYTES {
            return Err(PipelineError::new(
                ErrorKind::Internal,
                format!(
                    "chunk {} is {} bytes, over the {MAX_CHUNK_PAYLOAD_BYTES} budget",
                    input.execution_name(),
                    input_json.len()
                ),
            ));
        }
        Ok(PlannedChunk {
            input,
            input_json,
            oversized,
        })
    }
}

fn json_len(record: &SourceRecord) -> Result<usize, PipelineError> {
    serde_json::to_vec(record).map(|v| v.len()).map_err(|e| {
        PipelineError::with_source(ErrorKind::Internal, "could not serialise a record", e)
    })
}

#[cfg(test)]
mod tests;
