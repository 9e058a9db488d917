//! Snapshots of the projection at a known event position, so that a rebuild reads the latest
//! snapshot plus the events after it instead of the whole history (and, once old events leave
//! the database, still has what it needs).
//!
//! A snapshot is a copy of `product_offers` and `product_summaries` as a fold of every event
//! up to `up_to_seq`, taken with the projection rules `rules_version` (a rebuild ignores
//! snapshots of other rules). It is written in one transaction, header and rows together, so
//! a snapshot that exists is whole. Only `rebuild-projection` (the master user) writes and
//! reads them; the functions' role has no privilege on them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE projection_snapshots (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    up_to_seq     BIGINT NOT NULL CHECK (up_to_seq >= 0),
    rules_version INT NOT NULL,
    taken_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    offers        BIGINT NOT NULL,
    products      BIGINT NOT NULL
);
COMMENT ON TABLE projection_snapshots IS
    'The projection (product_offers, product_summaries) as the fold of every event with seq <= up_to_seq under the projection rules rules_version. A rebuild starts from the newest one of its rules and replays only the later events.';

CREATE TABLE projection_snapshot_offers (
    snapshot_id BIGINT NOT NULL REFERENCES projection_snapshots (id) ON DELETE CASCADE,
    product_id  TEXT COLLATE "C" NOT NULL,
    supplier_id TEXT COLLATE "C" NOT NULL,
    quantity    BIGINT NOT NULL,
    price       NUMERIC(20, 4) NOT NULL,
    currency    TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    update_key  TEXT COLLATE "C" NOT NULL,
    event_seq   BIGINT NOT NULL,
    PRIMARY KEY (snapshot_id, product_id, supplier_id)
);
COMMENT ON TABLE projection_snapshot_offers IS
    'The rows of product_offers in the snapshot snapshot_id.';

CREATE TABLE projection_snapshot_summaries (
    snapshot_id         BIGINT NOT NULL REFERENCES projection_snapshots (id) ON DELETE CASCADE,
    product_id          TEXT COLLATE "C" NOT NULL,
    total_quantity      BIGINT NOT NULL,
    best_price          NUMERIC(20, 4),
    best_price_currency TEXT,
    best_price_supplier TEXT COLLATE "C",
    supplier_count      INT NOT NULL,
    version             BIGINT NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (snapshot_id, product_id)
);
COMMENT ON TABLE projection_snapshot_summaries IS
    'The rows of product_summaries in the snapshot snapshot_id.';
"#;

const DOWN: &str = r#"
DROP TABLE IF EXISTS projection_snapshot_summaries;
DROP TABLE IF EXISTS projection_snapshot_offers;
DROP TABLE IF EXISTS projection_snapshots;
"#;

crate::sql_migration!();
