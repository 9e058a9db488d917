//! The payloads that travel between the fan-out and the state machine's tasks. Their JSON
//! shape is the contract with `statemachines/inventory-pipeline.asl.json`.
//!
//! Sizes: a chunk's execution input is kept under [`MAX_CHUNK_PAYLOAD_BYTES`]; validate's
//! output is about the same size; the other outputs are small. So no state payload comes near
//! Step Functions' 256 KiB limit (SPEC invariant 6).

use crate::domain::ids::ProductId;
use crate::domain::rejection::Rejection;
use crate::domain::update::{InventoryUpdate, MAX_RECORD_BYTES};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Step Functions' limit on any state's input or output.
pub const STATE_PAYLOAD_LIMIT_BYTES: usize = 256 * 1024;
/// Budget for one chunk's serialised execution input. Validate's output repeats each valid
/// record in parsed form (about the size of its base64 text), so half the limit leaves room.
pub const MAX_CHUNK_PAYLOAD_BYTES: usize = 96 * 1024;
/// Records larger than this travel by reference to S3 instead of inline. They are always
/// rejected as too large, so they only need to be kept, never parsed.
pub const MAX_INLINE_RECORD_BYTES: usize = MAX_RECORD_BYTES;
/// Most records in one chunk, whatever their size.
pub const MAX_CHUNK_RECORDS: usize = 500;

/// Identifies one chunk of one delivered batch; the same batch always yields the same ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkId {
    pub stream: String,
    pub shard_id: String,
    pub first_sequence: String,
    pub last_sequence: String,
    pub index: u32,
}

impl ChunkId {
    /// The execution name: deterministic, at most 80 characters of `[A-Za-z0-9_-]`, readable
    /// enough to find the shard and chunk at a glance.
    pub fn execution_name(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            &self.stream,
            &self.shard_id,
            &self.first_sequence,
            &self.last_sequence,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.update(self.index.to_be_bytes());
        let digest = hex::encode(h.finalize());
        let shard: String = self.shard_id.chars().filter(char::is_ascii_digit).collect();
        let shard = &shard[shard.len().saturating_sub(12)..];
        format!("s{shard}-c{:05}-{}", self.index, &digest[..40])
    }
}

/// Where a record's bytes sit when they are not inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
}

/// One stream record as the fan-out passes it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub arrived_at: DateTime<Utc>,
    /// The record's bytes, base64. Absent when `data_ref` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Where an oversized record's bytes were put.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_ref: Option<ObjectRef>,
}

/// The execution input: one chunk of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInput {
    pub chunk: ChunkId,
    pub records: Vec<SourceRecord>,
}

impl ChunkInput {
    pub fn execution_name(&self) -> String {
        self.chunk.execution_name()
    }
}

/// A record validate turned away, and why. The record itself is in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    pub sequence_number: String,
    pub reason: Rejection,
}

/// Validate's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateOutput {
    pub chunk: ChunkId,
    pub valid: Vec<InventoryUpdate>,
    pub rejected: Vec<RejectedRecord>,
}

/// Archive's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveOutput {
    pub bucket: String,
    pub key: String,
    pub records: usize,
    pub bytes: usize,
}

/// Persist's input: the chunk's valid updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistInput {
    pub chunk: ChunkId,
    pub updates: Vec<InventoryUpdate>,
}

/// A product whose projected state this chunk's updates now determine, at its new version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChangedProduct {
    pub product_id: ProductId,
    pub version: i64,
}

/// Persist's output.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PersistOutput {
    /// Events newly appended to the store.
    pub appended: usize,
    /// Updates the store already had (redelivery, retry, duplicate send).
    pub duplicates: usize,
    /// Products whose current state comes from this chunk's updates. The same on a retry or
    /// redrive as on the first run, so the cache step after it always has the full list.
    pub changed: Vec<ChangedProduct>,
}

/// Cache-invalidate's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInvalidateInput {
    pub products: Vec<ChangedProduct>,
}

/// Cache-invalidate's output.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheInvalidateOutput {
    /// Cached entries removed because they were older than the new version.
    pub evicted: usize,
    /// Fences raised (products whose minimum cacheable version went up).
    pub fenced: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(index: u32) -> ChunkId {
        ChunkId {
            stream: "inventory-updates-dev".into(),
            shard_id: "shardId-000000000007".into(),
            first_sequence: "4959033827149025660855969253836157109592157598913658".into(),
            last_sequence: "4959033827149025660855969253836157109592157598913999".into(),
            index,
        }
    }

    #[test]
    fn execution_names_are_deterministic_valid_and_distinct_per_chunk() {
        let a = chunk(0).execution_name();
        assert_eq!(a, chunk(0).execution_name());
        assert_ne!(a, chunk(1).execution_name());
        assert!(a.len() <= 80, "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
        assert!(a.starts_with("s000000000007-c00000-"), "{a}");
    }

    #[test]
    fn the_chunk_budget_leaves_room_for_validates_output() {
        const { assert!(MAX_CHUNK_PAYLOAD_BYTES * 2 < STATE_PAYLOAD_LIMIT_BYTES) };
    }
}
