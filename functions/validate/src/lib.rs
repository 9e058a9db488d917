//! The `validate` task: parses a chunk's records into inventory updates, quarantines the bad
//! ones with their reasons (and copies each mapped supplier's own where that supplier can read
//! them), and passes the good ones on. One bad record never fails the chunk.

mod config;
mod handler;

pub use config::Config;
pub use handler::handle;

#[cfg(test)]
mod tests;
