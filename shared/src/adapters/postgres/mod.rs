//! PostgreSQL adapter (SeaORM): the event store and its projection, written in one
//! transaction; the event store's partition maintenance; the quarantine; the projection
//! rebuild and its snapshots; the retention that exports old days and drops them; the read
//! API's product reads ([`PgProductReader`]); and, with the `test-util` feature, the plain
//! projection reads tests compare against. The rules themselves (newest wins, summaries) live
//! in [`crate::domain::projection`] only: nothing here decides which update wins.

mod config;
mod connect;
pub mod entity;
mod error;
mod event_store;
mod maintenance;
#[cfg(test)]
mod mock;
mod product_reader;
mod projection_store;
mod quarantine;
#[cfg(feature = "test-util")]
mod read;
mod rebuild;
mod retention;
mod rows;
mod snapshot;
mod sql;

pub use config::{DatabaseConfig, DatabaseTarget, TlsMode};
pub use connect::{connect, connect_options};
#[cfg(feature = "secrets")]
pub use connect::{connect_from_config, credentials_from_secret};
pub use error::db_error;
pub use event_store::PgEventStore;
pub use maintenance::{
    EVENT_STORE_PARENT, maintain_event_store, partition_report, prune_update_keys,
    prune_update_keys_as_of,
};
pub use product_reader::PgProductReader;
pub use quarantine::{PgQuarantine, QuarantineEntry, list_quarantine};
#[cfg(feature = "test-util")]
pub use read::{load_offers, load_projection, load_summary};
pub use rebuild::{
    REBUILD_LOCK_KEY, REBUILD_SCHEMA, RebuildFrom, RebuildReport, RebuildStage, rebuild_projection,
    rebuild_projection_from, rebuild_projection_observed,
};
pub use retention::{RETENTION_LOCK_KEY, retain_event_store, retired_up_to};
pub use rows::envelope as stored_envelope;
pub use sea_orm::DatabaseConnection;
pub use snapshot::{LiveSnapshot, SNAPSHOTS_KEPT, SnapshotInfo, latest_snapshot, snapshot_live};
