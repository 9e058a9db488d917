//! SeaORM entities for the tables the migrations create (see `migrations/`). They are the
//! database's shapes; [`super::rows`] turns them into domain types.

pub mod inventory_event;
pub mod product_offer;
pub mod product_summary;
pub mod quarantined_record;
