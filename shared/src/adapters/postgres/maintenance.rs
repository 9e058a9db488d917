//! Keeping the partitioned event store ahead of time: pg_partman's maintenance creates the
//! days to come (the migration made the first week), and this reports how far ahead the
//! partitions reach and whether any event landed in the default partition, which only happens
//! when maintenance has not run for longer than the days made ahead. It also forgets the
//! idempotency keys older than [`KEY_RETENTION`] (the dedup window plus the longest way back
//! to Persist; see [`crate::domain::update::DEDUP_WINDOW`]).
//!
//! Run daily in the deployed stack (an EventBridge schedule invokes schema-migrate with
//! `{"action":"maintain"}`), and by hand the same way. Safe to run twice or at the same time:
//! pg_partman takes its own advisory lock and creates only the partitions that are missing.

use super::error::db_error;
use crate::domain::partitions::PartitionReport;
use crate::domain::update::KEY_RETENTION;
use crate::error::{ErrorKind, PipelineError};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

/// The partitioned table, as pg_partman's configuration names it.
pub const EVENT_STORE_PARENT: &str = "public.inventory_events";

/// Runs pg_partman's maintenance for the event store, then reports on its partitions.
#[tracing::instrument(skip_all)]
pub async fn maintain_event_store(
    db: &DatabaseConnection,
) -> Result<PartitionReport, PipelineError> {
    let txn = db
        .begin()
        .await
        .map_err(|e| db_error("could not start the event store's maintenance", e))?;
    // Attaching a day's partition takes a lock on the table that every reader of all the
    // partitions queues behind; give up quickly instead of holding them up (the schedule's
    // retries and tomorrow's run try again, with days to spare).
    txn.execute_unprepared("SET LOCAL TIME ZONE 'UTC'; SET LOCAL lock_timeout = '5s'")
        .await
        .map_err(|e| db_error("could not set the maintenance's session", e))?;
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "SELECT partman.run_maintenance(p_parent_table => $1, p_analyze => false)",
        [EVENT_STORE_PARENT.into()],
    ))
    .await
    .map_err(|e| db_error("pg_partman's maintenance of inventory_events failed", e))?;
    txn.commit()
        .await
        .map_err(|e| db_error("could not commit the event store's maintenance", e))?;
    let pruned_keys = prune_update_keys(db).await?;
    let report = PartitionReport {
        pruned_keys,
        ..partition_report(db).await?
    };
    tracing::info!(
        partitions = report.partitions,
        covered_until = ?report.covered_until,
        default_rows = report.default_rows,
        pruned_keys = report.pruned_keys,
        "pg_partman maintenance ran"
    );
    Ok(report)
}

/// Keys deleted per statement, so that each holds its locks and its WAL briefly.
const PRUNE_BATCH: i64 = 10_000;

/// Deletes the idempotency keys first seen more than [`KEY_RETENTION`] ago, in batches (a
/// BRIN index on `first_seen` finds them). Safe to interrupt: what is left goes next time.
pub async fn prune_update_keys(db: &DatabaseConnection) -> Result<u64, PipelineError> {
    prune_update_keys_as_of(db, Utc::now()).await
}

/// [`prune_update_keys`] as if it were `now` (a simulation drives the clock through its data).
pub async fn prune_update_keys_as_of(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
) -> Result<u64, PipelineError> {
    let cutoff = now - KEY_RETENTION;
    let mut total = 0;
    loop {
        let done = db
            .execute_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                "DELETE FROM inventory_update_keys WHERE update_key IN ( \
                     SELECT update_key FROM inventory_update_keys \
                     WHERE first_seen < $1 LIMIT $2)",
                [cutoff.into(), PRUNE_BATCH.into()],
            ))
            .await
            .map_err(|e| db_error("could not forget old idempotency keys", e))?
            .rows_affected();
        total += done;
        if done < PRUNE_BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}

/// How far the event store's partitions reach, and whether the default one holds events.
pub async fn partition_report(db: &impl ConnectionTrait) -> Result<PartitionReport, PipelineError> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT count(*) AS partitions, min(i.child_start_time) AS oldest_from, \
                    max(i.child_end_time) AS covered_until, \
                    (SELECT coalesce(sum(d.count), 0)::bigint FROM partman.check_default(p_exact_count => true) d \
                      WHERE d.default_table = $1 || '_default') AS default_rows, \
                    pg_database_size(current_database()) AS database_bytes \
             FROM partman.show_partitions($1) p \
             CROSS JOIN LATERAL partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename, p_parent_table => $1) i",
            [EVENT_STORE_PARENT.into()],
        ))
        .await
        .map_err(|e| db_error("could not read inventory_events' partitions", e))?
        .ok_or_else(|| PipelineError::new(ErrorKind::Internal, "the partition query returned no row"))?;
    let get = |e| db_error("could not read inventory_events' partitions", e);
    Ok(PartitionReport {
        partitions: row.try_get("", "partitions").map_err(get)?,
        oldest_from: row.try_get("", "oldest_from").map_err(get)?,
        covered_until: row.try_get("", "covered_until").map_err(get)?,
        default_rows: row.try_get("", "default_rows").map_err(get)?,
        pruned_keys: 0,
        database_bytes: row.try_get("", "database_bytes").map_err(get)?,
    })
}
