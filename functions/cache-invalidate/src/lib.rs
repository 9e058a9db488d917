//! The `cache-invalidate` task: after persist committed, raises the changed products' cache
//! fences and evicts their older entries in one Redis round trip, so no read is served, or
//! cached, older than the database (SPEC invariant 4).

mod cache;
mod config;
mod handler;

pub use cache::connect;
pub use config::Config;
pub use handler::handle;

#[cfg(test)]
mod tests;
