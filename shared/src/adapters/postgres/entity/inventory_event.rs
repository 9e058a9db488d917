//! `inventory_events`: the append-only event store, partitioned by day of `recorded_at`. The
//! table's key is (`seq`, `recorded_at`); `seq` alone is unique, since one sequence numbers
//! every event.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "inventory_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// Unique through `inventory_update_key_ids` (its first 128 bits), not by an index of this
    /// table.
    pub update_key: String,
    pub event_type: String,
    pub event_version: i32,
    pub product_id: String,
    pub supplier_id: String,
    pub occurred_at: DateTimeUtc,
    pub recorded_at: DateTimeUtc,
    /// The serialised event (`InventoryUpdateReceived` for version 1), in events appended
    /// before migration 10; `None` in the others, whose fields are the typed columns below.
    pub payload: Option<Json>,
    pub quantity: Option<i64>,
    pub price: Option<Decimal>,
    pub currency: Option<String>,
    pub occurred_at_from_supplier: Option<bool>,
    /// `None` when the supplier sent no `update_id` (and in payload rows).
    pub update_id: Option<String>,
    pub source_shard_id: Option<String>,
    pub source_sequence_number: Option<String>,
    pub source_arrived_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
