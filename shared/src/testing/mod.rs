//! In-memory doubles of the ports, for the tests of this crate and of the functions (with the
//! `test-util` feature). Each keeps what it was given, in order, and can be set to fail like
//! an unreachable dependency.

mod object_store;
mod quarantine;
mod read;

pub use object_store::{MemoryObjectStore, StoredObject};
pub use quarantine::{MemoryQuarantine, MemoryRejectionStore};
pub use read::{ABSENT_VERSION, CacheEntry, MemoryProductCache, MemoryProductReader};
