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

/// One batch of the keys Persist records (`inventory_update_key_ids`).
const PRUNE_KEY_IDS: &str = "DELETE FROM inventory_update_key_ids WHERE key_id IN ( \
     SELECT key_id FROM inventory_update_key_ids WHERE first_seen < $1 LIMIT $2)";

/// One batch of the text keys the previous release's Persist recorded, until a migration drops
/// their table (migration 9): each of them is in `inventory_update_key_ids` too.
const PRUNE_TEXT_KEYS: &str = "DELETE FROM inventory_update_keys WHERE update_key IN ( \
     SELECT update_key FROM inventory_update_keys WHERE first_seen < $1 LIMIT $2)";

/// Deletes the idempotency keys first seen more than [`KEY_RETENTION`] ago, in batches (a
/// BRIN index on `first_seen` finds them), and returns how many it deleted. Safe to interrupt:
/// what is left goes next time.
pub async fn prune_update_keys(db: &DatabaseConnection) -> Result<u64, PipelineError> {
    prune_update_keys_as_of(db, Utc::now()).await
}

/// [`prune_update_keys`] as if it were `now` (a simulation drives the clock through its data).
/// The previous release's text keys go too; they are copies, so they are not counted.
pub async fn prune_update_keys_as_of(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
) -> Result<u64, PipelineError> {
    let cutoff = now - KEY_RETENTION;
    let pruned = prune_in_batches(db, PRUNE_KEY_IDS, cutoff).await?;
    prune_in_batches(db, PRUNE_TEXT_KEYS, cutoff).await?;
    Ok(pruned)
}

/// Runs the batch delete `sql` until a batch comes back short, and returns the rows deleted.
async fn prune_in_batches(
    db: &DatabaseConnection,
    sql: &str,
    cutoff: DateTime<Utc>,
) -> Result<u64, PipelineError> {
    let mut total = 0;
    loop {
        let done = db
            .execute_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                sql,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::postgres::mock::{
        affected, parameters, postgres, row, sent, server_error, sql,
    };
    use sea_orm::{MockDatabase, Value};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a time")
    }

    const SESSION: &str = "SET LOCAL TIME ZONE 'UTC'; SET LOCAL lock_timeout = '5s'";
    const MAINTENANCE: &str =
        "SELECT partman.run_maintenance(p_parent_table => $1, p_analyze => false)";
    const PRUNE: &str = "DELETE FROM inventory_update_key_ids WHERE key_id IN ( SELECT key_id FROM inventory_update_key_ids WHERE first_seen < $1 LIMIT $2)";
    const PRUNE_TEXT: &str = "DELETE FROM inventory_update_keys WHERE update_key IN ( SELECT update_key FROM inventory_update_keys WHERE first_seen < $1 LIMIT $2)";
    const REPORT: &str = "SELECT count(*) AS partitions, min(i.child_start_time) AS oldest_from,";

    /// The partition query's answer: 30 days from 2026-11-01 up to 2026-12-01, 5 events in
    /// the default partition, 9 MB.
    fn report_row(covered_until: Option<DateTime<Utc>>) -> MockDatabase {
        postgres().append_query_results([vec![row([
            ("partitions", 30i64.into()),
            ("oldest_from", Some(at("2026-11-01T00:00:00Z")).into()),
            ("covered_until", covered_until.into()),
            ("default_rows", 5i64.into()),
            ("database_bytes", 9_000_000i64.into()),
        ])]])
    }

    fn texts(statements: &[Statement]) -> Vec<String> {
        statements.iter().map(sql).collect()
    }

    #[tokio::test]
    async fn maintenance_runs_in_one_utc_transaction_then_prunes_keys_and_reports() {
        let db = report_row(Some(at("2026-12-01T00:00:00Z")))
            .append_exec_results([affected(0), affected(0), affected(3), affected(3)])
            .into_connection();
        let before = Utc::now();

        let report = maintain_event_store(&db).await.expect("maintenance");

        let after = Utc::now();
        assert_eq!(
            report,
            PartitionReport {
                partitions: 30,
                oldest_from: Some(at("2026-11-01T00:00:00Z")),
                covered_until: Some(at("2026-12-01T00:00:00Z")),
                default_rows: 5,
                pruned_keys: 3,
                database_bytes: 9_000_000,
            }
        );
        let sent = sent(&db);
        assert_eq!(sent.len(), 4, "{sent:#?}");
        assert_eq!(texts(&sent[0]), ["BEGIN", SESSION, MAINTENANCE, "COMMIT"]);
        assert_eq!(
            parameters(&sent[0][2]),
            vec![Value::from(EVENT_STORE_PARENT)]
        );
        assert_eq!(texts(&sent[1]), [PRUNE]);
        let prune = parameters(&sent[1][0]);
        assert_eq!(prune[1], Value::from(PRUNE_BATCH));
        let Value::ChronoDateTimeUtc(Some(cutoff)) = &prune[0] else {
            panic!("a cutoff: {prune:?}");
        };
        assert!(
            before - KEY_RETENTION <= *cutoff && *cutoff <= after - KEY_RETENTION,
            "keys first seen more than KEY_RETENTION ago: {cutoff}"
        );
        assert_eq!(texts(&sent[2]), [PRUNE_TEXT]);
        assert_eq!(parameters(&sent[2][0]), prune, "the same cutoff and batch");
        assert!(sql(&sent[3][0]).starts_with(REPORT), "{}", sql(&sent[3][0]));
        assert_eq!(
            parameters(&sent[3][0]),
            vec![Value::from(EVENT_STORE_PARENT)]
        );
    }

    #[tokio::test]
    async fn a_maintenance_that_waits_too_long_for_its_lock_is_a_conflict_and_goes_no_further() {
        let db = postgres()
            .append_exec_results([affected(0)])
            .append_exec_errors([server_error("55P03")])
            .into_connection();

        let err = maintain_event_store(&db).await.expect_err("lock timeout");

        assert_eq!(err.kind, ErrorKind::Conflict, "retried by the schedule");
        assert_eq!(
            err.message,
            "pg_partman's maintenance of inventory_events failed"
        );
        let sent = sent(&db);
        assert_eq!(sent.len(), 1, "no prune, no report");
        assert_eq!(texts(&sent[0]), ["BEGIN", SESSION, MAINTENANCE, "ROLLBACK"]);
    }

    #[tokio::test]
    async fn a_session_that_cannot_be_set_fails_with_its_kind() {
        let db = postgres()
            .append_exec_errors([server_error("57P01")])
            .into_connection();

        let err = maintain_event_store(&db).await.expect_err("server gone");

        assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
        assert_eq!(err.message, "could not set the maintenance's session");
        assert_eq!(texts(&sent(&db)[0]), ["BEGIN", SESSION, "ROLLBACK"]);
    }

    #[tokio::test]
    async fn a_failed_prune_or_report_after_maintenance_fails_the_run() {
        let db = postgres()
            .append_exec_results([affected(0), affected(0)])
            .append_exec_errors([server_error("40P01")])
            .into_connection();
        let err = maintain_event_store(&db).await.expect_err("deadlock");
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert_eq!(err.message, "could not forget old idempotency keys");

        let db = postgres()
            .append_exec_results([affected(0), affected(0), affected(0), affected(0)])
            .append_query_errors([server_error("57P01")])
            .into_connection();
        let err = maintain_event_store(&db).await.expect_err("server gone");
        assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
        assert_eq!(err.message, "could not read inventory_events' partitions");
    }

    #[tokio::test]
    async fn keys_are_pruned_in_batches_until_one_comes_back_short() {
        let now = at("2026-12-07T10:00:00Z");
        let db = postgres()
            .append_exec_results([affected(10_000), affected(10_000), affected(7)])
            .append_exec_results([affected(10_000), affected(2)])
            .into_connection();

        let pruned = prune_update_keys_as_of(&db, now).await.expect("pruned");

        assert_eq!(pruned, 20_007, "the text keys are copies, not counted");
        let sent = sent(&db);
        assert_eq!(sent.len(), 5, "one statement (and transaction) per batch");
        for (i, batch) in sent.iter().enumerate() {
            assert_eq!(texts(batch), [if i < 3 { PRUNE } else { PRUNE_TEXT }]);
            assert_eq!(
                parameters(&batch[0]),
                vec![Value::from(now - KEY_RETENTION), Value::from(10_000i64)]
            );
        }
    }

    #[tokio::test]
    async fn a_full_last_batch_is_followed_by_one_that_finds_nothing() {
        let db = postgres()
            .append_exec_results([affected(10_000), affected(0), affected(0)])
            .into_connection();

        let pruned = prune_update_keys(&db).await.expect("pruned");

        assert_eq!(pruned, 10_000);
        assert_eq!(sent(&db).len(), 3, "two batches of ids, one of text keys");
    }

    #[tokio::test]
    async fn a_batch_that_fails_fails_the_prune_with_its_kind() {
        let db = postgres()
            .append_exec_results([affected(10_000)])
            .append_exec_errors([server_error("57014")])
            .into_connection();

        let err = prune_update_keys_as_of(&db, at("2026-12-07T10:00:00Z"))
            .await
            .expect_err("statement timeout");

        assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
        assert_eq!(err.message, "could not forget old idempotency keys");
    }

    #[tokio::test]
    async fn the_partition_report_gives_the_database_figures() {
        let db = report_row(None).into_connection();

        let report = partition_report(&db).await.expect("a report");

        assert_eq!(
            report,
            PartitionReport {
                partitions: 30,
                oldest_from: Some(at("2026-11-01T00:00:00Z")),
                covered_until: None,
                default_rows: 5,
                pruned_keys: 0,
                database_bytes: 9_000_000,
            }
        );
        let sent = sent(&db);
        let query = sql(&sent[0][0]);
        assert!(
            query.contains("FROM partman.check_default(p_exact_count => true) d WHERE d.default_table = $1 || '_default'"),
            "the default partition's rows counted exactly: {query}"
        );
        assert!(
            query.contains("pg_database_size(current_database()) AS database_bytes"),
            "{query}"
        );
    }

    #[tokio::test]
    async fn a_partition_report_without_its_row_or_columns_is_an_internal_error() {
        let db = postgres()
            .append_query_results([Vec::<std::collections::BTreeMap<String, Value>>::new()])
            .append_query_results([vec![row([("partitions", 30i64.into())])]])
            .into_connection();

        let none = partition_report(&db).await.expect_err("no row");
        let partial = partition_report(&db).await.expect_err("no columns");

        assert_eq!(
            (none.kind, none.message.as_str()),
            (ErrorKind::Internal, "the partition query returned no row")
        );
        assert_eq!(
            (partial.kind, partial.message.as_str()),
            (
                ErrorKind::Internal,
                "could not read inventory_events' partitions"
            )
        );
    }
}
