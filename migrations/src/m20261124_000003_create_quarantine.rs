//! The quarantine: every rejected record with its reason, its raw bytes (or where they are)
//! and its stream position, where ops can see and replay it. One row per stream position.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE quarantined_records (
    id              BIGSERIAL PRIMARY KEY,
    stream          TEXT NOT NULL,
    shard_id        TEXT NOT NULL,
    sequence_number TEXT NOT NULL,
    partition_key   TEXT NOT NULL,
    arrived_at      TIMESTAMPTZ NOT NULL,
    reason_code     TEXT NOT NULL,
    reason_message  TEXT NOT NULL,
    raw_payload     BYTEA,
    payload_ref     JSONB,
    quarantined_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at     TIMESTAMPTZ,
    CONSTRAINT quarantined_records_position_key UNIQUE (stream, shard_id, sequence_number)
);
COMMENT ON TABLE quarantined_records IS
    'Rejected stream records with their reason; unique by stream position, so a redelivery is kept once.';
CREATE INDEX quarantined_records_pending_idx ON quarantined_records (quarantined_at) WHERE replayed_at IS NULL;
CREATE INDEX quarantined_records_reason_idx ON quarantined_records (reason_code, quarantined_at);
"#;

const DOWN: &str = "DROP TABLE IF EXISTS quarantined_records;";

crate::sql_migration!();
