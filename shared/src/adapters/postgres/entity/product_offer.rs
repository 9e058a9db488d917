//! `product_offers`: one supplier's current stock and price for one product.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "product_offers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub product_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub supplier_id: String,
    pub quantity: i64,
    #[sea_orm(column_type = "Decimal(Some((20, 4)))")]
    pub price: Decimal,
    pub currency: String,
    pub occurred_at: DateTimeUtc,
    pub update_key: String,
    pub event_seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
