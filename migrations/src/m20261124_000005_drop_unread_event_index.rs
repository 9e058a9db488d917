//! Drops `inventory_events_product_seq_idx`. No statement reads events by product: persist
//! appends, the projection is read per product from its own tables, and a rebuild reads the
//! store in `seq` order. The index still cost every append a third B-tree insert per event,
//! about a sixth of the insert's time for a 1,000-event chunk. Should a per-product history
//! query ever be needed, build it again with `CREATE INDEX CONCURRENTLY`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "DROP INDEX IF EXISTS inventory_events_product_seq_idx";

const DOWN: &str = "CREATE INDEX IF NOT EXISTS inventory_events_product_seq_idx ON inventory_events (product_id, seq)";

crate::sql_migration!();
