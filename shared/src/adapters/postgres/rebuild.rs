//! The projection rebuild (SPEC invariant 7): a new projection is folded from the event store
//! (or from the newest snapshot and the events after it) beside the live one, by the append
//! path's own [`apply_events`], and switched in without stopping the pipeline; see
//! [`rebuild_projection_from`].

use super::entity::inventory_event;
use super::error::db_error;
use super::projection_store::apply_events;
use super::retention::retired_up_to;
use super::rows::envelope;
use super::snapshot::{SnapshotInfo, latest_snapshot, restore_into, save_from};
use super::sql::{live_schema, query_scalar, stmt, try_xact_lock};
use crate::domain::ids::ProductId;
use crate::domain::projection::PROJECTION_RULES_VERSION;
use crate::error::{ErrorKind, PipelineError};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use std::collections::BTreeSet;
use std::future::Future;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RebuildReport {
    /// Events replayed in all, build and catch-up together.
    pub events: u64,
    /// Of those, events appended while the rebuild ran (the catch-up rounds and the switch).
    pub caught_up: u64,
    pub offers: u64,
    pub products: u64,
    /// The snapshot the rebuild started from; `None` when it replayed from the first event.
    pub from_snapshot: Option<SnapshotInfo>,
    /// The snapshot it left for the next rebuild (its new projection before the catch-up);
    /// `None` if storing it failed, or if no event came after the snapshot it started from.
    pub snapshot: Option<SnapshotInfo>,
}

/// Where a rebuild starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebuildFrom {
    /// The newest snapshot taken under the projection rules this build runs
    /// ([`crate::domain::projection::PROJECTION_RULES_VERSION`]), or the first event if there is none.
    #[default]
    LatestSnapshot,
    /// The first event, whatever snapshots exist.
    FirstEvent,
}

/// Events read per batch during a rebuild.
pub const REBUILD_BATCH: u64 = 5_000;

/// Catch-up rounds outside the switch before the switch takes what is left anyway.
const MAX_CATCH_UP_ROUNDS: u32 = 5;

/// The schema the new projection is built in, beside the live one. Nothing else may use it.
pub const REBUILD_SCHEMA: &str = "projection_rebuild";

/// Key of the advisory lock that lets one rebuild run at a time ("inv-rbld" in ASCII).
pub const REBUILD_LOCK_KEY: i64 = 0x696e_762d_7262_6c64;

/// Where a rebuild stands when it calls its observer (see [`rebuild_projection_observed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildStage {
    /// The new projection holds every event up to `seq`; the catch-up and switch are next.
    /// The live projection is untouched and unlocked.
    Built { up_to_seq: i64 },
    /// Inside the switch's transaction: the live tables are locked against writers and the
    /// new projection holds every event up to `seq`; the swap of the tables is next.
    Switching { up_to_seq: i64 },
}

/// Rebuilds the projection from the event store alone (SPEC invariant 7) without stopping
/// the pipeline, from the latest snapshot; see [`rebuild_projection_from`].
pub async fn rebuild_projection(db: &DatabaseConnection) -> Result<RebuildReport, PipelineError> {
    rebuild_projection_from(db, RebuildFrom::LatestSnapshot, |_| std::future::ready(())).await
}

/// [`rebuild_projection_from`] the latest snapshot.
pub async fn rebuild_projection_observed<F, Fut>(
    db: &DatabaseConnection,
    observe: F,
) -> Result<RebuildReport, PipelineError>
where
    F: FnMut(RebuildStage) -> Fut,
    Fut: Future<Output = ()>,
{
    rebuild_projection_from(db, RebuildFrom::LatestSnapshot, observe).await
}

/// Rebuilds the projection beside the live one and switches over:
///
/// 1. One rebuild at a time (an advisory lock held by a transaction open for the whole run;
///    the server releases it if the process dies). A schema [`REBUILD_SCHEMA`] left by an
///    interrupted run is dropped, then made again with empty copies of `product_offers` and
///    `product_summaries` (columns, constraints, indexes, comments, grants, owner). With
///    [`RebuildFrom::LatestSnapshot`], the newest snapshot of this build's projection rules is
///    copied into them, and the events replayed are those after it.
/// 2. High-water mark: `LOCK inventory_events IN SHARE MODE` for one `max(seq)`. The lock
///    waits for appends in flight and holds new ones for that one statement only, so every
///    event at or below the mark is committed and every later one gets a greater `seq`.
/// 3. Build: the events up to the mark, in `seq` batches, each batch its own transaction,
///    applied by the very code the append path uses ([`apply_events`]) with the new schema
///    first on the `search_path`. The live projection is neither read nor locked: persist
///    keeps committing to it and reads keep answering from it.
///    The new tables, now the fold of every event up to the mark, are stored as a snapshot for
///    the next rebuild (the older ones beyond [`super::SNAPSHOTS_KEPT`] go); if that fails,
///    the rebuild goes on without one.
/// 4. Catch-up: steps 2 and 3 again for the events appended meanwhile, until few are left.
/// 5. Switch, one short transaction: lock the live tables in EXCLUSIVE mode in persist's
///    order (writers wait, readers do not), apply the last events, then drop the live tables
///    and move the new ones into their schema under their names (readers wait for this DDL
///    only). Persist's statements name the tables, not their ids, so a waiting append carries
///    on against the new tables.
///
/// The projection is a fold of the events that does not depend on their order and ignores
/// repeats ([`crate::domain::projection::project`]), so the new tables equal a fold of every event up
/// to the switch. If anything fails before the switch commits, the live projection is as it
/// was; the next run drops what was left.
///
/// `observe` is called at each [`RebuildStage`] and awaited before the rebuild goes on.
#[tracing::instrument(skip(db, observe))]
pub async fn rebuild_projection_from<F, Fut>(
    db: &DatabaseConnection,
    from: RebuildFrom,
    mut observe: F,
) -> Result<RebuildReport, PipelineError>
where
    F: FnMut(RebuildStage) -> Fut,
    Fut: Future<Output = ()>,
{
    let guard = db
        .begin()
        .await
        .map_err(|e| db_error("could not start the rebuild", e))?;
    if !try_rebuild_lock(&guard).await? {
        return Err(PipelineError::new(
            ErrorKind::Conflict,
            "another projection rebuild is running on this database",
        ));
    }
    let live = prepare_shadow(db).await?;
    let mut report = RebuildReport::default();

    let start = match from {
        RebuildFrom::FirstEvent => 0,
        RebuildFrom::LatestSnapshot => match latest_snapshot(db).await? {
            Some(snapshot) => {
                restore_into(db, REBUILD_SCHEMA, snapshot.id).await?;
                report.from_snapshot = Some(snapshot);
                snapshot.up_to_seq
            }
            None => 0,
        },
    };
    if let Some(retired) = retired_up_to(db).await?
        && retired > start
    {
        return Err(PipelineError::new(
            ErrorKind::Internal,
            match from {
                RebuildFrom::FirstEvent => format!(
                    "events up to seq {retired} have left the database (retention; docs/event-store.md): a rebuild from the first event would miss them; rebuild from the newest snapshot (without --from-scratch)"
                ),
                RebuildFrom::LatestSnapshot => format!(
                    "events up to seq {retired} have left the database (retention), and the newest snapshot of projection rules {PROJECTION_RULES_VERSION} reaches only seq {start}: a rebuild would miss them; restore the exported days first (docs/runbooks.md, \"Reading events that left the database\")"
                ),
            },
        ));
    }
    let mut done = high_water(db).await?;
    if start > done {
        return Err(PipelineError::new(
            ErrorKind::Internal,
            format!(
                "the newest snapshot reaches event {start}, but the event store ends at {done}: rebuild with --from-scratch"
            ),
        ));
    }
    report.events += apply_range(db, &live, start, done).await?;
    // The new tables are the fold of every event up to `done`: a snapshot for the next
    // rebuild. Taken before the catch-up, so the events appended while it is written are
    // replayed outside the switch. Without it the rebuild still holds, so a failure only warns.
    // A rebuild that found nothing after its snapshot stores no copy of the same point.
    if report.from_snapshot.is_none_or(|s| s.up_to_seq < done) {
        match save_from(db, REBUILD_SCHEMA, done).await {
            Ok(snapshot) => report.snapshot = Some(snapshot),
            Err(e) => tracing::warn!(
                error = %e.detailed(),
                "could not store a snapshot of the new projection; the rebuild goes on"
            ),
        }
    }
    observe(RebuildStage::Built { up_to_seq: done }).await;
    for _ in 0..MAX_CATCH_UP_ROUNDS {
        let mark = high_water(db).await?;
        if mark - done <= i64::try_from(REBUILD_BATCH).unwrap_or(i64::MAX) {
            break;
        }
        let n = apply_range(db, &live, done, mark).await?;
        report.events += n;
        report.caught_up += n;
        done = mark;
    }

    db.execute_unprepared(&format!(
        "ANALYZE {REBUILD_SCHEMA}.product_offers, {REBUILD_SCHEMA}.product_summaries"
    ))
    .await
    .map_err(|e| db_error("could not analyze the new projection", e))?;

    let txn = db
        .begin()
        .await
        .map_err(|e| db_error("could not start the switch", e))?;
    // In Persist's table order (LOCK_AND_APPEND in event_store.rs, then the projection write):
    // an append that waits here while holding a table this lock wants later would deadlock.
    txn.execute_unprepared(&format!(
        "LOCK TABLE {live}.product_summaries, {live}.inventory_events, {live}.product_offers IN EXCLUSIVE MODE"
    ))
    .await
    .map_err(|e| db_error("could not lock the projection for the switch", e))?;
    let last = max_seq(&txn).await?;
    let n = apply_batches(&txn, &live, done, last).await?;
    report.events += n;
    report.caught_up += n;
    observe(RebuildStage::Switching { up_to_seq: last }).await;
    txn.execute_raw(stmt(
        "UPDATE projection_state SET rules_version = $1",
        vec![PROJECTION_RULES_VERSION.into()],
    ))
    .await
    .map_err(|e| db_error("could not record the new projection's rules version", e))?;
    txn.execute_unprepared(&format!(
        "SET LOCAL search_path TO {live};
         LOCK TABLE {live}.product_summaries, {live}.product_offers IN ACCESS EXCLUSIVE MODE;
         DROP TABLE {live}.product_offers, {live}.product_summaries;
         ALTER TABLE {REBUILD_SCHEMA}.product_offers SET SCHEMA {live};
         ALTER TABLE {REBUILD_SCHEMA}.product_summaries SET SCHEMA {live};
         DROP SCHEMA {REBUILD_SCHEMA};"
    ))
    .await
    .map_err(|e| db_error("could not switch to the rebuilt projection", e))?;
    let (offers, products) = projection_counts(&txn).await?;
    report.offers = offers;
    report.products = products;
    txn.commit()
        .await
        .map_err(|e| db_error("could not commit the switch", e))?;
    guard
        .commit()
        .await
        .map_err(|e| db_error("could not release the rebuild lock", e))?;
    tracing::info!(
        events = report.events,
        caught_up = report.caught_up,
        offers = report.offers,
        products = report.products,
        from_snapshot = ?report.from_snapshot.map(|s| s.up_to_seq),
        "projection rebuilt and switched"
    );
    Ok(report)
}

/// Takes [`REBUILD_LOCK_KEY`] for `guard`'s transaction if nobody holds it: one rebuild (or
/// snapshot of the live projection) at a time.
pub(crate) async fn try_rebuild_lock(guard: &DatabaseTransaction) -> Result<bool, PipelineError> {
    try_xact_lock(guard, REBUILD_LOCK_KEY, "the rebuild lock").await
}

/// Drops a schema left by an interrupted rebuild and makes [`REBUILD_SCHEMA`] again, with
/// empty copies of the live projection tables: the same columns, constraints, indexes and
/// comments (`LIKE ... INCLUDING ALL`), the table comments, the same grants and the same
/// owner, so the tables moved in by the switch are what the migrations made. Returns the live
/// tables' schema, quoted as an identifier.
async fn prepare_shadow(db: &DatabaseConnection) -> Result<String, PipelineError> {
    let txn = db
        .begin()
        .await
        .map_err(|e| db_error("could not start preparing the rebuild", e))?;
    let live = live_schema(&txn).await?;
    let sql = format!(
        r#"
DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE;
CREATE SCHEMA {REBUILD_SCHEMA};
CREATE TABLE {REBUILD_SCHEMA}.product_offers (LIKE {live}.product_offers INCLUDING ALL);
CREATE TABLE {REBUILD_SCHEMA}.product_summaries (LIKE {live}.product_summaries INCLUDING ALL);
DO $$
DECLARE
    t text;
    g record;
BEGIN
    FOREACH t IN ARRAY ARRAY['product_offers', 'product_summaries'] LOOP
        EXECUTE format('COMMENT ON TABLE {REBUILD_SCHEMA}.%I IS %L', t,
            obj_description(format('{live}.%I', t)::regclass, 'pg_class'));
        FOR g IN
            SELECT a.privilege_type, a.grantee
            FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = format('{live}.%I', t)::regclass AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT %s ON {REBUILD_SCHEMA}.%I TO %s', g.privilege_type, t,
                CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.grantee::regrole::text) END);
        END LOOP;
        EXECUTE format('ALTER TABLE {REBUILD_SCHEMA}.%I OWNER TO %I', t,
            (SELECT relowner::regrole::text FROM pg_class WHERE oid = format('{live}.%I', t)::regclass));
    END LOOP;
END
$$;
"#
    );
    txn.execute_unprepared(&sql)
        .await
        .map_err(|e| db_error("could not make the tables of the new projection", e))?;
    txn.commit()
        .await
        .map_err(|e| db_error("could not commit the tables of the new projection", e))?;
    Ok(live)
}

/// The greatest `seq` such that every event at or below it is committed and every event
/// appended later gets a greater one: read under a SHARE lock, which waits for the appends in
/// flight (an append holds ROW EXCLUSIVE on the store from its lock-and-append statement,
/// including its wait for product locks, to its commit: so a mark also waits for the chunks
/// queued on the same products) and holds new ones for this one statement.
async fn high_water(db: &DatabaseConnection) -> Result<i64, PipelineError> {
    let txn = db
        .begin()
        .await
        .map_err(|e| db_error("could not start reading the store's position", e))?;
    txn.execute_unprepared("LOCK TABLE inventory_events IN SHARE MODE")
        .await
        .map_err(|e| db_error("could not lock the event store", e))?;
    let seq = max_seq(&txn).await?;
    txn.commit()
        .await
        .map_err(|e| db_error("could not release the event store", e))?;
    Ok(seq)
}

async fn max_seq(txn: &DatabaseTransaction) -> Result<i64, PipelineError> {
    query_scalar::<i64>(
        txn,
        "SELECT coalesce(max(seq), 0) AS seq FROM inventory_events",
        vec![],
        "seq",
        "could not read the store's position",
    )
    .await
    .map(Option::unwrap_or_default)
}

/// Applies the events with `after < seq <= upto` to the new projection, one transaction per
/// batch. Returns how many there were.
async fn apply_range(
    db: &DatabaseConnection,
    live: &str,
    mut after: i64,
    upto: i64,
) -> Result<u64, PipelineError> {
    let mut n = 0;
    while after < upto {
        let txn = db
            .begin()
            .await
            .map_err(|e| db_error("could not start a rebuild batch", e))?;
        let batch_end = after.saturating_add(i64::try_from(REBUILD_BATCH).unwrap_or(i64::MAX));
        n += apply_batches(&txn, live, after, batch_end.min(upto)).await?;
        txn.commit()
            .await
            .map_err(|e| db_error("could not commit a rebuild batch", e))?;
        after = batch_end;
    }
    Ok(n)
}

/// Applies the events with `after < seq <= upto` to the new projection in `txn`, in batches
/// of [`REBUILD_BATCH`]. The new schema comes first on the `search_path` for the rest of
/// `txn`, so [`apply_events`] reads and writes its tables.
async fn apply_batches(
    txn: &DatabaseTransaction,
    live: &str,
    mut after: i64,
    upto: i64,
) -> Result<u64, PipelineError> {
    txn.execute_unprepared(&format!(
        "SET LOCAL search_path TO {REBUILD_SCHEMA}, {live}"
    ))
    .await
    .map_err(|e| db_error("could not select the new projection", e))?;
    let mut n = 0;
    while after < upto {
        let batch = inventory_event::Entity::find()
            .filter(inventory_event::Column::Seq.gt(after))
            .filter(inventory_event::Column::Seq.lte(upto))
            .order_by_asc(inventory_event::Column::Seq)
            .limit(REBUILD_BATCH)
            .all(txn)
            .await
            .map_err(|e| db_error("could not read events", e))?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        let events = batch
            .into_iter()
            .map(envelope)
            .collect::<Result<Vec<_>, _>>()?;
        let products: BTreeSet<ProductId> =
            events.iter().map(|e| e.event.product_id.clone()).collect();
        apply_events(txn, &products, &events).await?;
        n += events.len() as u64;
    }
    Ok(n)
}

async fn projection_counts(txn: &DatabaseTransaction) -> Result<(u64, u64), PipelineError> {
    let row = txn
        .query_one_raw(stmt(
            "SELECT (SELECT count(*) FROM product_offers) AS offers, (SELECT count(*) FROM product_summaries) AS products",
            vec![],
        ))
        .await
        .map_err(|e| db_error("could not count the projection", e))?
        .ok_or_else(|| PipelineError::new(ErrorKind::Internal, "the count returned no row"))?;
    let count = |col: &str| {
        row.try_get::<i64>("", col)
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| db_error("could not count the projection", e))
    };
    Ok((count("offers")?, count("products")?))
}

#[cfg(test)]
#[path = "rebuild_tests.rs"]
mod tests;
