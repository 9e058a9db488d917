//! The partitioned event store against real PostgreSQL with pg_partman: an update is appended
//! at most once whichever day's partition holds its first copy, the migration keeps every
//! event and the `seq` order, reads go across partitions, and maintenance keeps the days
//! ahead, is safe to repeat, and recovers events that landed in the default partition.

use crate::event_store::{contended_round, count, history, hold_middle_key, scalar, update};
use anyhow::{Context as _, Result};
use chrono::{Duration, Utc};
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::{PgEventStore, maintain_event_store, partition_report};
use inventory::domain::event::InventoryUpdateReceived;
use inventory::domain::partitions::PartitionReport;
use inventory::domain::update::KEY_RETENTION;
use inventory::ports::EventStore as _;
use migration::{Migrator, MigratorTrait as _};
use sea_orm::{
    ConnectionTrait as _, DatabaseConnection, DatabaseTransaction, Statement, TransactionTrait as _,
};

/// Events written by the schema before partitioning, recorded `days_ago`, as persist wrote them.
pub(crate) async fn append_unpartitioned(
    db: &DatabaseConnection,
    updates: &[(inventory::InventoryUpdate, i64)],
) -> Result<()> {
    for (u, days_ago) in updates {
        let payload = serde_json::to_string(&InventoryUpdateReceived::from(u))?;
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO inventory_events (update_key, event_type, event_version, product_id, supplier_id, occurred_at, recorded_at, payload) \
             VALUES ($1, $2, $3, $4, $5, $6, now() - make_interval(days => $7), $8::jsonb)",
            [
                u.update_key.as_str().into(),
                InventoryUpdateReceived::EVENT_TYPE.into(),
                InventoryUpdateReceived::EVENT_VERSION.into(),
                u.product_id.as_str().into(),
                u.supplier_id.as_str().into(),
                u.occurred_at.into(),
                i32::try_from(*days_ago)?.into(),
                payload.into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

/// A database with every migration applied up to, not including, `name`, and `name`'s position
/// in [`migration::known`] (so `known[position..]` is what the next run applies).
pub(crate) async fn migrated_to_before(name: &str) -> Result<(TestDb, usize)> {
    let t = TestDb::empty().await?;
    let before = migration::known()
        .iter()
        .position(|n| n == name)
        .with_context(|| format!("the migration {name}"))?;
    Migrator::up(&t.db, Some(u32::try_from(before)?)).await?;
    Ok((t, before))
}

/// Runs the migrations on a connection of their own while `holder` holds what they need:
/// whether they were still waiting half a second later, and what they applied once `holder`
/// committed.
pub(crate) async fn migrate_while_held(
    t: &TestDb,
    holder: DatabaseTransaction,
) -> Result<(bool, Vec<String>)> {
    let migrating = {
        let db = t.connect(1).await?;
        tokio::spawn(async move { migration::run(&db).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let waited = !migrating.is_finished();
    holder.commit().await?;
    Ok((waited, migrating.await??))
}

#[tokio::test]
async fn updates_appended_before_partitioning_stay_repeats_in_every_partition_and_seq_goes_on()
-> Result<()> {
    let (t, before) = migrated_to_before("m20261206_000006_partition_event_store").await?;
    let known = migration::known();
    let old = [
        (update("p1", "s1", 5, "10", 1), 3),
        (update("p1", "s2", 3, "9.5", 2), 2),
        (update("p2", "s1", 1, "1", 3), 1),
    ];
    append_unpartitioned(&t.db, &old).await?;

    let applied = migration::run(&t.db).await?;
    assert_eq!(applied, known[before..]);
    assert_eq!(
        count(&t.db, "inventory_events").await?,
        3,
        "every event kept"
    );
    assert_eq!(
        scalar(
            &t.db,
            "SELECT count(*) FROM inventory_update_keys WHERE first_seen > now() - interval '1 minute'"
        )
        .await?,
        3,
        "the existing keys start their retention at the migration, not at their events' days"
    );
    assert_eq!(
        scalar(
            &t.db,
            "SELECT count(DISTINCT tableoid) FROM inventory_events"
        )
        .await?,
        3,
        "the three days' events are in three partitions"
    );

    let store = PgEventStore::new(t.db.clone());
    let mut again: Vec<_> = old.iter().map(|(u, _)| u.clone()).collect();
    again.push(update("p1", "s1", 7, "11", 4));
    let outcome = store.append(&again).await?;
    assert_eq!(
        (outcome.appended, outcome.duplicates),
        (1, 3),
        "the three old updates are repeats wherever their events are"
    );
    let again_today = store.append(&again).await?;
    assert_eq!((again_today.appended, again_today.duplicates), (0, 4));
    assert_eq!(
        scalar(
            &t.db,
            "SELECT seq FROM inventory_events WHERE recorded_at > now() - interval '1 hour'"
        )
        .await?,
        4,
        "seq goes on from the old table's sequence"
    );

    let history = history(&t.db, "p1").await?;
    assert_eq!(
        history.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [4, 2, 1],
        "history reads every partition, newest first"
    );
    t.cleanup().await
}

#[tokio::test]
async fn maintenance_keeps_a_week_ahead_and_is_safe_to_run_twice_and_at_once() -> Result<()> {
    let t = TestDb::new().await?;
    let other = t.connect(2).await?;

    // Two at once both succeed (pg_partman's own lock lets one wait or skip).
    let (a, b) = tokio::join!(maintain_event_store(&t.db), maintain_event_store(&other));
    let (_, _) = (a?, b?);
    let a = maintain_event_store(&t.db).await?;
    let again = maintain_event_store(&t.db).await?;

    let size_aside = |r: &PartitionReport| PartitionReport {
        database_bytes: 0,
        ..r.clone()
    };
    assert_eq!(
        size_aside(&a),
        size_aside(&again),
        "a run after another changes nothing"
    );
    let now = Utc::now();
    let until = a.covered_until.context("partitions")?;
    assert!(until >= now + Duration::days(7), "{until} is a week ahead");
    assert_eq!(a.default_rows, 0);
    assert!(
        a.database_bytes > 1 << 20,
        "the database's size, for the storage alarm: {a:?}"
    );
    a.check(now)?;
    t.cleanup().await
}

/// pg_partman counts the days ahead from the newest event unless told otherwise, and makes
/// nothing on an empty store: a quiet stack would run out of partitions after a week.
#[tokio::test]
async fn maintenance_makes_the_days_ahead_from_the_clock_even_on_an_empty_store() -> Result<()> {
    let t = TestDb::new().await?;
    t.db.execute_unprepared(
        "DO $$ DECLARE r record; BEGIN \
           FOR r IN SELECT partition_schemaname || '.' || partition_tablename AS t \
                    FROM partman.show_partitions('public.inventory_events', 'DESC') LIMIT 6 \
           LOOP EXECUTE 'DROP TABLE ' || r.t; END LOOP; END $$",
    )
    .await?;
    let before = partition_report(&t.db).await?;
    assert!(
        before.covered_until.context("partitions")? < Utc::now() + Duration::days(3),
        "{before:?}"
    );

    let after = maintain_event_store(&t.db).await?;

    let until = after.covered_until.context("partitions")?;
    assert!(until >= Utc::now() + Duration::days(7), "{after:?}");
    after.check(Utc::now())?;
    t.cleanup().await
}

#[tokio::test]
async fn events_in_the_default_partition_are_reported_and_the_runbook_moves_them_to_their_day()
-> Result<()> {
    let t = TestDb::new().await?;
    // Maintenance that stopped for longer than the week made ahead: an event recorded past
    // the last partition goes to the default one.
    t.db.execute_unprepared(&format!(
        "INSERT INTO inventory_events (update_key, event_type, event_version, product_id, supplier_id, occurred_at, recorded_at, payload) \
         VALUES ('{}', 'InventoryUpdateReceived', 1, 'p1', 's1', now(), now() + interval '30 days', '{{}}')",
        "f".repeat(64)
    ))
    .await?;
    let report = partition_report(&t.db).await?;
    assert_eq!(report.default_rows, 1);
    let e = report.check(Utc::now()).expect_err("default rows");
    assert!(e.message.contains("default partition"), "{}", e.message);
    assert!(
        maintain_event_store(&t.db).await.is_err(),
        "pg_partman cannot make a partition over rows in the default one"
    );

    // The runbook's procedure, in one session. Without the setting the store stays append-only.
    let session = t.connect(1).await?;
    let refused = session
        .execute_unprepared("CALL partman.partition_data_proc('public.inventory_events')")
        .await
        .expect_err("append-only");
    assert!(refused.to_string().contains("append-only"), "{refused}");
    // One statement at a time, as psql sends them: the procedure commits after each day it
    // moves, which it may not do inside a multi-statement query's implicit transaction.
    for sql in [
        "SET TIME ZONE 'UTC'",
        "SET inventory.move_default_partition = 'on'",
        "CALL partman.partition_data_proc('public.inventory_events')",
    ] {
        session.execute_unprepared(sql).await?;
    }

    let report = maintain_event_store(&t.db).await?;
    assert_eq!(report.default_rows, 0);
    report.check(Utc::now())?;
    assert_eq!(
        count(&t.db, "inventory_events").await?,
        1,
        "the event was moved, not lost"
    );
    let deleted =
        t.db.execute_unprepared("DELETE FROM inventory_events")
            .await
            .expect_err("append-only outside that session");
    assert!(deleted.to_string().contains("append-only"), "{deleted}");
    t.cleanup().await
}

/// Keys are kept for the dedup window plus its margin after their first append, then the
/// daily maintenance forgets them; a key younger than that is kept and still makes a repeat.
#[tokio::test]
async fn maintenance_forgets_keys_older_than_the_window_and_its_margin_and_keeps_the_rest()
-> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    let kept = update("p1", "s1", 5, "10", 1);
    let forgotten = update("p1", "s2", 3, "9.5", 2);
    store.append(&[kept.clone(), forgotten.clone()]).await?;
    let days = KEY_RETENTION.num_days();
    for (u, age) in [(&kept, days - 1), (&forgotten, days + 1)] {
        t.db.execute_raw(Statement::from_sql_and_values(
            t.db.get_database_backend(),
            "UPDATE inventory_update_key_ids SET first_seen = now() - make_interval(days => $1) WHERE key_id = left($2, 32)::uuid",
            [i32::try_from(age)?.into(), u.update_key.as_str().into()],
        ))
        .await?;
    }
    // A key the previous release's Persist recorded as text (migration 9's trigger records it
    // as an id too), as old as the forgotten one: both of its rows go, and it counts once.
    t.db.execute_raw(Statement::from_sql_and_values(
        t.db.get_database_backend(),
        "INSERT INTO inventory_update_keys (update_key, first_seen) VALUES ($1, now() - make_interval(days => $2))",
        ["e".repeat(64).into(), i32::try_from(days + 1)?.into()],
    ))
    .await?;

    let report = maintain_event_store(&t.db).await?;
    let again = maintain_event_store(&t.db).await?;

    assert_eq!((report.pruned_keys, again.pruned_keys), (2, 0));
    assert_eq!(count(&t.db, "inventory_update_key_ids").await?, 1);
    assert_eq!(count(&t.db, "inventory_update_keys").await?, 0);
    assert_eq!(
        count(&t.db, "inventory_events").await?,
        2,
        "no event is touched"
    );
    let repeat = store.append(std::slice::from_ref(&kept)).await?;
    assert_eq!(
        (repeat.appended, repeat.duplicates),
        (0, 1),
        "a kept key is still a repeat"
    );
    t.cleanup().await
}

/// How Persist of the release before migration 9 records a chunk's keys (its `INSERT_KEYS`):
/// it still runs while the stack updates, and again after a rollback.
const PREVIOUS_RELEASE_KEYS: &str = "INSERT INTO inventory_update_keys (update_key) \
     SELECT k FROM unnest($1::text[]) AS t(k) \
     ON CONFLICT (update_key) DO NOTHING RETURNING update_key";

/// The keys the previous release's Persist would record as new, of `updates`.
pub(crate) async fn recorded_by_previous_release(
    db: &DatabaseConnection,
    updates: &[&inventory::InventoryUpdate],
) -> Result<Vec<String>> {
    let mut keys: Vec<String> = updates
        .iter()
        .map(|u| u.update_key.as_str().to_owned())
        .collect();
    keys.sort_unstable();
    let mut new = Vec::new();
    for row in db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            PREVIOUS_RELEASE_KEYS,
            [keys.into()],
        ))
        .await?
    {
        new.push(row.try_get::<String>("", "update_key")?);
    }
    Ok(new)
}

/// Migration 9 moves the keys to `inventory_update_key_ids`: a key recorded before it is still
/// a repeat after it.
#[tokio::test]
async fn updates_recorded_before_keys_became_ids_are_still_repeats() -> Result<()> {
    let (t, before) = migrated_to_before("m20261207_000009_update_key_ids").await?;
    let known = migration::known();
    let old = update("p1", "s1", 5, "10", 1);
    let fresh = update("p1", "s2", 3, "9.5", 2);
    assert_eq!(
        recorded_by_previous_release(&t.db, &[&old]).await?,
        [old.update_key.as_str()]
    );

    let applied = migration::run(&t.db).await?;
    let outcome = PgEventStore::new(t.db.clone())
        .append(&[old.clone(), fresh.clone()])
        .await?;

    assert_eq!(applied, known[before..]);
    assert_eq!(
        (outcome.appended, outcome.duplicates),
        (1, 1),
        "the key recorded before the migration is a repeat after it"
    );
    assert_eq!(count(&t.db, "inventory_update_key_ids").await?, 2);
    t.cleanup().await
}

/// While the stack updates (and after a rollback), Persist of the previous release records
/// keys as text and this release's as ids: each sees the other's keys, so an update is
/// appended once whichever of them takes it, and the next delivery is a repeat for both.
#[tokio::test]
async fn the_previous_release_and_this_one_see_each_others_keys() -> Result<()> {
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    let theirs = update("p1", "s1", 5, "10", 1);
    let ours = update("p1", "s2", 3, "9.5", 2);
    let later = update("p2", "s1", 1, "1", 3);

    let first = recorded_by_previous_release(&t.db, &[&theirs]).await?;
    let outcome = store.append(&[theirs.clone(), ours.clone()]).await?;
    let second = recorded_by_previous_release(&t.db, &[&ours, &later]).await?;
    let again = store.append(std::slice::from_ref(&later)).await?;

    assert_eq!(first, [theirs.update_key.as_str()]);
    assert_eq!(
        (outcome.appended, outcome.duplicates),
        (1, 1),
        "the previous release's key is a repeat here"
    );
    assert_eq!(
        second,
        [later.update_key.as_str()],
        "this release's key is a repeat there"
    );
    assert_eq!(
        (again.appended, again.duplicates),
        (0, 1),
        "and the previous release's newer key here too"
    );
    assert_eq!(count(&t.db, "inventory_update_key_ids").await?, 3);
    assert_eq!(count(&t.db, "inventory_update_keys").await?, 2);
    t.cleanup().await
}

/// Migration 9 copies the keys while the previous release's Persist may be inserting more: an
/// insert in flight when the migration starts is waited for and copied, so its update is a
/// repeat afterwards.
#[tokio::test]
async fn a_key_recorded_while_the_key_ids_migration_starts_is_copied() -> Result<()> {
    let (t, before) = migrated_to_before("m20261207_000009_update_key_ids").await?;
    let known = migration::known();
    let in_flight = update("p1", "s1", 5, "10", 1);
    let writer = t.db.begin().await?;
    writer
        .execute_raw(Statement::from_sql_and_values(
            t.db.get_database_backend(),
            PREVIOUS_RELEASE_KEYS,
            [vec![in_flight.update_key.as_str().to_owned()].into()],
        ))
        .await?;

    let (waited, applied) = migrate_while_held(&t, writer).await?;
    let outcome = PgEventStore::new(t.db.clone())
        .append(std::slice::from_ref(&in_flight))
        .await?;

    assert!(waited, "the migration waits for the insert in flight");
    assert_eq!(applied, known[before..]);
    assert_eq!(
        (outcome.appended, outcome.duplicates),
        (0, 1),
        "the key recorded while the migration started is a repeat"
    );
    t.cleanup().await
}

/// Writers of both releases on the same keys at once, as while the stack updates: the previous
/// release's statement records ids through the trigger in its sorted text order, this release
/// inserts them sorted by id, and the two orders agree, so neither waits on the other in a
/// cycle. Another transaction holds each round's middle key until every writer has queued, so
/// writers taking the keys in different orders would each hold one half and deadlock.
#[tokio::test]
async fn writers_of_both_releases_on_the_same_keys_record_each_once_without_deadlock() -> Result<()>
{
    const ROUNDS: u32 = 3;
    let t = TestDb::new().await?;
    let mut total = 0;
    for r in 0..ROUNDS {
        let round = contended_round(r, 200, 20);
        let blocker = hold_middle_key(&t.db, &round).await?;
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for w in 0..2 {
            let mut mine = round.clone();
            if w == 1 {
                mine.reverse();
            }
            let store = PgEventStore::new(t.connect(1).await?);
            ours.push(tokio::spawn(async move { store.append(&mine).await }));
            let db = t.connect(1).await?;
            let all = round.clone();
            theirs.push(tokio::spawn(async move {
                let refs: Vec<&inventory::InventoryUpdate> = all.iter().collect();
                recorded_by_previous_release(&db, &refs).await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        blocker.rollback().await?;
        let mut recorded = 0;
        for task in ours {
            recorded += task.await??.appended;
        }
        for task in theirs {
            recorded += task.await??.len();
        }
        assert_eq!(
            recorded,
            round.len(),
            "round {r}: each key recorded once in all"
        );
        total += round.len();
    }
    assert_eq!(
        count(&t.db, "inventory_update_key_ids").await?,
        i64::try_from(total)?
    );
    t.cleanup().await
}
