//! Idempotency keys kept as 16-byte `uuid`s instead of 64-character text: the new
//! `inventory_update_key_ids` holds the first 128 bits of each update key's SHA-256. Its
//! primary key index is about a third of the size, so Persist's insert of a chunk's keys (a
//! random B-tree insert per update) finds more of the index in memory, and 67 days of keys take
//! less than half the space (docs/event-store.md, "Keys as 128-bit ids", has the figures). Two
//! different updates whose keys share 128 bits could be taken for one; with 10^10 keys held at
//! once the odds are about 10^-19.
//!
//! The existing keys are copied in, so an update appended before this migration is still a
//! repeat after it. Inserts into the old table wait while they are copied (the first deploy has
//! none to copy; 3,000,000 keys took about 5 s on the development machine).
//! `inventory_update_keys` stays for one release: Persist of the previous release keeps
//! inserting there while the stack updates (and again after a rollback). A trigger records each
//! such key in the new table as well, and skips it (the insert returns nothing, which that
//! Persist reads as "not new") when the new table already has it. So both releases see each
//! other's keys, and an update is appended once whichever of them takes it. The old table is
//! locked against inserts while the keys are copied and the trigger is made, so no key slips
//! between the two.
//!
//! A later migration drops `inventory_update_keys` and its trigger, once no Persist of the
//! previous release can run; until then the daily maintenance prunes both tables.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE inventory_update_key_ids (
    key_id     UUID NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE inventory_update_key_ids IS
    'Idempotency: the first 128 bits of the key of every update appended to inventory_events in the last 67 days (docs/event-store.md), and when it was first seen. An update whose key is here is a repeat and is not appended again.';

-- The previous release's Persist inserts keys in short transactions. Wait for them at most 5 s:
-- a migration queued behind a long transaction would hold up every insert behind it, while a
-- failed deploy is simply run again.
SET LOCAL lock_timeout = '5s';
LOCK TABLE inventory_update_keys IN SHARE ROW EXCLUSIVE MODE;
SET LOCAL lock_timeout TO DEFAULT;
INSERT INTO inventory_update_key_ids (key_id, first_seen)
SELECT left(update_key, 32)::uuid, first_seen FROM inventory_update_keys
ORDER BY first_seen;
-- Built once over the copied keys, the index takes a fraction of the time of one grown by
-- random inserts, which is time the previous release's Persist waits.
ALTER TABLE inventory_update_key_ids ADD CONSTRAINT inventory_update_key_ids_pkey PRIMARY KEY (key_id);
-- The keys come in time order, which is what a BRIN index needs (the prune finds old keys by it).
CREATE INDEX inventory_update_key_ids_first_seen_idx ON inventory_update_key_ids USING brin (first_seen);

CREATE FUNCTION inventory_update_keys_record_key_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.inventory_update_key_ids (key_id, first_seen)
    VALUES (left(NEW.update_key, 32)::uuid, NEW.first_seen)
    ON CONFLICT (key_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION inventory_update_keys_record_key_id() IS
    'For the previous release''s Persist while the stack updates: a key it records in inventory_update_keys is recorded in inventory_update_key_ids too, and skipped when that table already has it.';
CREATE TRIGGER inventory_update_keys_record_key_id
    BEFORE INSERT ON inventory_update_keys
    FOR EACH ROW EXECUTE FUNCTION inventory_update_keys_record_key_id();

GRANT SELECT, INSERT ON inventory_update_key_ids TO inventory_writer;
"#;

/// Back to the text keys alone. The keys recorded only here since the migration are restored
/// from the events still in the database (their full keys); those of events that already left
/// the database by retention cannot be, as this table holds only their first 128 bits.
const DOWN: &str = r#"
LOCK TABLE inventory_update_key_ids IN EXCLUSIVE MODE;
DROP TRIGGER IF EXISTS inventory_update_keys_record_key_id ON inventory_update_keys;
DROP FUNCTION IF EXISTS inventory_update_keys_record_key_id();
INSERT INTO inventory_update_keys (update_key, first_seen)
SELECT e.update_key, k.first_seen
FROM inventory_events e
JOIN inventory_update_key_ids k ON k.key_id = left(e.update_key, 32)::uuid
ON CONFLICT (update_key) DO NOTHING;
DROP TABLE IF EXISTS inventory_update_key_ids;
"#;

crate::sql_migration!();
