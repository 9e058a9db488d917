//! The pipeline's steps, in the order the data takes them: the fan-out cuts a stream batch into
//! chunks ([`fanout`]), then one state-machine execution per chunk runs [`validate`], then
//! [`archive`] beside [`persist`], then [`invalidate`]. Each step takes its input payload
//! ([`payloads`]) and the ports it needs, so the Lambda handlers stay a few lines long.

pub mod archive;
pub mod fanout;
pub mod invalidate;
pub mod payloads;
pub mod persist;
pub mod supplier_rejections;
pub mod validate;

pub use archive::{archive_chunk, encode_archive};
pub use invalidate::invalidate_cache;
pub use persist::{check_persist_delay, persist_chunk, persist_updates};
pub use validate::validate_chunk;
