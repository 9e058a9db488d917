//! The retention job: days of `inventory_events` older than the retention leave the database,
//! each only after its events are in the archive bucket and verified (see
//! [`crate::domain::retention`] for the objects and the checksum).
//!
//! For each due day's partition, oldest first, until the time budget runs out:
//!
//! 1. **Export, part by part.** The events after the last verified part (table
//!    `event_store_exports`), up to [`crate::domain::retention::PART_EVENTS`] in `seq` order, become one gzip
//!    JSON-lines object. It is written, read back from S3, and its count and checksum must
//!    equal both what was written and what the database computes for the same `seq` range;
//!    then the part is recorded as verified. An interrupted run goes on after the last
//!    verified part; a part written but not recorded is written again under the same key.
//! 2. **Manifest.** Once no event is left after the last part, the manifest (every part, and
//!    the day's total) is written and read back byte for byte.
//! 3. **Snapshot.** The newest snapshot of the projection must reach the day's greatest
//!    `seq`, so that a rebuild never needs the day's events (SPEC invariant 7); if it does
//!    not, one is taken of the live projection ([`snapshot_live`]).
//! 4. **Drop**, in one transaction, when no rebuild is running (its lock): the partition is
//!    locked against writes (SHARE), its
//!    count and checksum computed again and compared with the manifest's, the day recorded in
//!    `event_store_retired_days`, and the partition dropped. A difference rolls back, forgets
//!    the day's parts so that the next run exports it again, and fails the run naming it.
//!
//! One run at a time (an advisory lock); safe to run twice, to run at once (the second does
//! nothing) and to interrupt anywhere.

use super::error::db_error;
use super::maintenance::EVENT_STORE_PARENT;
use super::rebuild::try_rebuild_lock;
use super::snapshot::{LiveSnapshot, SnapshotInfo, latest_snapshot, snapshot_live};
use super::sql::{query_scalar, stmt, try_xact_lock};
use crate::domain::retention::{
    Checksum, ExportPart, Manifest, RetentionConfig, RetentionReport, checksum_sql, gzip_lines,
    manifest_key, part_key,
};
use crate::error::{ErrorKind, PipelineError};
use crate::ports::{ExportStore, ObjectKind};
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, IsolationLevel, TransactionTrait};
use std::time::Instant;

/// Key of the advisory lock that lets one retention run at a time ("inv-retn" in ASCII).
pub const RETENTION_LOCK_KEY: i64 = 0x696e_762d_7265_746e;

/// A day's partition.
#[derive(Debug, Clone)]
struct DayPartition {
    /// Schema-qualified and quoted, ready for SQL.
    table: String,
    day: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// Runs retention as of `now`, stopping before a new part or day once `deadline` has passed.
#[tracing::instrument(skip_all, fields(days = config.days))]
pub async fn retain_event_store(
    db: &DatabaseConnection,
    store: &dyn ExportStore,
    config: RetentionConfig,
    now: DateTime<Utc>,
    deadline: Instant,
) -> Result<RetentionReport, PipelineError> {
    let cutoff = config.cutoff(now);
    let mut report = RetentionReport {
        cutoff: Some(cutoff),
        ..RetentionReport::default()
    };
    let guard = db
        .begin()
        .await
        .map_err(|e| db_error("could not start the retention run", e))?;
    let locked = try_xact_lock(&guard, RETENTION_LOCK_KEY, "the retention lock").await?;
    // Whatever happens below, the lock goes with an explicit end of its transaction: a
    // transaction only dropped is rolled back when its connection is next used, and until then
    // the lock would stop the next run.
    let worked = retire_due(db, store, config, cutoff, deadline, locked, &mut report).await;
    guard
        .commit()
        .await
        .map_err(|e| db_error("could not release the retention lock", e))?;
    worked?;
    finish(db, report).await
}

/// The due days, oldest first, until the budget is spent or a day cannot go yet; with
/// `locked` false (another run holds the lock), only what is overdue.
async fn retire_due(
    db: &DatabaseConnection,
    store: &dyn ExportStore,
    config: RetentionConfig,
    cutoff: DateTime<Utc>,
    deadline: Instant,
    locked: bool,
    report: &mut RetentionReport,
) -> Result<(), PipelineError> {
    let due = due_partitions(db, cutoff).await?;
    if !locked {
        report.overdue_days = due.len() as u64;
        report.stopped = Some("another retention run holds the lock".into());
        return Ok(());
    }
    let mut left = due.len();
    for partition in &due {
        if Instant::now() >= deadline {
            report.stopped = Some("the run's time budget is spent".into());
            break;
        }
        match retire_day(db, store, config, partition, deadline, report).await? {
            Retired::Yes => {
                left -= 1;
                report.retired_days.push(partition.day);
            }
            Retired::NotYet(why) => {
                report.stopped = Some(why);
                break;
            }
        }
    }
    report.overdue_days = left as u64;
    Ok(())
}

async fn finish(
    db: &DatabaseConnection,
    mut report: RetentionReport,
) -> Result<RetentionReport, PipelineError> {
    report.oldest_from = oldest_from(db).await?;
    Ok(report)
}

enum Retired {
    Yes,
    NotYet(String),
}

async fn retire_day(
    db: &DatabaseConnection,
    store: &dyn ExportStore,
    config: RetentionConfig,
    partition: &DayPartition,
    deadline: Instant,
    report: &mut RetentionReport,
) -> Result<Retired, PipelineError> {
    let mut parts = verified_parts(db, partition.day).await?;
    loop {
        let after = parts.last().map_or(0, |p: &ExportPart| p.up_to_seq);
        let Some(part) =
            export_part(db, store, partition, parts.len(), after, config.part_events).await?
        else {
            break;
        };
        report.exported_parts += 1;
        report.exported_events += part.checksum.events.unsigned_abs();
        parts.push(part);
        if Instant::now() >= deadline {
            return Ok(Retired::NotYet(format!(
                "the run's time budget is spent while exporting {}",
                partition.day
            )));
        }
    }
    let manifest = Manifest {
        table: "inventory_events".into(),
        day: partition.day,
        from: partition.from,
        to: partition.to,
        checksum: parts
            .iter()
            .fold(Checksum::default(), |t, p| t.plus(p.checksum)),
        parts,
        exported_at: Utc::now(),
    };
    manifest.check()?;
    let key = manifest_key(partition.day);
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| {
        PipelineError::with_source(ErrorKind::Internal, "could not encode a manifest", e)
    })?;
    store.put(&key, body.clone(), ObjectKind::Json).await?;
    if store.get(&key).await? != body {
        return Err(PipelineError::new(
            ErrorKind::Internal,
            format!(
                "{} reads back different from what was written",
                store.location(&key)
            ),
        ));
    }

    let max_seq = manifest.parts.last().map(|p| p.up_to_seq);
    let mut snapshot = latest_snapshot(db).await?;
    if let Some(max_seq) = max_seq
        && snapshot.is_none_or(|s| s.up_to_seq < max_seq)
    {
        match snapshot_live(db).await? {
            LiveSnapshot::Taken(taken) => {
                report.snapshot = Some(taken.id);
                snapshot = Some(taken);
            }
            LiveSnapshot::RebuildRunning => {
                return Ok(Retired::NotYet(format!(
                    "{} needs a snapshot of the projection and a rebuild is running; the next run takes one",
                    partition.day
                )));
            }
            LiveSnapshot::OtherRules { live } => {
                return Ok(Retired::NotYet(format!(
                    "{} needs a snapshot of the projection, and the live projection was built under projection rules {live}, not this build's {}: rebuild the projection (inventory rebuild-projection), then the next run goes on",
                    partition.day,
                    crate::domain::projection::PROJECTION_RULES_VERSION
                )));
            }
        }
        if snapshot.is_none_or(|s| s.up_to_seq < max_seq) {
            return Err(PipelineError::new(
                ErrorKind::Internal,
                format!(
                    "the snapshot just taken does not reach event {max_seq} of {}",
                    partition.day
                ),
            ));
        }
    }
    match drop_day(db, store, partition, &manifest, snapshot).await {
        Ok(Dropped::Yes) => Ok(Retired::Yes),
        Ok(Dropped::RebuildRunning) => Ok(Retired::NotYet(format!(
            "a projection rebuild is running; {} was not dropped, the next run drops it",
            partition.day
        ))),
        // A lock wait that timed out, a deadlock: the table was busy. Nothing was dropped,
        // and the next run tries again; not a failure of the job.
        Err(e) if e.kind == ErrorKind::Conflict => Ok(Retired::NotYet(format!(
            "{} was not dropped, the next run tries again: {}",
            partition.day,
            e.detailed()
        ))),
        Err(e) => Err(e),
    }
}

enum Dropped {
    Yes,
    RebuildRunning,
}

/// Exports the day's events after `after` (up to `part_events`) as part `index`, reads the
/// object back and verifies it, and records it. `None` when no event is left.
async fn export_part(
    db: &DatabaseConnection,
    store: &dyn ExportStore,
    partition: &DayPartition,
    index: usize,
    after: i64,
    part_events: i64,
) -> Result<Option<ExportPart>, PipelineError> {
    let txn = utc_transaction(db, "reading events to export").await?;
    let rows = txn
        .query_all_raw(stmt(
            &format!(
                "SELECT seq, to_jsonb(e)::text AS line FROM {} e WHERE seq > $1 ORDER BY seq LIMIT $2",
                partition.table
            ),
            vec![after.into(), part_events.into()],
        ))
        .await
        .map_err(|e| db_error(&format!("could not read the events of {}", partition.day), e))?;
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    let get = |e| {
        db_error(
            &format!("could not read the events of {}", partition.day),
            e,
        )
    };
    let up_to_seq: i64 = last.try_get("", "seq").map_err(get)?;
    let lines = rows
        .iter()
        .map(|r| r.try_get::<String>("", "line"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(get)?;
    let mut written = Checksum::default();
    lines.iter().for_each(|l| written.add_line(l));
    let in_db = db_checksum(&txn, &partition.table, Some((after, up_to_seq))).await?;
    txn.commit()
        .await
        .map_err(|e| db_error("could not end the export's read", e))?;

    let part = u32::try_from(index).map_err(|_| {
        PipelineError::new(
            ErrorKind::Internal,
            format!("{} has too many parts", partition.day),
        )
    })?;
    let key = part_key(partition.day, part);
    store
        .put(
            &key,
            gzip_lines(lines.iter().map(String::as_str))?,
            ObjectKind::GzipJsonLines,
        )
        .await?;
    let (read_back, _) = Checksum::of_gzip_lines(&store.get(&key).await?)?;
    if written != in_db || read_back != in_db {
        return Err(PipelineError::new(
            ErrorKind::Internal,
            format!(
                "the export of {} part {part} does not verify: the database has {} events (checksum {}) with {after} < seq <= {up_to_seq}, {} were written ({}), {} read back ({}) from {}; nothing was dropped",
                partition.day,
                in_db.events,
                in_db.sum,
                written.events,
                written.sum,
                read_back.events,
                read_back.sum,
                store.location(&key)
            ),
        ));
    }
    let record = ExportPart {
        part,
        key,
        after_seq: after,
        up_to_seq,
        checksum: in_db,
    };
    db.execute_raw(stmt(
        "INSERT INTO event_store_exports (day, part, after_seq, up_to_seq, events, checksum, object_key) \
         VALUES ($1, $2, $3, $4, $5, $6::numeric, $7)",
        vec![
            partition.day.into(),
            i32::try_from(part).unwrap_or(i32::MAX).into(),
            after.into(),
            up_to_seq.into(),
            in_db.events.into(),
            in_db.sum.to_string().into(),
            record.key.clone().into(),
        ],
    ))
    .await
    .map_err(|e| db_error("could not record a verified export", e))?;
    tracing::info!(day = %partition.day, part, events = in_db.events, key = %record.key, "event store export verified");
    Ok(Some(record))
}

/// The drop: the partition locked against writes, checked once more against the manifest,
/// recorded as retired, and dropped, in one transaction.
async fn drop_day(
    db: &DatabaseConnection,
    store: &dyn ExportStore,
    partition: &DayPartition,
    manifest: &Manifest,
    snapshot: Option<SnapshotInfo>,
) -> Result<Dropped, PipelineError> {
    let txn = utc_transaction(db, "dropping a retired day").await?;
    // The transaction ends explicitly whatever happens: one only dropped would keep the
    // rebuild lock until its connection is next used.
    let step = match drop_in(&txn, store, partition, manifest, snapshot).await {
        Ok(step) => step,
        Err(e) => {
            txn.rollback().await.ok();
            return Err(e);
        }
    };
    let now_in_db = match step {
        DropStep::Ready => {
            txn.commit().await.map_err(|e| {
                db_error(
                    &format!(
                        "could not commit the drop of {} (event_store_retired_days says whether it was dropped)",
                        partition.day
                    ),
                    e,
                )
            })?;
            tracing::info!(day = %partition.day, events = manifest.checksum.events, snapshot = ?snapshot.map(|s| s.id), "event store day retired");
            return Ok(Dropped::Yes);
        }
        DropStep::RebuildRunning => {
            txn.rollback()
                .await
                .map_err(|e| db_error("could not roll back the drop", e))?;
            return Ok(Dropped::RebuildRunning);
        }
        DropStep::Changed(now_in_db) => now_in_db,
    };
    txn.rollback()
        .await
        .map_err(|e| db_error("could not roll back the drop", e))?;
    db.execute_raw(stmt(
        "DELETE FROM event_store_exports WHERE day = $1",
        vec![partition.day.into()],
    ))
    .await
    .map_err(|e| db_error("could not forget a day's stale export", e))?;
    Err(PipelineError::new(
        ErrorKind::Internal,
        format!(
            "{} now holds {} events (checksum {}), its export {} (checksum {}): nothing was dropped, and the next run exports the day again",
            partition.day,
            now_in_db.events,
            now_in_db.sum,
            manifest.checksum.events,
            manifest.checksum.sum
        ),
    ))
}

/// Where the drop's transaction stands before its end.
enum DropStep {
    /// Checked, recorded and dropped: commit.
    Ready,
    RebuildRunning,
    /// The day no longer matches its export: roll back.
    Changed(Checksum),
}

/// The drop's statements in `txn`: the rebuild lock, the partition's lock, the last check,
/// the record of the day and the drop.
async fn drop_in(
    txn: &sea_orm::DatabaseTransaction,
    store: &dyn ExportStore,
    partition: &DayPartition,
    manifest: &Manifest,
    snapshot: Option<SnapshotInfo>,
) -> Result<DropStep, PipelineError> {
    // Never while a rebuild replays: it checked the retired days when it started, and must
    // not lose a day's events in the middle of its replay.
    if !try_rebuild_lock(txn).await? {
        return Ok(DropStep::RebuildRunning);
    }
    // A short wait: DROP TABLE needs the whole store for a moment, and appends and reads queue
    // behind a waiting lock. Busy now means the next run.
    txn.execute_unprepared(&format!(
        "SET LOCAL lock_timeout = '2s'; LOCK TABLE {} IN SHARE MODE",
        partition.table
    ))
    .await
    .map_err(|e| {
        db_error(
            &format!("could not lock the partition of {}", partition.day),
            e,
        )
    })?;
    let now_in_db = db_checksum(txn, &partition.table, None).await?;
    if now_in_db != manifest.checksum {
        return Ok(DropStep::Changed(now_in_db));
    }
    txn.execute_raw(stmt(
        "INSERT INTO event_store_retired_days (day, events, checksum, max_seq, manifest, snapshot_id) \
         VALUES ($1, $2, $3::numeric, $4, $5, $6)",
        vec![
            partition.day.into(),
            manifest.checksum.events.into(),
            manifest.checksum.sum.to_string().into(),
            manifest.parts.last().map(|p| p.up_to_seq).into(),
            store.location(&manifest_key(partition.day)).into(),
            snapshot.map(|s| s.id).into(),
        ],
    ))
    .await
    .map_err(|e| db_error("could not record a retired day", e))?;
    txn.execute_unprepared(&format!("DROP TABLE {}", partition.table))
        .await
        .map_err(|e| {
            db_error(
                &format!("could not drop the partition of {}", partition.day),
                e,
            )
        })?;
    Ok(DropStep::Ready)
}

/// A REPEATABLE READ transaction whose time zone is UTC: `to_jsonb` writes times in it, the
/// export and the checksums must agree to the byte, and a part's rows and the database's
/// checksum of them must come from one snapshot.
async fn utc_transaction(
    db: &DatabaseConnection,
    what: &str,
) -> Result<sea_orm::DatabaseTransaction, PipelineError> {
    let txn = db
        .begin_with_config(Some(IsolationLevel::RepeatableRead), None)
        .await
        .map_err(|e| db_error(&format!("could not start {what}"), e))?;
    txn.execute_unprepared("SET LOCAL TIME ZONE 'UTC'")
        .await
        .map_err(|e| db_error(&format!("could not set up {what}"), e))?;
    Ok(txn)
}

/// The database's [`Checksum`] of the partition's events, all or those in `(after, up_to]`.
async fn db_checksum(
    db: &impl ConnectionTrait,
    table: &str,
    range: Option<(i64, i64)>,
) -> Result<Checksum, PipelineError> {
    let (filter, values) = match range {
        Some((after, upto)) => ("seq > $1 AND seq <= $2", vec![after.into(), upto.into()]),
        None => ("true", vec![]),
    };
    let row = db
        .query_one_raw(stmt(&checksum_sql(table, filter), values))
        .await
        .map_err(|e| db_error("could not compute the events' checksum", e))?
        .ok_or_else(|| {
            PipelineError::new(ErrorKind::Internal, "the checksum query returned no row")
        })?;
    let get = |e| db_error("could not read the events' checksum", e);
    Checksum::from_db(
        row.try_get("", "events").map_err(get)?,
        &row.try_get::<String>("", "sum").map_err(get)?,
    )
}

/// The parts of `day` already exported and verified, in order.
async fn verified_parts(
    db: &DatabaseConnection,
    day: NaiveDate,
) -> Result<Vec<ExportPart>, PipelineError> {
    let rows = db
        .query_all_raw(stmt(
            "SELECT part, after_seq, up_to_seq, events, checksum::text AS checksum, object_key \
             FROM event_store_exports WHERE day = $1 ORDER BY part",
            vec![day.into()],
        ))
        .await
        .map_err(|e| db_error("could not read the verified exports", e))?;
    let get = |e| db_error("could not read the verified exports", e);
    rows.iter()
        .map(|r| {
            let part: i32 = r.try_get("", "part").map_err(get)?;
            Ok(ExportPart {
                part: u32::try_from(part).unwrap_or_default(),
                key: r.try_get("", "object_key").map_err(get)?,
                after_seq: r.try_get("", "after_seq").map_err(get)?,
                up_to_seq: r.try_get("", "up_to_seq").map_err(get)?,
                checksum: Checksum::from_db(
                    r.try_get("", "events").map_err(get)?,
                    &r.try_get::<String>("", "checksum").map_err(get)?,
                )?,
            })
        })
        .collect()
}

/// The day partitions that end at or before `cutoff`, oldest first.
async fn due_partitions(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
) -> Result<Vec<DayPartition>, PipelineError> {
    let rows = db
        .query_all_raw(stmt(
            "SELECT quote_ident(p.partition_schemaname) || '.' || quote_ident(p.partition_tablename) AS tbl, \
                    i.child_start_time AS day_from, i.child_end_time AS day_to \
             FROM partman.show_partitions($1) p \
             CROSS JOIN LATERAL partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename, p_parent_table => $1) i \
             WHERE i.child_end_time <= $2 ORDER BY i.child_start_time",
            vec![EVENT_STORE_PARENT.into(), cutoff.into()],
        ))
        .await
        .map_err(|e| db_error("could not list the event store's partitions", e))?;
    let get = |e| db_error("could not list the event store's partitions", e);
    rows.iter()
        .map(|r| {
            let from: DateTime<Utc> = r.try_get("", "day_from").map_err(get)?;
            Ok(DayPartition {
                table: r.try_get("", "tbl").map_err(get)?,
                day: from.date_naive(),
                from,
                to: r.try_get("", "day_to").map_err(get)?,
            })
        })
        .collect()
}

/// The start of the oldest day partition still in the database.
async fn oldest_from(db: &DatabaseConnection) -> Result<Option<DateTime<Utc>>, PipelineError> {
    query_scalar::<Option<DateTime<Utc>>>(
        db,
        "SELECT min(i.child_start_time) AS oldest_from \
         FROM partman.show_partitions($1) p \
         CROSS JOIN LATERAL partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename, p_parent_table => $1) i",
        vec![EVENT_STORE_PARENT.into()],
        "oldest_from",
        "could not read the oldest partition",
    )
    .await
    .map(Option::flatten)
}

/// The greatest `seq` of the events that left the database, if any did: a rebuild must start
/// from a snapshot at or past it.
pub async fn retired_up_to(db: &impl ConnectionTrait) -> Result<Option<i64>, PipelineError> {
    query_scalar::<Option<i64>>(
        db,
        "SELECT max(max_seq) AS seq FROM event_store_retired_days",
        vec![],
        "seq",
        "could not read the retired days",
    )
    .await
    .map(Option::flatten)
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
