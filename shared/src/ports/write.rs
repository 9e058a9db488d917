//! The pipeline's write-side ports: the event store, quarantine, the objects kept in S3
//! (archive, oversized records, exports, supplier rejections) and the cache's invalidation.

use crate::domain::keys::{ArchiveKey, RejectionKey};
use crate::domain::rejection::Rejection;
use crate::domain::update::InventoryUpdate;
use crate::error::PipelineError;
use crate::steps::payloads::{CacheInvalidateOutput, ChangedProduct, ObjectRef};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A rejected record as quarantine keeps it: where it came from, why, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRecord {
    pub stream: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub arrived_at: DateTime<Utc>,
    pub reason: Rejection,
    /// The raw bytes, when they travelled inline.
    pub raw: Option<Vec<u8>>,
    /// Where the raw bytes are, when they did not.
    pub payload_ref: Option<ObjectRef>,
}

/// Keeps rejected records where ops can see and replay them.
#[async_trait]
pub trait Quarantine: Send + Sync {
    /// Stores the records; a record already quarantined (same stream position) is kept once.
    /// Returns how many were new.
    async fn quarantine(&self, records: &[QuarantinedRecord]) -> Result<usize, PipelineError>;
}

/// Stores the rejection objects suppliers read (see [`crate::steps::supplier_rejections`]).
#[async_trait]
pub trait RejectionStore: Send + Sync {
    /// Writes (or overwrites) one JSON-lines object.
    async fn put(&self, key: &RejectionKey, jsonl: Vec<u8>) -> Result<(), PipelineError>;
}

/// The outcome of appending a chunk's updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub appended: usize,
    pub duplicates: usize,
    pub changed: Vec<ChangedProduct>,
}

/// The event store and its projection, written together.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends the updates' events (once each, by update key) and applies the new ones to the
    /// projection, in one transaction.
    async fn append(&self, updates: &[InventoryUpdate]) -> Result<AppendOutcome, PipelineError>;
}

/// Writes objects under [`ArchiveKey`]s into one bucket: the archive's gzip JSON lines of a
/// chunk, and the bytes of records too large to travel inline. The bucket is named in what
/// refers to the objects (an [`ArchiveOutput`](crate::ArchiveOutput), a record's `data_ref`).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// The bucket objects go to.
    fn bucket(&self) -> &str;
    /// Writes (or overwrites, on a redelivery) one object; `kind` says what it holds, for
    /// its content type and encoding.
    async fn put(
        &self,
        key: &ArchiveKey,
        body: Vec<u8>,
        kind: ObjectKind,
    ) -> Result<(), PipelineError>;
}

/// Invalidates cached products.
#[async_trait]
pub trait CacheInvalidator: Send + Sync {
    /// Raises each product's fence to its version and drops any cached entry older than it,
    /// in one round trip, and says how many entries it evicted and fences it raised.
    async fn invalidate(
        &self,
        products: &[ChangedProduct],
    ) -> Result<CacheInvalidateOutput, PipelineError>;
}

/// Stores the event store's exports in the archive bucket (see [`crate::domain::retention`]) and
/// reads them back to verify them.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// `s3://bucket/key`, for messages and the manifest's readers.
    fn location(&self, key: &str) -> String;
    /// Writes (or overwrites) one object: gzip JSON lines, or the manifest's JSON.
    async fn put(&self, key: &str, body: Vec<u8>, kind: ObjectKind) -> Result<(), PipelineError>;
    /// Reads one object back, whole.
    async fn get(&self, key: &str) -> Result<Vec<u8>, PipelineError>;
}

/// What an object holds, for its content type and encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// Gzip-compressed JSON lines: an archived chunk, an export's part.
    GzipJsonLines,
    /// One JSON document: an export's manifest.
    Json,
    /// Bytes as they arrived: a record too large to travel inline.
    Bytes,
}
