//! The event store against real PostgreSQL: exactly-once appends (SPEC invariant 2), newest
//! wins whatever the arrival order (3), concurrent writers, and the rebuild (7).

use anyhow::{Context as _, Result};
use chrono::{DateTime, TimeZone, Utc};
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::entity::inventory_event;
use inventory::adapters::postgres::{
    PgEventStore, PgProductReader, load_offers, load_projection, load_summary, rebuild_projection,
    stored_envelope,
};
use inventory::domain::ids::UpdateId;
use inventory::domain::update::parse_record;
use inventory::ports::{EventStore, ProductReader as _};
use inventory::steps::payloads::{ChunkId, PersistInput};
use inventory::steps::persist_updates;
use inventory::{InventoryUpdate, ProductId, SourcePosition};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use sea_orm::{EntityTrait as _, QueryOrder as _};
use std::collections::BTreeMap;

/// When every test update reached the stream.
pub fn arrived_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .expect("valid time")
}

/// A valid update through the real data contract; `minute` sets `occurred_at` (10:mm).
pub fn update(
    product: &str,
    supplier: &str,
    quantity: i64,
    price: &str,
    minute: u32,
) -> InventoryUpdate {
    let json = format!(
        r#"{{"product_id":"{product}","supplier_id":"{supplier}","quantity":{quantity},"price":"{price}","occurred_at":"2026-11-24T10:{minute:02}:00Z"}}"#
    );
    let source = SourcePosition {
        shard_id: "shardId-000000000000".into(),
        sequence_number: format!("{minute}{quantity}"),
        arrived_at: arrived_at(),
    };
    parse_record(json.as_bytes(), &source).expect("test updates are valid")
}

pub fn chunk(index: u32) -> ChunkId {
    ChunkId {
        stream: "inventory-updates-test".into(),
        shard_id: "shardId-000000000000".into(),
        first_sequence: "1".into(),
        last_sequence: "2".into(),
        index,
    }
}

pub fn pid(s: &str) -> ProductId {
    ProductId::parse(s).expect("valid product id")
}

/// The first 10 events of `product`'s history as the read API reads it, newest first.
pub async fn history(
    db: &DatabaseConnection,
    product: &str,
) -> Result<Vec<inventory::read::HistoryEvent>> {
    let query = inventory::read::HistoryQuery {
        before: None,
        limit: 10,
    };
    Ok(PgProductReader::new(db.clone())
        .load_history(&pid(product), query)
        .await?)
}

pub async fn count(db: &DatabaseConnection, table: &str) -> Result<i64> {
    scalar(db, &format!("SELECT count(*) FROM {table}")).await
}

/// The one `bigint` a query returns.
pub async fn scalar(db: &impl ConnectionTrait, sql: &str) -> Result<i64> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row: {sql}"))?;
    Ok(row.try_get_by_index(0)?)
}

/// Waits up to 10 s until `sql` (one `bigint`) is at least `target`; `what` says what was
/// awaited when it never is.
pub async fn wait_until(
    db: &impl ConnectionTrait,
    sql: &str,
    target: i64,
    what: &str,
) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while scalar(db, sql).await? < target {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The offers "newest occurred_at per product and supplier (ties: greater key)" gives.
pub fn newest_per_offer(
    updates: &[InventoryUpdate],
) -> BTreeMap<(String, String), InventoryUpdate> {
    let mut newest: BTreeMap<(String, String), InventoryUpdate> = BTreeMap::new();
    for u in updates {
        let k = (u.product_id.to_string(), u.supplier_id.to_string());
        let wins = newest
            .get(&k)
            .is_none_or(|cur| (u.occurred_at, &u.update_key) > (cur.occurred_at, &cur.update_key));
        if wins {
            newest.insert(k, u.clone());
        }
    }
    newest
}

#[tokio::test]
async fn a_redelivered_chunk_appends_nothing_and_reports_the_same_changes() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    let input = PersistInput {
        chunk: chunk(0),
        updates: vec![
            update("p1", "s1", 5, "10", 1),
            update("p1", "s2", 3, "9.5", 2),
            update("p2", "s1", 1, "1", 3),
        ],
    };

    let first = persist_updates(&input, &store).await?;
    let again = persist_updates(&input, &store).await?;

    assert_eq!((first.appended, first.duplicates), (3, 0));
    assert_eq!((again.appended, again.duplicates), (0, 3));
    assert_eq!(
        again.changed, first.changed,
        "a retry reports the same products and versions"
    );
    assert_eq!(
        first
            .changed
            .iter()
            .map(|c| c.product_id.as_str())
            .collect::<Vec<_>>(),
        ["p1", "p2"]
    );
    assert_eq!(count(&t.db, "inventory_events").await?, 3);
    let s = load_summary(&t.db, &pid("p1")).await?.expect("summary");
    assert_eq!(s.total_quantity, 8);
    assert_eq!(s.supplier_count, 2);
    t.cleanup().await
}

#[tokio::test]
async fn duplicates_within_a_chunk_are_appended_once() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    let u = update("p1", "s1", 5, "10", 1);

    let out = store
        .append(&[u.clone(), u.clone(), update("p1", "s1", 6, "10", 2), u])
        .await?;

    assert_eq!((out.appended, out.duplicates), (2, 2));
    assert_eq!(count(&t.db, "inventory_events").await?, 2);
    assert_eq!(load_offers(&t.db, &pid("p1")).await?[0].quantity.get(), 6);
    t.cleanup().await
}

#[tokio::test]
async fn the_newest_occurred_at_wins_whatever_the_arrival_order() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    let newer = update("p1", "s1", 20, "4", 30);
    let older = update("p1", "s1", 10, "5", 10);

    let first = store.append(std::slice::from_ref(&newer)).await?;
    let late = store.append(std::slice::from_ref(&older)).await?;

    assert_eq!(late.appended, 1, "the older update is kept in the store");
    assert!(
        late.changed.is_empty(),
        "but it changes nothing: {:?}",
        late.changed
    );
    let offers = load_offers(&t.db, &pid("p1")).await?;
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].update_key, newer.update_key);
    assert_eq!(offers[0].quantity.get(), 20);
    let s = load_summary(&t.db, &pid("p1")).await?.expect("summary");
    assert_eq!(
        s.version, first.changed[0].version,
        "the version did not move"
    );
    assert_eq!(s.updated_at, newer.occurred_at);
    t.cleanup().await
}

#[tokio::test]
async fn versions_increase_with_every_change_and_equal_the_newest_event_position() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    let mut versions = Vec::new();
    for minute in 1..=4 {
        let out = store
            .append(&[update("p1", "s1", i64::from(minute), "1", minute)])
            .await?;
        versions.push(out.changed[0].version);
    }
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let offers = load_offers(&t.db, &pid("p1")).await?;
    assert_eq!(
        load_summary(&t.db, &pid("p1"))
            .await?
            .expect("summary")
            .version,
        offers[0].event_seq
    );
    t.cleanup().await
}

/// A chunk takes its events' `seq`s only once it holds every product lock it needs: a chunk
/// that waits for another transaction's lock on one of its products has taken none yet. Were a
/// `seq` taken before the wait, a chunk committing later could change a product with a lower
/// `seq` than one already committed, and the summary's `version` would not increase with that
/// change. Checked with the plans PostgreSQL makes for each run of a prepared statement and
/// with the generic plan it may keep after five.
#[tokio::test]
async fn a_chunk_takes_no_seq_while_it_waits_for_a_product_lock() -> Result<()> {
    for plan_cache_mode in ["auto", "force_generic_plan"] {
        takes_no_seq_while_waiting(plan_cache_mode)
            .await
            .with_context(|| format!("plan_cache_mode {plan_cache_mode}"))?;
    }
    Ok(())
}

async fn takes_no_seq_while_waiting(plan_cache_mode: &str) -> Result<()> {
    const LAST_SEQ: &str = "SELECT last_value FROM inventory_events_seq_seq";
    let t = TestDb::new().await?;
    t.db.execute_unprepared(&format!(
        "ALTER DATABASE \"{}\" SET plan_cache_mode = {plan_cache_mode}",
        t.name()
    ))
    .await?;
    let writer = t.connect(1).await?;
    let store = PgEventStore::new(writer.clone());
    store.append(&[update("p2", "s1", 1, "1.00", 1)]).await?;
    let watcher = t.connect(1).await?;
    let before = scalar(&watcher, LAST_SEQ).await?;

    let holder = t.db.begin().await?;
    holder
        .execute_unprepared("SELECT 1 FROM product_summaries WHERE product_id = 'p2' FOR UPDATE")
        .await?;
    let holder_pid = scalar(&holder, "SELECT pg_backend_pid()::bigint").await?;
    let chunk = vec![
        update("p1", "s1", 2, "2.00", 2),
        update("p2", "s1", 3, "3.00", 3),
        update("p3", "s1", 4, "4.00", 4),
    ];
    let appending = tokio::spawn(async move { store.append(&chunk).await });
    let blocked = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE {holder_pid} = ANY(pg_blocking_pids(pid)) AND query LIKE '%WITH locked AS%'"
    );
    wait_until(
        &watcher,
        &blocked,
        1,
        "the append waiting for the lock on p2",
    )
    .await?;
    let while_waiting = scalar(&watcher, LAST_SEQ).await?;
    holder.rollback().await?;
    let out = appending.await??;

    assert_eq!(
        while_waiting, before,
        "no seq is taken while a product lock is awaited"
    );
    assert_eq!(out.appended, 3);
    assert_eq!(scalar(&watcher, LAST_SEQ).await?, before + 3);
    // The writer's one backend ran the statement twice, with the plans the mode asks for.
    let generic_plans = scalar(
        &writer,
        "SELECT coalesce(sum(generic_plans), -1)::bigint FROM pg_prepared_statements \
         WHERE statement LIKE '%WITH locked AS%' AND statement NOT LIKE '%pg_prepared%'",
    )
    .await?;
    let expected = if plan_cache_mode == "force_generic_plan" {
        2
    } else {
        0
    };
    assert_eq!(generic_plans, expected, "runs with a generic plan");
    writer.close().await?;
    watcher.close().await?;
    t.cleanup().await
}

/// The summary's best price, currency and supplier are null together when no offer has stock,
/// and are written again when one has.
#[tokio::test]
async fn a_product_without_stock_has_no_best_price() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    let best = |s: &inventory::ProductSummary| {
        (
            s.total_quantity,
            s.best_price.map(|p| p.to_string()),
            s.best_price_currency.map(|c| c.to_string()),
            s.best_price_supplier.as_ref().map(ToString::to_string),
            s.supplier_count,
        )
    };
    let mut seen = Vec::new();
    for u in [
        update("p1", "s1", 0, "10.50", 1),
        update("p1", "s2", 3, "7.25", 2),
        update("p1", "s2", 0, "7.25", 3),
    ] {
        store.append(&[u]).await?;
        let summary = load_summary(&t.db, &pid("p1")).await?.expect("summary");
        seen.push(best(&summary));
    }
    assert_eq!(
        seen,
        [
            (0, None, None, None, 1),
            (
                3,
                Some("7.25".into()),
                Some("USD".into()),
                Some("s2".into()),
                2
            ),
            (0, None, None, None, 2),
        ]
    );
    t.cleanup().await
}

#[tokio::test]
async fn concurrent_appends_for_the_same_products_give_the_serial_state() -> Result<()> {
    let concurrent = TestDb::new().await?;
    let serial = TestDb::new().await?;
    // 8 writers, 10 chunks each, over 6 products x 3 suppliers, overlapping and out of order.
    let mut all = Vec::new();
    let mut per_writer: Vec<Vec<Vec<InventoryUpdate>>> = Vec::new();
    for w in 0..8u32 {
        let mut chunks = Vec::new();
        for c in 0..10u32 {
            let chunk: Vec<InventoryUpdate> = (0..12u32)
                .map(|i| {
                    let n = w * 131 + c * 17 + i * 7;
                    update(
                        &format!("p{}", n % 6),
                        &format!("s{}", n % 3),
                        i64::from(n % 50),
                        &format!("{}.5", n % 9),
                        (n * 13) % 60,
                    )
                })
                .collect();
            all.extend(chunk.iter().cloned());
            chunks.push(chunk);
        }
        per_writer.push(chunks);
    }

    let mut tasks = Vec::new();
    for chunks in per_writer {
        let store = PgEventStore::new(concurrent.connect(2).await?);
        tasks.push(tokio::spawn(async move {
            for chunk in chunks {
                store.append(&chunk).await?;
            }
            Ok::<_, inventory::PipelineError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let serial_store = PgEventStore::new(serial.db.clone());
    for chunk in all.chunks(12) {
        serial_store.append(chunk).await?;
    }

    let (c_offers, c_summaries) = load_projection(&concurrent.db).await?;
    let (s_offers, s_summaries) = load_projection(&serial.db).await?;
    let strip_seq = |o: &inventory::Offer| {
        (
            o.product_id.clone(),
            o.supplier_id.clone(),
            o.quantity,
            o.price,
            o.occurred_at,
            o.update_key.clone(),
        )
    };
    assert_eq!(
        c_offers.iter().map(strip_seq).collect::<Vec<_>>(),
        s_offers.iter().map(strip_seq).collect::<Vec<_>>()
    );
    let strip_version = |s: &inventory::ProductSummary| {
        (
            s.product_id.clone(),
            s.total_quantity,
            s.best_price,
            s.supplier_count,
            s.updated_at,
        )
    };
    assert_eq!(
        c_summaries.iter().map(strip_version).collect::<Vec<_>>(),
        s_summaries.iter().map(strip_version).collect::<Vec<_>>()
    );
    let newest = newest_per_offer(&all);
    assert_eq!(
        c_offers
            .iter()
            .map(|o| o.update_key.clone())
            .collect::<Vec<_>>(),
        newest
            .values()
            .map(|u| u.update_key.clone())
            .collect::<Vec<_>>()
    );
    for s in &c_summaries {
        let max_seq = c_offers
            .iter()
            .filter(|o| o.product_id == s.product_id)
            .map(|o| o.event_seq)
            .max();
        assert_eq!(Some(s.version), max_seq, "version of {}", s.product_id);
    }
    assert_eq!(
        count(&concurrent.db, "inventory_events").await?,
        count(&serial.db, "inventory_events").await?
    );
    concurrent.cleanup().await?;
    serial.cleanup().await
}

/// Round `r` of `n` distinct updates over `products` products and 4 suppliers each, for tests
/// where several writers append the same updates at once.
pub fn contended_round(r: u32, n: u32, products: u32) -> Vec<InventoryUpdate> {
    (0..n)
        .map(|i| {
            update(
                &format!("p{}", i % products),
                &format!("s{}", (i / products) % 4),
                i64::from(r * 1000 + i),
                "2.5",
                (i + r) % 60,
            )
        })
        .collect()
}

/// A transaction holding the middle key (in key order) of `updates` in the keys index until it
/// ends: writers that take the keys in different orders would each hold one half and wait for
/// the other's, which makes a deadlock certain rather than likely.
pub async fn hold_middle_key(
    db: &DatabaseConnection,
    updates: &[InventoryUpdate],
) -> Result<DatabaseTransaction> {
    let mut keys: Vec<&str> = updates.iter().map(|u| u.update_key.as_str()).collect();
    keys.sort_unstable();
    let blocker = db.begin().await?;
    blocker
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "INSERT INTO inventory_update_key_ids (key_id) VALUES (left($1, 32)::uuid)",
            [keys[keys.len() / 2].into()],
        ))
        .await?;
    Ok(blocker)
}

/// The same updates delivered to several writers at once (two shards' redrives of one range,
/// a supplier's duplicate send), half of them in the opposite order: every key is appended
/// once, no writer deadlocks on another's keys or products, the offers are the newest per
/// product and supplier, and each summary's version is its newest offer's `seq`. Persist records
/// the keys before it locks any product, so the keys must go in one global order. To make the
/// test certain rather than likely to catch a writer that sends them in chunk order, another
/// transaction holds the middle key of each round until every writer has queued: writers in
/// opposite orders would each hold one half and wait for the other's.
#[tokio::test]
async fn the_same_updates_from_writers_in_opposite_orders_are_appended_once_without_deadlock()
-> Result<()> {
    const WRITERS: usize = 4;
    const ROUNDS: u32 = 5;
    let t = TestDb::new().await?;
    let mut stores = Vec::new();
    for _ in 0..WRITERS {
        stores.push(PgEventStore::new(t.connect(1).await?));
    }
    let mut all = Vec::new();
    let mut appended = 0;
    for r in 0..ROUNDS {
        let round = contended_round(r, 300, 40);
        let blocker = hold_middle_key(&t.db, &round).await?;
        let mut tasks = Vec::new();
        for (w, store) in stores.iter().enumerate() {
            let mut mine = round.clone();
            if w % 2 == 1 {
                mine.reverse();
            }
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.append(&mine).await }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        blocker.rollback().await?;
        for task in tasks {
            appended += task.await??.appended;
        }
        all.extend(round);
    }

    assert_eq!(appended, all.len(), "each update appended once in all");
    assert_eq!(count(&t.db, "inventory_events").await?, 1500);
    assert_eq!(count(&t.db, "inventory_update_key_ids").await?, 1500);
    let (offers, summaries) = load_projection(&t.db).await?;
    assert_eq!(
        offers
            .iter()
            .map(|o| o.update_key.clone())
            .collect::<Vec<_>>(),
        newest_per_offer(&all)
            .values()
            .map(|u| u.update_key.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(summaries.len(), 40);
    for s in &summaries {
        let max_seq = offers
            .iter()
            .filter(|o| o.product_id == s.product_id)
            .map(|o| o.event_seq)
            .max();
        assert_eq!(Some(s.version), max_seq, "version of {}", s.product_id);
        assert_eq!(s.supplier_count, 4, "suppliers of {}", s.product_id);
    }
    t.cleanup().await
}

#[tokio::test]
async fn the_projection_rebuilt_from_events_equals_the_incremental_one() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    let updates: Vec<InventoryUpdate> = (0..200u32)
        .map(|i| {
            update(
                &format!("p{}", i % 13),
                &format!("s{}", i % 4),
                i64::from(i % 7),
                &format!("{}.25", i % 11),
                (i * 37) % 60,
            )
        })
        .collect();
    for chunk in updates.chunks(17).rev() {
        store.append(chunk).await?;
    }
    let incremental = load_projection(&t.db).await?;

    let report = rebuild_projection(&t.db).await?;

    assert_eq!(
        load_projection(&t.db).await?,
        incremental,
        "offers and summaries, versions included"
    );
    assert_eq!(
        report.events,
        u64::try_from(count(&t.db, "inventory_events").await?)?
    );
    assert_eq!(report.products, 13);
    assert_eq!(report.offers, u64::try_from(incremental.0.len())?);
    t.cleanup().await
}

#[tokio::test]
async fn the_event_store_refuses_updates_and_deletes() -> Result<()> {
    let t = TestDb::new().await?;
    PgEventStore::new(t.db.clone())
        .append(&[update("p1", "s1", 1, "1", 1)])
        .await?;

    let changed =
        t.db.execute_unprepared("UPDATE inventory_events SET event_version = 2")
            .await;
    let deleted =
        t.db.execute_unprepared("DELETE FROM inventory_events")
            .await;
    let truncated = t.db.execute_unprepared("TRUNCATE inventory_events").await;

    for (what, r) in [
        ("UPDATE", changed),
        ("DELETE", deleted),
        ("TRUNCATE", truncated),
    ] {
        let e = r.expect_err(what).to_string();
        assert!(e.contains("append-only"), "{what}: {e}");
    }
    assert_eq!(count(&t.db, "inventory_events").await?, 1);
    t.cleanup().await
}

/// An event row keeps the whole update, in typed columns: read back, it is the event that
/// was appended (the supplier's `update_id` or its absence, the stream position, whether
/// `occurred_at` came from the supplier), and the price keeps its scale.
#[tokio::test]
async fn stored_events_keep_the_whole_update() -> Result<()> {
    let t = TestDb::new().await?;
    let plain = update("p1", "s1", 3, "12.3456", 5);
    let mut with_id = update("p2", "s1", 4, "7", 6);
    with_id.update_id = Some(UpdateId::parse("feed-7/42").map_err(anyhow::Error::msg)?);
    with_id.occurred_at_from_supplier = false;
    let appended = [plain.clone(), with_id.clone()];
    PgEventStore::new(t.db.clone()).append(&appended).await?;

    let rows = inventory_event::Entity::find()
        .order_by_asc(inventory_event::Column::Seq)
        .all(&t.db)
        .await?;
    let raw =
        t.db.query_one_raw(sea_orm::Statement::from_string(
            t.db.get_database_backend(),
            "SELECT min(price::text) FILTER (WHERE product_id = 'p1') AS price, \
                    bool_and(payload IS NULL) AS typed FROM inventory_events",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no event"))?;

    assert_eq!(rows.len(), 2);
    for (m, u) in rows.into_iter().zip(&appended) {
        assert_eq!(m.event_type, "InventoryUpdateReceived");
        let envelope = stored_envelope(m)?;
        assert_eq!(envelope.event, inventory::InventoryUpdateReceived::from(u));
        assert_eq!(envelope.update_key, u.update_key);
    }
    assert_eq!(raw.try_get::<String>("", "price")?, "12.3456");
    assert!(raw.try_get::<bool>("", "typed")?, "no payload");
    assert_eq!(
        load_offers(&t.db, &pid("p1")).await?[0].price.to_string(),
        "12.3456"
    );
    t.cleanup().await
}
