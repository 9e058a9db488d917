//! The inventory pipeline's shared code, laid out the way the data goes:
//!
//! - [`domain`]: what an inventory update is, how a supplier's record becomes one (or is
//!   rejected, with a reason), the events the store keeps, the projection's rules (newest
//!   `occurred_at` wins), key schemes, the inbound contract, and the event store's partition
//!   and retention rules. Pure.
//! - [`steps`]: the write path, fan-out -> validate -> archive and persist -> cache-invalidate,
//!   one use case per state-machine task, and the payloads that travel between them.
//! - [`read`]: the read path, cache-aside over the projection.
//! - [`ports`]: the small traits the steps and the read path need from the outside world.
//! - [`adapters`]: those ports on PostgreSQL (SeaORM), Redis, S3 and the other AWS services,
//!   each behind a Cargo feature, so a function compiles only the ones it uses.
//! - [`error`], [`config`], [`redact`]: the error taxonomy the state machine retries on,
//!   configuration lookup, and secrets kept out of logs.
//!
//! The synthetic feeds (`feed`) that tests, benchmarks, the demo and the CLI generate, and the
//! in-memory doubles of the ports (`testing`), are compiled only with the `test-util` feature,
//! which no function enables.

pub mod config;
pub mod domain;
pub mod error;
#[cfg(feature = "test-util")]
pub mod feed;
#[cfg(feature = "openapi")]
mod openapi;
pub mod ports;
pub mod read;
pub mod redact;
pub mod steps;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub mod adapters;

pub use domain::event::{EventEnvelope, InventoryUpdateReceived, UpdateKey};
pub use domain::ids::{ProductId, SupplierId, UpdateId};
pub use domain::keys::{ArchiveKey, CacheKeys, RejectionKey};
pub use domain::money::{Currency, Price, Quantity};
pub use domain::projection::{Offer, ProductSummary, ProjectionChange};
pub use domain::rejection::{Rejection, RejectionCode};
pub use domain::update::{InventoryUpdate, SourcePosition};
pub use error::{ErrorKind, PipelineError};
pub use steps::payloads::{
    ArchiveOutput, CacheInvalidateInput, CacheInvalidateOutput, ChangedProduct, ChunkId,
    ChunkInput, PersistInput, PersistOutput, RejectedRecord, SourceRecord, ValidateOutput,
};
