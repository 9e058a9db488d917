//! Snapshots of the projection (migration `m20261206_000007_projection_snapshots`): the
//! offers and summaries as the fold of every event up to a known `seq`, under a known version
//! of the projection rules. The rebuild writes one from its new tables once they hold every
//! event up to its first high-water mark (before its catch-up and switch), and the next
//! rebuild starts from the newest one of its rules version and replays only the later events. The projection is a fold that ignores order and repeats
//! ([`crate::domain::projection::project`]), so a snapshot at `s` plus the events after `s` folds to
//! the same projection as every event from the first (SPEC invariant 7).

use super::error::db_error;
use super::rebuild::try_rebuild_lock;
use super::sql::{live_schema, query_scalar, stmt};
use crate::domain::projection::PROJECTION_RULES_VERSION;
use crate::error::{ErrorKind, PipelineError};
use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, IsolationLevel, TransactionTrait,
};

/// Snapshots kept: the newest and the one before it. A rebuild uses only the newest (a
/// snapshot is written in one transaction, so the newest is always whole); the one before is
/// there for an operator to compare with. While a new one is written, three copies exist.
pub const SNAPSHOTS_KEPT: i64 = 2;

/// Each projection table, the table its snapshot rows go to, and the columns copied.
const TABLES: [(&str, &str, &str); 2] = [
    (
        "product_offers",
        "projection_snapshot_offers",
        "product_id, supplier_id, quantity, price, currency, occurred_at, update_key, event_seq",
    ),
    (
        "product_summaries",
        "projection_snapshot_summaries",
        "product_id, total_quantity, best_price, best_price_currency, best_price_supplier, \
         supplier_count, version, updated_at",
    ),
];

/// The columns of `projection_snapshots` that make a [`SnapshotInfo`].
const INFO_COLUMNS: &str = "id, up_to_seq, rules_version, taken_at, offers, products";

/// One stored snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: i64,
    /// Every event with `seq <= up_to_seq` is in it, and no later one.
    pub up_to_seq: i64,
    pub rules_version: i32,
    pub taken_at: DateTime<Utc>,
    pub offers: i64,
    pub products: i64,
}

impl SnapshotInfo {
    fn from_row(row: &sea_orm::QueryResult, context: &str) -> Result<Self, PipelineError> {
        let get = |e| db_error(context, e);
        Ok(Self {
            id: row.try_get("", "id").map_err(get)?,
            up_to_seq: row.try_get("", "up_to_seq").map_err(get)?,
            rules_version: row.try_get("", "rules_version").map_err(get)?,
            taken_at: row.try_get("", "taken_at").map_err(get)?,
            offers: row.try_get("", "offers").map_err(get)?,
            products: row.try_get("", "products").map_err(get)?,
        })
    }
}

/// The newest snapshot taken under the rules this build runs, if any.
pub async fn latest_snapshot(
    db: &impl ConnectionTrait,
) -> Result<Option<SnapshotInfo>, PipelineError> {
    const CONTEXT: &str = "could not read the projection's snapshots";
    db.query_one_raw(stmt(
        &format!(
            "SELECT {INFO_COLUMNS} FROM projection_snapshots WHERE rules_version = $1 \
             ORDER BY up_to_seq DESC, id DESC LIMIT 1"
        ),
        vec![PROJECTION_RULES_VERSION.into()],
    ))
    .await
    .map_err(|e| db_error(CONTEXT, e))?
    .map(|row| SnapshotInfo::from_row(&row, CONTEXT))
    .transpose()
}

/// Copies the snapshot `id` into the (empty) projection tables of `schema`.
pub(crate) async fn restore_into(
    db: &DatabaseConnection,
    schema: &str,
    id: i64,
) -> Result<(), PipelineError> {
    let txn = db
        .begin()
        .await
        .map_err(|e| db_error("could not start restoring the snapshot", e))?;
    for (table, snapshot_table, columns) in TABLES {
        txn.execute_raw(stmt(
            &format!(
                "INSERT INTO {schema}.{table} ({columns}) \
                 SELECT {columns} FROM {snapshot_table} WHERE snapshot_id = $1"
            ),
            vec![id.into()],
        ))
        .await
        .map_err(|e| db_error(&format!("could not restore {table} from the snapshot"), e))?;
    }
    txn.commit()
        .await
        .map_err(|e| db_error("could not commit the restored snapshot", e))
}

/// Stores the projection tables of `schema`, which must hold the fold of every event up to
/// `up_to_seq`, as a new snapshot, and forgets all but the newest [`SNAPSHOTS_KEPT`]. One
/// transaction: the snapshot exists whole or not at all.
pub(crate) async fn save_from(
    db: &DatabaseConnection,
    schema: &str,
    up_to_seq: i64,
) -> Result<SnapshotInfo, PipelineError> {
    let txn = db
        .begin()
        .await
        .map_err(|e| db_error("could not start the snapshot", e))?;
    let info = save_in(&txn, schema, up_to_seq).await?;
    txn.commit()
        .await
        .map_err(|e| db_error("could not commit the snapshot", e))?;
    Ok(info)
}

/// [`save_from`] inside the caller's transaction.
async fn save_in(
    txn: &DatabaseTransaction,
    schema: &str,
    up_to_seq: i64,
) -> Result<SnapshotInfo, PipelineError> {
    let row = txn
        .query_one_raw(stmt(
            &format!(
                "INSERT INTO projection_snapshots (up_to_seq, rules_version, offers, products) \
                 VALUES ($1, $2, (SELECT count(*) FROM {schema}.product_offers), \
                                 (SELECT count(*) FROM {schema}.product_summaries)) \
                 RETURNING {INFO_COLUMNS}"
            ),
            vec![up_to_seq.into(), PROJECTION_RULES_VERSION.into()],
        ))
        .await
        .map_err(|e| db_error("could not record the snapshot", e))?
        .ok_or_else(|| PipelineError::new(ErrorKind::Internal, "the snapshot got no id"))?;
    let info = SnapshotInfo::from_row(&row, "could not record the snapshot")?;
    for (table, snapshot_table, columns) in TABLES {
        txn.execute_raw(stmt(
            &format!(
                "INSERT INTO {snapshot_table} (snapshot_id, {columns}) \
                 SELECT $1, {columns} FROM {schema}.{table}"
            ),
            vec![info.id.into()],
        ))
        .await
        .map_err(|e| db_error(&format!("could not copy {table} into the snapshot"), e))?;
    }
    txn.execute_raw(stmt(
        "DELETE FROM projection_snapshots WHERE id NOT IN \
         (SELECT id FROM projection_snapshots ORDER BY id DESC LIMIT $1)",
        vec![SNAPSHOTS_KEPT.into()],
    ))
    .await
    .map_err(|e| db_error("could not forget old snapshots", e))?;
    Ok(info)
}

/// What [`snapshot_live`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSnapshot {
    Taken(SnapshotInfo),
    /// A rebuild is running: it writes its own snapshot, and the two must not copy the tables
    /// the rebuild is about to swap.
    RebuildRunning,
    /// The live projection was built under other projection rules (`projection_state`): a
    /// snapshot of it under this build's rules would be a lie. A rebuild comes first.
    OtherRules {
        live: i32,
    },
}

/// Takes a snapshot of the live projection without stopping the pipeline (the retention job
/// needs one that covers every day it drops).
///
/// The position: one transaction takes `LOCK inventory_events IN SHARE MODE`, which waits for
/// the appends in flight and holds new ones, reads `max(seq)` and exports its snapshot of the
/// database; a second transaction, opened beforehand, imports that snapshot, and the first
/// commits at once, so appends are held for a few milliseconds only. Persist writes an event
/// and its projection change in one transaction, so the live tables as the imported snapshot
/// sees them are the fold of exactly the events with `seq <= max(seq)`; the copy runs in that
/// second transaction while persist goes on. Three connections at once.
pub async fn snapshot_live(db: &DatabaseConnection) -> Result<LiveSnapshot, PipelineError> {
    let guard = db
        .begin()
        .await
        .map_err(|e| db_error("could not start the snapshot", e))?;
    // The rebuild lock goes with an explicit end of its transaction, whatever happens: a
    // transaction only dropped keeps its lock until its connection is next used.
    let taken = snapshot_under(db, &guard).await;
    guard
        .commit()
        .await
        .map_err(|e| db_error("could not release the rebuild lock", e))?;
    let taken = taken?;
    if let LiveSnapshot::Taken(info) = taken {
        tracing::info!(
            snapshot = info.id,
            up_to_seq = info.up_to_seq,
            offers = info.offers,
            products = info.products,
            "projection snapshot taken"
        );
    }
    Ok(taken)
}

/// [`snapshot_live`] with `guard`'s transaction open for the rebuild lock.
async fn snapshot_under(
    db: &DatabaseConnection,
    guard: &DatabaseTransaction,
) -> Result<LiveSnapshot, PipelineError> {
    if !try_rebuild_lock(guard).await? {
        return Ok(LiveSnapshot::RebuildRunning);
    }
    let live_rules = live_rules_version(guard).await?;
    if live_rules != PROJECTION_RULES_VERSION {
        return Ok(LiveSnapshot::OtherRules { live: live_rules });
    }
    let copy = db
        .begin()
        .await
        .map_err(|e| db_error("could not start the snapshot's copy", e))?;
    let position = db
        .begin_with_config(Some(IsolationLevel::RepeatableRead), None)
        .await
        .map_err(|e| db_error("could not start reading the store's position", e))?;
    position
        .execute_unprepared(
            "SET LOCAL lock_timeout = '5s'; LOCK TABLE inventory_events IN SHARE MODE",
        )
        .await
        .map_err(|e| db_error("could not lock the event store", e))?;
    let row = position
        .query_one_raw(stmt(
            "SELECT coalesce(max(seq), 0) AS seq, pg_export_snapshot() AS snapshot FROM inventory_events",
            vec![],
        ))
        .await
        .map_err(|e| db_error("could not read the store's position", e))?
        .ok_or_else(|| PipelineError::new(ErrorKind::Internal, "the position query returned no row"))?;
    let get = |e| db_error("could not read the store's position", e);
    let up_to_seq: i64 = row.try_get("", "seq").map_err(get)?;
    let exported: String = row.try_get("", "snapshot").map_err(get)?;
    copy.execute_unprepared(&format!(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{}'",
        exported.replace('\'', "")
    ))
    .await
    .map_err(|e| {
        db_error(
            "could not share the store's position with the snapshot's copy",
            e,
        )
    })?;
    position
        .commit()
        .await
        .map_err(|e| db_error("could not release the event store", e))?;
    let live = live_schema(&copy).await?;
    let info = save_in(&copy, &live, up_to_seq).await?;
    copy.commit()
        .await
        .map_err(|e| db_error("could not commit the snapshot", e))?;
    Ok(LiveSnapshot::Taken(info))
}

/// The projection rules the live projection was built under (`projection_state`, which the
/// migration sets and each rebuild's switch updates).
pub(crate) async fn live_rules_version(db: &impl ConnectionTrait) -> Result<i32, PipelineError> {
    query_scalar::<i32>(
        db,
        "SELECT rules_version FROM projection_state",
        vec![],
        "rules_version",
        "could not read the live projection's rules version",
    )
    .await?
    .ok_or_else(|| {
        PipelineError::new(
            ErrorKind::Internal,
            "projection_state has no row: run the migrations",
        )
    })
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
