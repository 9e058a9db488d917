//! The inventory pipeline's domain: what an inventory update is, how a supplier's record
//! becomes one (or is rejected, with a reason), the events the store keeps, the projection
//! rules (newest `occurred_at` wins), key schemes, and the error taxonomy the state machine
//! retries on.
//!
//! Everything at the top level is pure: no AWS SDK, SeaORM or Redis type appears in it.
//! Adapters live in [`adapters`], each behind a Cargo feature, so a function compiles only
//! the ones it uses. The synthetic feeds (`feed`) that tests, benchmarks, the demo and the CLI
//! generate, and the in-memory doubles of the ports (`testing`), are compiled only with the
//! `test-util` feature, which no function enables.

pub mod catalog_read;
pub mod config;
pub mod contract;
pub mod error;
pub mod event;
pub mod fanout;
#[cfg(feature = "test-util")]
pub mod feed;
pub mod ids;
pub mod keys;
pub mod money;
#[cfg(feature = "openapi")]
mod openapi;
pub mod pipeline;
pub mod ports;
pub mod projection;
pub mod redact;
pub mod rejection;
pub mod retention;
pub mod supplier_rejections;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod update;
pub mod usecase;

pub mod adapters;

pub use error::{ErrorKind, PipelineError};
pub use event::{EventEnvelope, InventoryUpdateReceived, UpdateKey};
pub use ids::{ProductId, SupplierId, UpdateId};
pub use keys::{ArchiveKey, CacheKeys, RejectionKey};
pub use money::{Currency, Price, Quantity};
pub use pipeline::{
    ArchiveOutput, CacheInvalidateInput, CacheInvalidateOutput, ChangedProduct, ChunkId,
    ChunkInput, PersistInput, PersistOutput, RejectedRecord, SourceRecord, ValidateOutput,
};
pub use projection::{Offer, ProductSummary, ProjectionChange};
pub use rejection::{Rejection, RejectionCode};
pub use update::{InventoryUpdate, SourcePosition};
