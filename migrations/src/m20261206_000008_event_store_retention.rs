//! The bookkeeping of the event store's retention (`inventory::retention`), and the rules
//! version of the live projection (`projection_state`): which parts of
//! which day were exported to the archive bucket and verified, and which days have left the
//! database. Only schema-migrate's retention job (the master user) writes them; the rebuild
//! reads the retired days to refuse a replay that would miss their events, and the read API
//! (the functions' role may read the retired days) to say how far back a history goes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE event_store_exports (
    day         DATE NOT NULL,
    part        INT NOT NULL CHECK (part >= 0),
    after_seq   BIGINT NOT NULL,
    up_to_seq   BIGINT NOT NULL CHECK (up_to_seq > after_seq),
    events      BIGINT NOT NULL CHECK (events > 0),
    checksum    NUMERIC NOT NULL,
    object_key  TEXT NOT NULL,
    verified_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (day, part)
);
COMMENT ON TABLE event_store_exports IS
    'Parts of a day of inventory_events exported to the archive bucket and read back with the same event count and checksum as the rows: the day''s events with after_seq < seq <= up_to_seq. A run that is interrupted goes on after the last verified part.';

CREATE TABLE event_store_retired_days (
    day          DATE PRIMARY KEY,
    events       BIGINT NOT NULL,
    checksum     NUMERIC NOT NULL,
    max_seq      BIGINT,
    manifest     TEXT NOT NULL,
    snapshot_id  BIGINT,
    retired_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE event_store_retired_days IS
    'Days of inventory_events that left the database after their export was verified: the manifest''s location, the day''s event count, checksum and greatest seq, and the projection snapshot that covered them (a rebuild needs a snapshot at or past max_seq).';
-- The projection rules the live projection was built under: a snapshot of the live tables
-- (the retention takes one) is only true under those rules. Each rebuild's switch sets it; the
-- rules in use when this migration runs are version 1 (inventory::projection).
CREATE TABLE projection_state (
    id            BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    rules_version INT NOT NULL
);
INSERT INTO projection_state (rules_version) VALUES (1);
COMMENT ON TABLE projection_state IS
    'One row: the projection rules (PROJECTION_RULES_VERSION) the live product_offers and product_summaries were built under; set by each rebuild''s switch.';

-- The read API says on a history's last page since when events are held.
GRANT SELECT ON event_store_retired_days TO inventory_writer;
"#;

const DOWN: &str = r#"
DROP TABLE IF EXISTS projection_state;
DROP TABLE IF EXISTS event_store_retired_days;
DROP TABLE IF EXISTS event_store_exports;
"#;

crate::sql_migration!();
