//! Ports: the small traits the use cases need from the outside world. Adapters implement
//! them (see [`crate::adapters`]); tests implement them in memory. They are pure traits over
//! the domain's types, so they compile without any adapter feature.
//!
//! By concern: the pipeline's writes (the event store, quarantine, the objects it keeps in
//! S3, the cache's invalidation, the supplier rejections), the read path's product reader and
//! cache, the fan-out's executions, and the schema migrator with its login secret.

mod fanout;
mod migrate;
mod read;
mod write;

pub use fanout::{ExecutionStarter, StartOutcome};
pub use migrate::{LoginSecret, SchemaMigrator};
pub use read::{CacheFill, CacheRead, Cached, FillOutcome, ProductReader};
pub use write::{
    AppendOutcome, CacheInvalidator, EventStore, ExportStore, ObjectKind, ObjectStore, Quarantine,
    QuarantinedRecord, RejectionStore,
};
