//! Least privilege for the functions: a `NOLOGIN` group role, `inventory_writer`, with only
//! what the pipeline's functions do. The role that runs the migrations owns the schema; the
//! functions log in as a member of `inventory_writer` (see docs/deploy.md).
//!
//! - `inventory_events`: SELECT and INSERT only. The store is append-only, so no UPDATE,
//!   DELETE or TRUNCATE (its triggers refuse those too, but only for those who get that far).
//! - `product_offers`: SELECT, INSERT, UPDATE (upserts, and `FOR UPDATE` row locks).
//! - `product_summaries`: the same, plus DELETE: persist removes a product's placeholder row
//!   when no offer is left for it.
//! - `quarantined_records`: SELECT and INSERT.
//! - No DDL: nothing is granted on the schema beyond USAGE, and PUBLIC's CREATE on `public`
//!   (the default before PostgreSQL 15) is revoked.
//!
//! Roles are cluster-wide while the advisory lock of [`crate::run`] is per database, so two
//! databases on one server (parallel tests, two stacks) may create the role at the same time:
//! the `DO` block treats "already exists" from either path (`duplicate_object`, or the
//! `unique_violation` of a concurrent creation) as done. The role is never altered or
//! dropped here, since other databases may rely on it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The group role the functions' database user belongs to.
pub const WRITER_ROLE: &str = "inventory_writer";

const UP: &str = r#"
DO $$
BEGIN
    CREATE ROLE inventory_writer NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO inventory_writer;
GRANT SELECT, INSERT ON inventory_events TO inventory_writer;
GRANT USAGE ON SEQUENCE inventory_events_seq_seq TO inventory_writer;
GRANT SELECT, INSERT, UPDATE ON product_offers TO inventory_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON product_summaries TO inventory_writer;
GRANT SELECT, INSERT ON quarantined_records TO inventory_writer;
GRANT USAGE ON SEQUENCE quarantined_records_id_seq TO inventory_writer;
"#;

/// Takes the grants back; the role itself stays (other databases may use it), and PUBLIC
/// does not get CREATE back.
const DOWN: &str = r#"
REVOKE ALL ON inventory_events, product_offers, product_summaries, quarantined_records
    FROM inventory_writer;
REVOKE ALL ON SEQUENCE inventory_events_seq_seq, quarantined_records_id_seq FROM inventory_writer;
REVOKE USAGE ON SCHEMA public FROM inventory_writer;
"#;

crate::sql_migration!();
