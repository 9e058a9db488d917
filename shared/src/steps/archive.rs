//! Archive: every record of a chunk, valid or not, as one gzip JSON-lines object in S3 at a
//! key that is the same on every retry.

use crate::domain::keys::ArchiveKey;
use crate::error::PipelineError;
use crate::ports::{ObjectKind, ObjectStore};
use crate::steps::payloads::{ArchiveOutput, ChunkInput, SourceRecord};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use std::io::Write as _;

/// One line of an archive object: the record exactly as the stream delivered it.
#[derive(Debug, Serialize)]
struct ArchiveLine<'a> {
    stream: &'a str,
    shard_id: &'a str,
    #[serde(flatten)]
    record: &'a SourceRecord,
}

/// Encodes a chunk's records, valid or not, as gzip JSON lines.
pub fn encode_archive(input: &ChunkInput) -> Result<Vec<u8>, PipelineError> {
    gzip_json_lines(input).map_err(|e| {
        PipelineError::with_source(
            crate::ErrorKind::Internal,
            "could not encode the archive",
            e,
        )
    })
}

/// The lines are written to memory first and compressed in one call: the serializer writes
/// token by token, and flate2 zeroes its output buffer on every write, which made encoding
/// cost more than the upload. Both steps write to memory, so neither fails in practice.
fn gzip_json_lines(input: &ChunkInput) -> std::io::Result<Vec<u8>> {
    let mut lines = Vec::with_capacity(input.records.len() * 256);
    for record in &input.records {
        let line = ArchiveLine {
            stream: &input.chunk.stream,
            shard_id: &input.chunk.shard_id,
            record,
        };
        serde_json::to_writer(&mut lines, &line)?;
        lines.push(b'\n');
    }
    let mut gz = GzEncoder::new(Vec::with_capacity(lines.len() / 3), Compression::fast());
    gz.write_all(&lines)?;
    gz.finish()
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
