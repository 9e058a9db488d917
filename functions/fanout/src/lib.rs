//! The fan-out Lambda: turns one Kinesis batch into Step Functions executions, one per chunk.
//!
//! The chunking rules (size budget, oversized records by reference, deterministic names) are
//! business rules and live in [`inventory::steps::fanout`]. This crate applies them to a Kinesis event,
//! puts oversized records in S3, starts the executions (at most [`MAX_STARTS_IN_FLIGHT`] at
//! once) and tells the event source mapping (ESM) what to do with the batch.
//!
//! # What the ESM is told, and why
//!
//! The ESM runs with `FunctionResponseTypes: [ReportBatchItemFailures]`. For a Kinesis stream
//! it does **not** retry only the reported records: it checkpoints just before the *lowest*
//! reported sequence number and redelivers the shard from that record on, including any later
//! record that had succeeded. An empty list checkpoints the whole batch; an entry that names no
//! record of the batch (or an empty identifier) fails the whole batch. So:
//!
//! - Every chunk started, or already started (`ExecutionAlreadyExists`: a redelivery, since the
//!   name and the input are the same for the same records): an empty `batchItemFailures`.
//! - Some chunks could not be started for a transient reason (throttling, a 5xx, a timeout):
//!   the first record of each of those chunks is reported, and nothing else. The ESM resumes
//!   at the first failed chunk. Chunks are cut greedily from their first record and
//!   `ChunkId::index` does not count chunks from the start of the batch, so the redelivered
//!   records are cut into the same chunks with the same names: the chunks after the failed one
//!   that did start answer `ExecutionAlreadyExists` and start nothing twice. Only the last
//!   chunk can differ, when the redelivered batch reaches further than the first one; its
//!   records then run a second time, which their idempotent tasks absorb.
//! - A permanent error (the state machine does not exist, access denied, a bucket that is not
//!   there, an event that is not a Kinesis batch) fails the whole invocation with its stable
//!   error type (`Inventory.Misconfigured`, ...). Reporting records would only spin the same
//!   failure; a failed invocation lets the ESM retry, bisect and finally send the batch's
//!   metadata to its on-failure destination, where ops can see it.

mod config;
pub mod event;
mod handler;
#[cfg(test)]
mod oversized_objects;
pub mod sfn;

pub use config::Config;
pub use handler::{MAX_STARTS_IN_FLIGHT, handle};
