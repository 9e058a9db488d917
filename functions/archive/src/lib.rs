//! The `archive` task: writes a chunk's raw records, valid or not, to S3 as one gzip
//! JSON-lines object at a key that is the same on every retry (SPEC invariant 1).

mod config;
mod handler;

pub use config::Config;
pub use handler::handle;

#[cfg(test)]
mod tests;
