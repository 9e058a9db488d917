//! The append-only event store: one row per inventory update ever accepted, unique by its
//! idempotency key. UPDATE, DELETE and TRUNCATE are refused by triggers.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE inventory_events (
    seq           BIGSERIAL PRIMARY KEY,
    update_key    TEXT COLLATE "C" NOT NULL CHECK (char_length(update_key) = 64),
    event_type    TEXT NOT NULL,
    event_version INT NOT NULL CHECK (event_version > 0),
    product_id    TEXT COLLATE "C" NOT NULL,
    supplier_id   TEXT COLLATE "C" NOT NULL,
    occurred_at   TIMESTAMPTZ NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    payload       JSONB NOT NULL,
    CONSTRAINT inventory_events_update_key_key UNIQUE (update_key)
);
COMMENT ON TABLE inventory_events IS
    'Append-only event store. seq is the total order; update_key makes each update unique (idempotency).';
CREATE INDEX inventory_events_product_seq_idx ON inventory_events (product_id, seq);

CREATE FUNCTION inventory_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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
"#;

const DOWN: &str = r#"
DROP TABLE IF EXISTS inventory_events;
DROP FUNCTION IF EXISTS inventory_events_refuse_change();
"#;

crate::sql_migration!();
