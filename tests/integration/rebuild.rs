//! A projection rebuild beside the live projection, against real PostgreSQL: while it runs,
//! persist's appends commit without waiting for it, and its end state is a from-scratch fold
//! of every event, those appended during the rebuild included (SPEC invariants 7 and 8). A
//! rebuild from the latest snapshot plus the later events equals one from the first event.

use crate::event_store::{count, scalar, update, wait_until};
use anyhow::{Context as _, Result, bail};
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::entity::inventory_event;
use inventory::adapters::postgres::{
    PgEventStore, REBUILD_SCHEMA, RebuildFrom, RebuildStage, SNAPSHOTS_KEPT, load_projection,
    rebuild_projection, rebuild_projection_from, rebuild_projection_observed,
};
use inventory::domain::projection::InMemoryProjection;
use inventory::ports::EventStore;
use inventory::steps::payloads::PersistInput;
use inventory::steps::persist_updates;
use inventory::{EventEnvelope, InventoryUpdate, InventoryUpdateReceived, UpdateKey};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, EntityTrait, QueryOrder, Statement, TransactionTrait,
};
use std::sync::{Arc, Mutex};

/// The projection a from-scratch fold of every stored event gives, through the pure rules
/// alone (no database code), in the shape `load_projection` returns.
async fn fold_of_all_events(
    db: &DatabaseConnection,
) -> Result<(Vec<inventory::Offer>, Vec<inventory::ProductSummary>)> {
    let rows = inventory_event::Entity::find()
        .order_by_asc(inventory_event::Column::Seq)
        .all(db)
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for m in rows {
        // Read here, not by the store's reader: the payload of older rows, or the typed
        // columns through the event's own serde form.
        let payload = m.payload.unwrap_or_else(|| {
            serde_json::json!({
                "product_id": m.product_id,
                "supplier_id": m.supplier_id,
                "quantity": m.quantity,
                "price": m.price.map(|p| p.to_string()),
                "currency": m.currency,
                "occurred_at": m.occurred_at,
                "occurred_at_from_supplier": m.occurred_at_from_supplier,
                "update_id": m.update_id,
                "source": {
                    "shard_id": m.source_shard_id,
                    "sequence_number": m.source_sequence_number,
                    "arrived_at": m.source_arrived_at,
                },
            })
        });
        events.push(EventEnvelope {
            update_key: UpdateKey::try_from(m.update_key).map_err(anyhow::Error::msg)?,
            seq: m.seq,
            event: serde_json::from_value::<InventoryUpdateReceived>(payload)?,
        });
    }
    let mut catalog = InMemoryProjection::default();
    for chunk in events.chunks(7) {
        catalog.apply(chunk);
    }
    Ok((
        catalog.offers().cloned().collect(),
        catalog.summaries().cloned().collect(),
    ))
}

/// How many backends of this database wait for a lock.
const LOCK_WAITERS: &str = "SELECT count(*) FROM pg_stat_activity \
    WHERE datname = current_database() AND wait_event_type = 'Lock'";

async fn lock_waiters(db: &DatabaseConnection) -> Result<i64> {
    scalar(db, LOCK_WAITERS).await
}

/// Persists `input` through the real use case on its own pool (another persist instance),
/// unless it is seen waiting for a lock first: then `Err` says so, and the append goes on in
/// the background.
async fn persist_unless_blocked(
    writer: &DatabaseConnection,
    watcher: &DatabaseConnection,
    input: PersistInput,
) -> Result<usize> {
    let store = PgEventStore::new(writer.clone());
    let persist = tokio::spawn(async move { persist_updates(&input, &store).await });
    tokio::pin!(persist);
    loop {
        tokio::select! {
            done = &mut persist => return Ok(done??.appended),
            () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                if lock_waiters(watcher).await? > 0 {
                    bail!("persist is waiting for a lock held by the rebuild");
                }
            }
        }
    }
}

/// An append started at the switch: how many events it appended, or why it failed.
type WaitingAppend = tokio::task::JoinHandle<Result<usize, String>>;

fn feed(from: u32, n: u32) -> Vec<InventoryUpdate> {
    (from..from + n)
        .map(|i| {
            update(
                &format!("p{}", i % 17),
                &format!("s{}", i % 5),
                i64::from(i % 9),
                &format!("{}.5", i % 13),
                (i * 31) % 60,
            )
        })
        .collect()
}

#[tokio::test]
async fn persist_commits_while_a_rebuild_runs_and_the_result_is_the_fold_of_every_event()
-> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    for chunk in feed(0, 300).chunks(23) {
        store.append(chunk).await?;
    }
    let writer = t.connect(2).await?;
    let watcher = t.connect(1).await?;
    let during: Arc<Mutex<Vec<Result<usize, String>>>> = Arc::default();

    let report = rebuild_projection_observed(&t.db, |stage| {
        let (writer, watcher, during) = (writer.clone(), watcher.clone(), during.clone());
        async move {
            if !matches!(stage, RebuildStage::Built { .. }) {
                return;
            }
            // The rebuild is held here, mid-way, until these appends are done or blocked:
            // new products and suppliers, and newer updates of existing offers.
            for (i, chunk) in feed(300, 120).chunks(30).enumerate() {
                let input = PersistInput {
                    chunk: crate::event_store::chunk(u32::try_from(i).unwrap_or(0)),
                    updates: chunk.to_vec(),
                };
                let outcome = persist_unless_blocked(&writer, &watcher, input)
                    .await
                    .map_err(|e| format!("{e:#}"));
                let blocked = outcome.is_err();
                during.lock().expect("lock").push(outcome);
                if blocked {
                    break;
                }
            }
        }
    })
    .await?;

    let during = during.lock().expect("lock").clone();
    assert_eq!(
        during.len(),
        4,
        "every append during the rebuild committed without waiting for it: {during:?}"
    );
    assert!(during.iter().all(Result::is_ok), "{during:?}");
    let appended_during: usize = during.iter().map(|r| r.clone().unwrap_or(0)).sum();
    assert!(
        appended_during > 0,
        "the appends during the rebuild added events"
    );
    assert_eq!(
        report.events,
        u64::try_from(count(&t.db, "inventory_events").await?)?,
        "the rebuild replayed every event, those appended meanwhile included"
    );
    assert_eq!(report.caught_up, u64::try_from(appended_during)?);
    assert_eq!(
        load_projection(&t.db).await?,
        fold_of_all_events(&t.db).await?,
        "after the switch the projection is the fold of every event"
    );

    // Persist writes the switched-in tables: still the fold afterwards.
    store.append(&feed(420, 60)).await?;
    assert_eq!(
        load_projection(&t.db).await?,
        fold_of_all_events(&t.db).await?,
        "appends after the switch keep the projection the fold of every event"
    );
    let shadow =
        t.db.query_one_raw(Statement::from_sql_and_values(
            t.db.get_database_backend(),
            "SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1",
            [REBUILD_SCHEMA.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no count"))?
        .try_get::<i64>("", "n")?;
    assert_eq!(shadow, 0, "the switch leaves no rebuild schema behind");
    writer.close().await?;
    watcher.close().await?;
    t.cleanup().await
}

#[tokio::test]
async fn an_append_waiting_at_the_switch_commits_to_the_new_tables() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    for chunk in feed(0, 200).chunks(19) {
        store.append(chunk).await?;
    }
    let writer = t.connect(2).await?;
    let watcher = t.connect(1).await?;
    // Warm the writer's prepared statements on the live tables, as a warm Lambda has them.
    PgEventStore::new(writer.clone())
        .append(&feed(200, 10))
        .await?;
    let grants = |db: DatabaseConnection| async move {
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT table_name::text || ' ' || grantee::text || ' ' || privilege_type::text AS g \
                 FROM information_schema.role_table_grants \
                 WHERE table_name IN ('product_offers', 'product_summaries') ORDER BY 1",
            ))
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String>("", "g"))
            .collect::<Result<Vec<_>, _>>()
    };
    let grants_before = grants(t.db.clone()).await?;
    let waiting: Arc<Mutex<Option<WaitingAppend>>> = Arc::default();

    rebuild_projection_observed(&t.db, |stage| {
        let (writer, watcher, waiting) = (writer.clone(), watcher.clone(), waiting.clone());
        async move {
            if !matches!(stage, RebuildStage::Switching { .. }) {
                return;
            }
            let store = PgEventStore::new(writer);
            let handle = tokio::spawn(async move {
                store
                    .append(&feed(210, 40))
                    .await
                    .map(|o| o.appended)
                    .map_err(|e| e.to_string())
            });
            // Hold the switch until the append is queued behind its lock.
            while lock_waiters(&watcher).await.unwrap_or(0) == 0 && !handle.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            *waiting.lock().expect("lock") = Some(handle);
        }
    })
    .await?;

    let handle = waiting.lock().expect("lock").take();
    let appended = handle
        .ok_or_else(|| anyhow::anyhow!("the switch was never observed"))?
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        appended, 40,
        "the append that waited at the switch committed"
    );
    assert_eq!(
        load_projection(&t.db).await?,
        fold_of_all_events(&t.db).await?,
        "the waiting append's projection writes went to the switched-in tables"
    );
    assert_eq!(
        grants(t.db.clone()).await?,
        grants_before,
        "the new tables have the grants of the old ones"
    );
    writer.close().await?;
    watcher.close().await?;
    t.cleanup().await
}

/// The switch locks `product_summaries` before `inventory_events` (`rebuild.rs`), and so must
/// Persist: an append that arrives while the switch waits for an earlier one would otherwise
/// hold `inventory_events` and wait behind the switch for `product_summaries`, while the switch,
/// once it has `product_summaries`, waits for `inventory_events`, and one of them fails with a
/// deadlock. The appends run on a warm connection: a prepared statement run again locks its
/// tables in the order of its plan, which can differ from the order of its first run.
#[tokio::test]
async fn an_append_arriving_while_the_switch_waits_does_not_deadlock_with_it() -> Result<()> {
    const SWITCH_LOCK: &str = "LOCK TABLE product_summaries, inventory_events, product_offers \
        IN EXCLUSIVE MODE";
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.connect(1).await?);
    for chunk in feed(0, 60).chunks(20) {
        store.append(chunk).await?;
    }
    let watcher = t.connect(1).await?;
    let switcher = t.connect(1).await?;

    let earlier_append = t.db.begin().await?;
    earlier_append
        .execute_unprepared("LOCK TABLE product_summaries IN ROW EXCLUSIVE MODE")
        .await?;
    let switch = tokio::spawn(async move {
        let txn = switcher.begin().await?;
        txn.execute_unprepared(SWITCH_LOCK).await?;
        txn.commit().await
    });
    wait_until(&watcher, LOCK_WAITERS, 1, "the switch waiting for a lock").await?;
    let append = tokio::spawn(async move { store.append(&feed(60, 20)).await });
    wait_until(
        &watcher,
        LOCK_WAITERS,
        2,
        "the append waiting behind the switch",
    )
    .await?;
    earlier_append.rollback().await?;

    switch.await?.context("the switch")?;
    assert_eq!(append.await?.context("the append")?.appended, 20);
    watcher.close().await?;
    t.cleanup().await
}

#[tokio::test]
async fn a_rebuild_from_the_latest_snapshot_equals_one_from_the_first_event() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    for chunk in feed(0, 300).chunks(23) {
        store.append(chunk).await?;
    }
    let first = rebuild_projection(&t.db).await?;
    assert_eq!(first.from_snapshot, None, "no snapshot yet");
    let snapshot = first.snapshot.context("the rebuild left a snapshot")?;
    assert_eq!(
        snapshot.up_to_seq,
        scalar(&t.db, "SELECT max(seq) FROM inventory_events").await?
    );
    let before = count(&t.db, "inventory_events").await?;

    // Later events: new products and suppliers, newer updates of existing offers and older
    // ones that arrive late and must lose against what the snapshot holds.
    for chunk in feed(300, 200).chunks(17) {
        store.append(chunk).await?;
    }
    let all = count(&t.db, "inventory_events").await?;
    let second = rebuild_projection(&t.db).await?;
    let from_snapshot = load_projection(&t.db).await?;

    assert_eq!(second.from_snapshot.map(|s| s.id), Some(snapshot.id));
    assert_eq!(
        i64::try_from(second.events)?,
        all - before,
        "only the events after the snapshot were replayed"
    );
    let scratch = rebuild_projection_from(&t.db, RebuildFrom::FirstEvent, |_| async {}).await?;
    assert_eq!(scratch.from_snapshot, None);
    assert_eq!(i64::try_from(scratch.events)?, all);
    assert_eq!(
        load_projection(&t.db).await?,
        from_snapshot,
        "snapshot + later events = every event from the first"
    );
    assert_eq!(from_snapshot, fold_of_all_events(&t.db).await?);
    assert_eq!(
        count(&t.db, "projection_snapshots").await?,
        SNAPSHOTS_KEPT,
        "three rebuilds keep the newest snapshots only"
    );
    t.cleanup().await
}

#[tokio::test]
async fn a_snapshot_taken_under_other_projection_rules_is_never_used() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    for chunk in feed(0, 150).chunks(23) {
        store.append(chunk).await?;
    }
    rebuild_projection(&t.db).await?;
    // The snapshot as rules of another version would have made it: different offers.
    t.db.execute_unprepared(
        "UPDATE projection_snapshots SET rules_version = rules_version + 1; \
         UPDATE projection_snapshot_offers SET quantity = quantity + 1000;",
    )
    .await?;

    let rebuilt = rebuild_projection(&t.db).await?;

    assert_eq!(rebuilt.from_snapshot, None);
    assert_eq!(
        i64::try_from(rebuilt.events)?,
        count(&t.db, "inventory_events").await?
    );
    assert_eq!(
        load_projection(&t.db).await?,
        fold_of_all_events(&t.db).await?
    );
    t.cleanup().await
}
