//! `product_summaries`: the per-product summary storefronts read.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "product_summaries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub product_id: String,
    pub total_quantity: i64,
    #[sea_orm(column_type = "Decimal(Some((20, 4)))", nullable)]
    pub best_price: Option<Decimal>,
    pub best_price_currency: Option<String>,
    pub best_price_supplier: Option<String>,
    pub supplier_count: i32,
    /// 0 only for a lock placeholder, which no committed transaction leaves behind.
    pub version: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
