//! The `persist` task: appends a chunk's valid updates to the event store and updates the
//! projection in the same transaction, once per update whatever the retries, and reports the
//! products whose state this chunk now determines.

mod config;
mod handler;

pub use config::Config;
pub use handler::handle;

#[cfg(test)]
mod tests;
