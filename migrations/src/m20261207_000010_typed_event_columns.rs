//! An event's fields as typed columns instead of a JSONB payload. The payload repeated the
//! columns the event already had (product, supplier, `occurred_at`) and held the rest as JSON:
//! 361 of an event row's 524 bytes, parsed by the server on every append. Persist now writes
//! the rest as columns too (`quantity`, `price`, `currency`, `occurred_at_from_supplier`,
//! `update_id` and the record's place in the stream, `source_*`) and no payload; an event row
//! is then about half the size, and appending one costs no JSON parsing.
//!
//! Existing events keep their payload and are not rewritten (a rewrite of every partition would
//! hold the table for as long as it takes); the store's readers read both forms. A row has
//! either a payload or every typed column but `update_id` (which is null when the supplier sent
//! none): `inventory_events_payload_or_typed_columns`, checked on new rows only (`NOT VALID`:
//! every existing row has its payload, and validating would scan the whole store under lock).
//!
//! The previous release's Persist, still running while the stack updates (or after a
//! rollback), writes payload rows, which this release reads. The previous release's readers
//! (the read API's history, the CLI's rebuild) cannot read the typed rows: the template updates
//! the read API before Persist. After a rollback they fail on the typed rows Persist wrote; the
//! down migration would give those rows a payload back, but no deployed tool runs it, so the
//! way back past this migration is forward (docs/event-store.md, "Typed columns").
//!
//! A retention export line is a row as `to_jsonb` gives it, so the new columns change the
//! checksum of every line: a day exported but not yet dropped is forgotten here, and the next
//! retention run exports it again instead of failing its last check.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
-- A retention run holds partitions (it reads, locks and drops them) and may need the whole table
-- next, which this migration is about to take: let a run in progress end first (a minute at
-- most). A run that starts meanwhile finds its advisory lock taken and leaves the work to the
-- next hour. 7597139558985462894 is RETENTION_LOCK_KEY (shared/src/adapters/postgres/retention.rs).
SET LOCAL lock_timeout = '60s';
SELECT pg_advisory_xact_lock(7597139558985462894);
-- Then the table and every partition, each waited for at most 5 s: appends hold them for a
-- chunk's transaction, reads of history for a query, a rebuild's replay for longer. A migration
-- queued behind a long transaction would hold up every append behind it, while a failed deploy
-- is simply run again.
SET LOCAL lock_timeout = '5s';
ALTER TABLE inventory_events
    ADD COLUMN quantity BIGINT,
    ADD COLUMN price NUMERIC,
    ADD COLUMN currency TEXT,
    ADD COLUMN occurred_at_from_supplier BOOLEAN,
    ADD COLUMN update_id TEXT,
    ADD COLUMN source_shard_id TEXT,
    ADD COLUMN source_sequence_number TEXT,
    ADD COLUMN source_arrived_at TIMESTAMPTZ,
    ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE inventory_events ADD CONSTRAINT inventory_events_payload_or_typed_columns CHECK (
    payload IS NOT NULL
    OR (quantity IS NOT NULL AND price IS NOT NULL AND currency IS NOT NULL
        AND occurred_at_from_supplier IS NOT NULL AND source_shard_id IS NOT NULL
        AND source_sequence_number IS NOT NULL AND source_arrived_at IS NOT NULL)
) NOT VALID;
SET LOCAL lock_timeout TO DEFAULT;
DELETE FROM event_store_exports x
WHERE NOT EXISTS (SELECT 1 FROM event_store_retired_days r WHERE r.day = x.day);
COMMENT ON COLUMN inventory_events.payload IS
    'The serialised event (InventoryUpdateReceived v1), in events appended before the typed columns existed; null in the others, whose fields are the typed columns.';
"#;

/// Back to payloads alone: every typed row gets the payload the previous release reads (the
/// append-only trigger is set aside for that one update, inside this transaction), then the
/// columns go, and the days exported but not dropped are exported again.
const DOWN: &str = r#"
SET LOCAL TIME ZONE 'UTC';
SET LOCAL lock_timeout = '60s';
SELECT pg_advisory_xact_lock(7597139558985462894);
SET LOCAL lock_timeout = '5s';
LOCK TABLE inventory_events IN EXCLUSIVE MODE;
SET LOCAL lock_timeout TO DEFAULT;
ALTER TABLE inventory_events DISABLE TRIGGER inventory_events_no_update_or_delete;
UPDATE inventory_events SET payload = jsonb_build_object(
    'product_id', product_id,
    'supplier_id', supplier_id,
    'quantity', quantity,
    'price', price::text,
    'currency', currency,
    'occurred_at', occurred_at,
    'occurred_at_from_supplier', occurred_at_from_supplier,
    'update_id', update_id,
    'source', jsonb_build_object(
        'shard_id', source_shard_id,
        'sequence_number', source_sequence_number,
        'arrived_at', source_arrived_at))
WHERE payload IS NULL;
ALTER TABLE inventory_events ENABLE TRIGGER inventory_events_no_update_or_delete;
ALTER TABLE inventory_events DROP CONSTRAINT IF EXISTS inventory_events_payload_or_typed_columns;
ALTER TABLE inventory_events
    ALTER COLUMN payload SET NOT NULL,
    DROP COLUMN IF EXISTS quantity,
    DROP COLUMN IF EXISTS price,
    DROP COLUMN IF EXISTS currency,
    DROP COLUMN IF EXISTS occurred_at_from_supplier,
    DROP COLUMN IF EXISTS update_id,
    DROP COLUMN IF EXISTS source_shard_id,
    DROP COLUMN IF EXISTS source_sequence_number,
    DROP COLUMN IF EXISTS source_arrived_at;
COMMENT ON COLUMN inventory_events.payload IS NULL;
DELETE FROM event_store_exports x
WHERE NOT EXISTS (SELECT 1 FROM event_store_retired_days r WHERE r.day = x.day);
"#;

crate::sql_migration!();
