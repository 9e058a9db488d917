//! `inventory_events`: the append-only event store.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "inventory_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    #[sea_orm(unique)]
    pub update_key: String,
    pub event_type: String,
    pub event_version: i32,
    pub product_id: String,
    pub supplier_id: String,
    pub occurred_at: DateTimeUtc,
    pub recorded_at: DateTimeUtc,
    /// The serialised event (`InventoryUpdateReceived` for version 1).
    pub payload: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
