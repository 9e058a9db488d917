//! The product projection, derived from the event store: one offer per product and supplier
//! (the newest update wins) and one summary per product. Both can be rebuilt from the events.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE product_offers (
    product_id  TEXT COLLATE "C" NOT NULL,
    supplier_id TEXT COLLATE "C" NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity >= 0),
    price       NUMERIC(20, 4) NOT NULL CHECK (price >= 0),
    currency    TEXT NOT NULL CHECK (char_length(currency) = 3),
    occurred_at TIMESTAMPTZ NOT NULL,
    update_key  TEXT COLLATE "C" NOT NULL,
    event_seq   BIGINT NOT NULL,
    PRIMARY KEY (product_id, supplier_id)
);
COMMENT ON TABLE product_offers IS
    'Projection: each supplier''s current stock and price per product, from the event (event_seq) with the newest occurred_at.';

CREATE TABLE product_summaries (
    product_id          TEXT COLLATE "C" PRIMARY KEY,
    total_quantity      BIGINT NOT NULL DEFAULT 0,
    best_price          NUMERIC(20, 4),
    best_price_currency TEXT CHECK (char_length(best_price_currency) = 3),
    best_price_supplier TEXT COLLATE "C",
    supplier_count      INT NOT NULL DEFAULT 0,
    version             BIGINT NOT NULL DEFAULT 0,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE product_summaries IS
    'Projection: per-product summary of its offers. version = greatest event_seq among the offers; it only increases. A row with version 0 is a lock placeholder that no committed transaction leaves behind.';
"#;

const DOWN: &str = r#"
DROP TABLE IF EXISTS product_summaries;
DROP TABLE IF EXISTS product_offers;
"#;

crate::sql_migration!();
