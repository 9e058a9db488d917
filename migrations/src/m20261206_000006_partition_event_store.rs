//! Partitions `inventory_events` by day of `recorded_at`, with pg_partman creating the days
//! ahead of need, so old events can later leave the database a whole partition at a time
//! instead of growing it for ever.
//!
//! A unique index on a partitioned table must include the partition key, so
//! `UNIQUE (update_key)` cannot stay on the events. Idempotency moves to its own table,
//! `inventory_update_keys`: persist inserts a chunk's keys there first (`ON CONFLICT DO
//! NOTHING`) and appends an event only for the keys that were new, in the same statement and
//! transaction. Existing keys are copied in, so an update appended before this migration is
//! still a repeat after it, whichever partition its event is in.
//!
//! `seq` keeps its sequence, so the total order goes on where it stopped. The existing events
//! are copied into the partitions; the old table is dropped. The append-only triggers are
//! made again on the partitioned table, where PostgreSQL clones the row trigger to every
//! partition.
//!
//! pg_partman is what RDS for PostgreSQL offers for this (RDS 16 ships 5.x; Debian's
//! PostgreSQL 15 package, used locally, is 4.7). `create_parent` names declarative
//! partitioning `native` before 5.0 and `range` from 5.0 on; the block below picks by the
//! installed version. Partitions are cut at midnight UTC.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
SET LOCAL TIME ZONE 'UTC';
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

CREATE TABLE inventory_update_keys (
    update_key TEXT COLLATE "C" PRIMARY KEY CHECK (char_length(update_key) = 64),
    first_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE inventory_update_keys IS
    'Idempotency: the key of every update appended to inventory_events in the last 67 days (the 30-day dedup window and a 37-day margin; docs/event-store.md), and when it was first seen. An update whose key is here is a repeat and is not appended again.';
-- first_seen = now(), not the event's recorded_at: chunks validated before the dedup window
-- existed may still be redriven into Persist, so the existing keys start their 67 days now.
INSERT INTO inventory_update_keys (update_key, first_seen)
SELECT update_key, now() FROM inventory_events;
-- The daily maintenance forgets keys older than the dedup window plus its margin; the keys are
-- inserted in time order, which is what a BRIN index needs (a few pages, cheap to keep).
CREATE INDEX inventory_update_keys_first_seen_idx ON inventory_update_keys USING brin (first_seen);

ALTER SEQUENCE inventory_events_seq_seq OWNED BY NONE;
ALTER TABLE inventory_events RENAME TO inventory_events_unpartitioned;
ALTER TABLE inventory_events_unpartitioned
    RENAME CONSTRAINT inventory_events_pkey TO inventory_events_unpartitioned_pkey;
ALTER TABLE inventory_events_unpartitioned
    RENAME CONSTRAINT inventory_events_update_key_key TO inventory_events_unpartitioned_update_key_key;

CREATE TABLE inventory_events (
    seq           BIGINT NOT NULL DEFAULT nextval('inventory_events_seq_seq'),
    update_key    TEXT COLLATE "C" NOT NULL,
    event_type    TEXT NOT NULL,
    event_version INT NOT NULL,
    product_id    TEXT COLLATE "C" NOT NULL,
    supplier_id   TEXT COLLATE "C" NOT NULL,
    occurred_at   TIMESTAMPTZ NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    payload       JSONB NOT NULL,
    CONSTRAINT inventory_events_update_key_check CHECK (char_length(update_key) = 64),
    CONSTRAINT inventory_events_event_version_check CHECK (event_version > 0),
    CONSTRAINT inventory_events_pkey PRIMARY KEY (seq, recorded_at)
) PARTITION BY RANGE (recorded_at);
ALTER SEQUENCE inventory_events_seq_seq OWNED BY inventory_events.seq;
COMMENT ON TABLE inventory_events IS
    'Append-only event store, one partition per day of recorded_at (pg_partman). seq is the total order; inventory_update_keys makes each update unique (idempotency).';

DO $$
DECLARE
    first_day TEXT := to_char(
        date_trunc('day', coalesce((SELECT min(recorded_at) FROM inventory_events_unpartitioned), now())),
        'YYYY-MM-DD"T00:00:00Z"');
    major INT := split_part(
        (SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'), '.', 1)::int;
BEGIN
    PERFORM partman.create_parent(
        p_parent_table => 'public.inventory_events',
        p_control => 'recorded_at',
        p_type => CASE WHEN major >= 5 THEN 'range' ELSE 'native' END,
        p_interval => '1 day',
        p_premake => 7,
        p_start_partition => first_day);
END
$$;
-- Make the days ahead from the clock, not from the newest event: by default pg_partman counts
-- them from the newest event and makes nothing on an empty or quiet store, which would leave
-- a quiet stack without partitions after a week.
UPDATE partman.part_config SET infinite_time_partitions = true
WHERE parent_table = 'public.inventory_events';

INSERT INTO inventory_events
    (seq, update_key, event_type, event_version, product_id, supplier_id, occurred_at, recorded_at, payload)
SELECT seq, update_key, event_type, event_version, product_id, supplier_id, occurred_at, recorded_at, payload
FROM inventory_events_unpartitioned
ORDER BY seq;
DROP TABLE inventory_events_unpartitioned;

-- The one change allowed: pg_partman's partition_data_proc moving events that landed in the
-- default partition (maintenance was late) into their day's partition, which it does by
-- DELETE ... RETURNING and INSERT. Only in that partition, and only in a session that says so
-- (docs/runbooks.md); the functions' role has no DELETE privilege at all.
CREATE OR REPLACE FUNCTION inventory_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'inventory_events_default'
       AND current_setting('inventory.move_default_partition', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'inventory_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER inventory_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON inventory_events
    FOR EACH ROW EXECUTE FUNCTION inventory_events_refuse_change();
CREATE TRIGGER inventory_events_no_truncate
    BEFORE TRUNCATE ON inventory_events
    FOR EACH STATEMENT EXECUTE FUNCTION inventory_events_refuse_change();

GRANT SELECT, INSERT ON inventory_events TO inventory_writer;
GRANT SELECT, INSERT ON inventory_update_keys TO inventory_writer;
"#;

/// Back to one table, with the events' own unique key. The partition set leaves pg_partman's
/// configuration first; the extension stays (another table may use it).
const DOWN: &str = r#"
CREATE TABLE inventory_events_unpartitioned (
    LIKE inventory_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
);
INSERT INTO inventory_events_unpartitioned SELECT * FROM inventory_events ORDER BY seq;
ALTER SEQUENCE inventory_events_seq_seq OWNED BY NONE;
DELETE FROM partman.part_config WHERE parent_table = 'public.inventory_events';
DROP TABLE inventory_events;
DROP TABLE IF EXISTS partman.template_public_inventory_events;
ALTER TABLE inventory_events_unpartitioned RENAME TO inventory_events;
ALTER TABLE inventory_events ADD CONSTRAINT inventory_events_pkey PRIMARY KEY (seq);
ALTER TABLE inventory_events ADD CONSTRAINT inventory_events_update_key_key UNIQUE (update_key);
ALTER SEQUENCE inventory_events_seq_seq OWNED BY inventory_events.seq;
CREATE TRIGGER inventory_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON inventory_events
    FOR EACH ROW EXECUTE FUNCTION inventory_events_refuse_change();
CREATE TRIGGER inventory_events_no_truncate
    BEFORE TRUNCATE ON inventory_events
    FOR EACH STATEMENT EXECUTE FUNCTION inventory_events_refuse_change();
GRANT SELECT, INSERT ON inventory_events TO inventory_writer;
DROP TABLE inventory_update_keys;
CREATE OR REPLACE FUNCTION inventory_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'inventory_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
"#;

crate::sql_migration!();
