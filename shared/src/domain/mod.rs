//! What the pipeline is about, with no I/O: identifiers and money, how a supplier's record
//! becomes an [`update::InventoryUpdate`] or a [`rejection::Rejection`], the events the store
//! keeps, the projection's rules (newest `occurred_at` wins), the key schemes of S3 and Redis,
//! the inbound contract, and the event store's partition and retention rules.

pub mod contract;
pub mod event;
pub mod ids;
pub mod keys;
pub mod money;
pub mod partitions;
pub mod projection;
pub mod rejection;
pub mod retention;
pub mod update;
