//! `quarantined_records`: rejected stream records, one per stream position.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "quarantined_records")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub stream: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub arrived_at: DateTimeUtc,
    pub reason_code: String,
    pub reason_message: String,
    pub raw_payload: Option<Vec<u8>>,
    pub payload_ref: Option<Json>,
    pub quarantined_at: DateTimeUtc,
    pub replayed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
