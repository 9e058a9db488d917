//! The event store's retention against real PostgreSQL (pg_partman) and the S3 emulator: a
//! day leaves the database only after every one of its events is in the archive bucket and
//! read back with the same count and checksum; a rebuild afterwards still equals the fold of
//! every event (from the snapshot that covers the dropped days); an export that does not read
//! back, an interrupted run and an event that reached a day after its export drop nothing, and
//! the next run goes on from what was verified.

use crate::event_store::{count, scalar, update};
use crate::partitions::{append_unpartitioned, migrated_to_before};
use anyhow::{Context as _, Result};
use async_trait::async_trait;
use chrono::{Duration, NaiveDate, Utc};
use integration_tests::moto::{MotoS3 as _, MotoServer};
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::{
    LiveSnapshot, PgEventStore, REBUILD_LOCK_KEY, RebuildFrom, latest_snapshot, load_projection,
    rebuild_projection, rebuild_projection_from, retain_event_store, snapshot_live,
};
use inventory::adapters::s3::ArchiveConfig;
use inventory::adapters::s3_export::S3ExportStore;
use inventory::domain::projection::PROJECTION_RULES_VERSION;
use inventory::domain::retention::{
    Checksum, Manifest, RetentionConfig, RetentionReport, gzip_lines, manifest_key,
};
use inventory::ports::{EventStore as _, ExportStore, ObjectKind};
use inventory::{ErrorKind, InventoryUpdate, PipelineError};
use sea_orm::{ConnectionTrait as _, DatabaseConnection, Statement, TransactionTrait as _};
use std::sync::Mutex;
use std::time::Instant;

/// A database whose events were recorded on the given days ago (migrated from the schema
/// before partitioning, which is how events get past days), plus `today` updates appended by
/// persist, and a projection rebuilt from all of them. No snapshot is left. With `gaps`, a
/// `seq` is skipped after each old event, as a transaction that rolled back leaves one.
async fn store_with_days(days: &[(i64, usize)], today: usize, gaps: bool) -> Result<TestDb> {
    let (t, _) = migrated_to_before("m20261206_000006_partition_event_store").await?;
    let mut n = 0u32;
    for (days_ago, events) in days {
        for _ in 0..*events {
            append_unpartitioned(&t.db, &[(feed_update(n), *days_ago)]).await?;
            if gaps {
                t.db.execute_unprepared("SELECT nextval('inventory_events_seq_seq')")
                    .await?;
            }
            n += 1;
        }
    }
    migration::run(&t.db).await?;
    let todays: Vec<InventoryUpdate> = (n..n + u32::try_from(today)?).map(feed_update).collect();
    PgEventStore::new(t.db.clone()).append(&todays).await?;
    rebuild_projection_from(&t.db, RebuildFrom::FirstEvent, |_| async {}).await?;
    t.db.execute_unprepared("DELETE FROM projection_snapshots")
        .await?;
    Ok(t)
}

/// Distinct updates over a few products, newer and older ones mixed.
fn feed_update(i: u32) -> InventoryUpdate {
    update(
        &format!("p{}", i % 4),
        &format!("s{}", i % 3),
        i64::from(i % 7) + 1,
        &format!("{}.25", i % 11),
        (i * 37) % 60,
    )
}

/// (seq, update_key) of the events recorded `days_ago`, in `seq` order.
async fn events_of_day(db: &DatabaseConnection, days_ago: i64) -> Result<Vec<(i64, String)>> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT seq, update_key FROM inventory_events \
             WHERE recorded_at >= date_trunc('day', now() - make_interval(days => $1)) \
               AND recorded_at < date_trunc('day', now() - make_interval(days => $1)) + interval '1 day' \
             ORDER BY seq",
            [i32::try_from(days_ago)?.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "seq")?, r.try_get("", "update_key")?)))
        .collect()
}

fn day_ago(days: i64) -> NaiveDate {
    (Utc::now() - Duration::days(days)).date_naive()
}

fn far() -> Instant {
    Instant::now() + std::time::Duration::from_secs(600)
}

async fn retain(
    db: &DatabaseConnection,
    store: &dyn ExportStore,
    part_events: i64,
) -> Result<RetentionReport, PipelineError> {
    let config = RetentionConfig::new(30)?.with_part_events(part_events);
    retain_event_store(db, store, config, Utc::now(), far()).await
}

/// An export store on the emulator that can lose a line on the way back or refuse a put.
struct Faulty {
    inner: S3ExportStore,
    /// A get of a key containing this returns the object without its last line.
    truncate_get: Mutex<Option<String>>,
    /// A get of a key containing this returns the object with one character more in its
    /// last line: as many lines, another checksum.
    alter_get: Mutex<Option<String>>,
    /// A put of a key containing this fails as S3 being unreachable.
    fail_put: Mutex<Option<String>>,
}

impl Faulty {
    fn new(inner: S3ExportStore) -> Self {
        Self {
            inner,
            truncate_get: Mutex::new(None),
            alter_get: Mutex::new(None),
            fail_put: Mutex::new(None),
        }
    }

    fn set(slot: &Mutex<Option<String>>, value: Option<&str>) {
        *slot.lock().expect("not poisoned") = value.map(str::to_owned);
    }

    fn hits(slot: &Mutex<Option<String>>, key: &str) -> bool {
        slot.lock()
            .expect("not poisoned")
            .as_deref()
            .is_some_and(|k| key.contains(k))
    }
}

#[async_trait]
impl ExportStore for Faulty {
    fn location(&self, key: &str) -> String {
        self.inner.location(key)
    }

    async fn put(&self, key: &str, body: Vec<u8>, kind: ObjectKind) -> Result<(), PipelineError> {
        if Self::hits(&self.fail_put, key) {
            return Err(PipelineError::new(
                ErrorKind::DependencyUnavailable,
                format!("could not write {key}: connection reset"),
            ));
        }
        self.inner.put(key, body, kind).await
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, PipelineError> {
        let mut body = self.inner.get(key).await?;
        if Self::hits(&self.alter_get, key) {
            if key.ends_with(".json") {
                body.push(b' ');
                return Ok(body);
            }
            let (_, mut lines) = Checksum::of_gzip_lines(&body)?;
            if let Some(last) = lines.last_mut() {
                last.push(' ');
            }
            return gzip_lines(lines.iter().map(String::as_str));
        }
        if !Self::hits(&self.truncate_get, key) {
            return Ok(body);
        }
        let (_, mut lines) = Checksum::of_gzip_lines(&body)?;
        lines.pop();
        gzip_lines(lines.iter().map(String::as_str))
    }
}

async fn export_store(purpose: &str) -> Result<(S3ExportStore, aws_sdk_s3::Client)> {
    let moto = MotoServer::shared()?;
    let bucket = moto.create_bucket(purpose).await?;
    let config = ArchiveConfig {
        bucket,
        kms_key_id: None,
    };
    Ok((
        S3ExportStore::new(moto.s3_client(), config),
        moto.s3_client(),
    ))
}

/// The manifest of `day` and the lines of its parts, read from the bucket.
async fn read_export(store: &S3ExportStore, day: NaiveDate) -> Result<(Manifest, Vec<String>)> {
    let manifest: Manifest = serde_json::from_slice(&store.get(&manifest_key(day)).await?)?;
    manifest.check()?;
    let mut lines = Vec::new();
    for part in &manifest.parts {
        let (checksum, part_lines) = Checksum::of_gzip_lines(&store.get(&part.key).await?)?;
        assert_eq!(
            checksum, part.checksum,
            "{} matches its manifest entry",
            part.key
        );
        lines.extend(part_lines);
    }
    Ok((manifest, lines))
}

#[tokio::test]
async fn old_days_leave_only_once_exported_and_verified_and_a_rebuild_still_equals_every_event()
-> Result<()> {
    let t = store_with_days(&[(40, 4), (35, 3), (33, 2), (3, 2)], 3, false).await?;
    let (store, _) = export_store("retention").await?;
    let projection = load_projection(&t.db).await?;
    let leaving = [
        (40, events_of_day(&t.db, 40).await?),
        (35, events_of_day(&t.db, 35).await?),
        (33, events_of_day(&t.db, 33).await?),
    ];
    assert_eq!(leaving.iter().map(|(_, e)| e.len()).sum::<usize>(), 9);
    let max_leaving = leaving
        .iter()
        .flat_map(|(_, e)| e.iter().map(|(s, _)| *s))
        .max()
        .context("events")?;

    // A snapshot that covers only the oldest day: the job must not take it for enough.
    let stale = leaving[0]
        .1
        .iter()
        .map(|(s, _)| *s)
        .max()
        .context("events")?;
    t.db.execute_unprepared(&format!(
        "INSERT INTO projection_snapshots (up_to_seq, rules_version, offers, products) VALUES ({stale}, {PROJECTION_RULES_VERSION}, 0, 0)"
    ))
    .await?;

    let report = retain(&t.db, &store, 2).await?;

    // Days 40 to 31 ago are due (ten days, three of them with events).
    assert_eq!(report.retired_days.len(), 10, "{report:?}");
    assert_eq!(report.retired_days.first(), Some(&day_ago(40)));
    assert_eq!(report.exported_events, 9);
    assert_eq!(report.exported_parts, 2 + 2 + 1, "two events per part");
    assert!(report.complete(), "{report:?}");
    assert_eq!(
        report.oldest_from.map(|d| d.date_naive()),
        Some(day_ago(30))
    );
    let snapshot = latest_snapshot(&t.db)
        .await?
        .context("a snapshot was taken")?;
    assert_eq!(report.snapshot, Some(snapshot.id));
    assert!(
        snapshot.up_to_seq >= max_leaving,
        "the snapshot covers every dropped event"
    );

    for (days_ago, events) in &leaving {
        let (manifest, lines) = read_export(&store, day_ago(*days_ago)).await?;
        assert_eq!(manifest.checksum.events, i64::try_from(events.len())?);
        let exported: Vec<(i64, String)> = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)?;
                Ok((
                    v["seq"].as_i64().context("seq")?,
                    v["update_key"].as_str().context("update_key")?.to_owned(),
                ))
            })
            .collect::<Result<_>>()?;
        assert_eq!(&exported, events, "every event of the day, in seq order");
        // These days were appended before migration 10: the line holds the row's payload, and
        // the typed columns it does not use, as nulls.
        let first: serde_json::Value = serde_json::from_str(&lines[0])?;
        assert!(
            first["payload"].is_object() && first["quantity"].is_null(),
            "the whole row: {}",
            lines[0]
        );
    }
    let empty_day = read_export(&store, day_ago(38)).await?.0;
    assert_eq!((empty_day.checksum.events, empty_day.parts.len()), (0, 0));

    assert_eq!(
        count(&t.db, "inventory_events").await?,
        2 + 3,
        "the kept days"
    );
    assert_eq!(count(&t.db, "event_store_retired_days").await?, 10);
    assert_eq!(
        scalar(
            &t.db,
            "SELECT count(*) FROM inventory_events WHERE recorded_at < now() - interval '30 days'"
        )
        .await?,
        0
    );

    // SPEC invariant 7 after retention: the snapshot plus the events kept is every event.
    rebuild_projection(&t.db).await?;
    assert_eq!(load_projection(&t.db).await?, projection);
    let scratch = rebuild_projection_from(&t.db, RebuildFrom::FirstEvent, |_| async {})
        .await
        .expect_err("the first events are gone");
    assert!(
        scratch.message.contains("have left the database"),
        "{}",
        scratch.message
    );
    assert_eq!(
        load_projection(&t.db).await?,
        projection,
        "a refused rebuild changes nothing"
    );

    let again = retain(&t.db, &store, 2).await?;
    assert_eq!((again.retired_days.len(), again.exported_parts), (0, 0));
    assert!(again.complete());
    t.cleanup().await
}

#[tokio::test]
async fn an_export_that_does_not_verify_or_is_interrupted_drops_nothing_and_the_next_run_goes_on()
-> Result<()> {
    let t = store_with_days(&[(40, 5)], 1, true).await?;
    let (inner, _) = export_store("retention-faults").await?;
    let store = Faulty::new(inner);
    let day = day_ago(40);
    let day_events = events_of_day(&t.db, 40).await?;

    // A run with no time left does nothing and says what is overdue.
    let config = RetentionConfig::new(30)?.with_part_events(2);
    let late = retain_event_store(&t.db, &store, config, Utc::now(), Instant::now()).await?;
    assert_eq!((late.retired_days.len(), late.exported_parts), (0, 0));
    assert_eq!(late.overdue_days, 10);
    assert!(
        late.stopped
            .as_deref()
            .is_some_and(|s| s.contains("time budget")),
        "{late:?}"
    );

    // Part 0 reads back with as many lines but one changed: the checksum sees it.
    Faulty::set(&store.alter_get, Some("part-00000"));
    let err = retain(&t.db, &store, 2)
        .await
        .expect_err("part 0 does not verify");
    assert!(
        err.message.contains("part 0 does not verify"),
        "{}",
        err.message
    );
    assert_eq!(count(&t.db, "event_store_exports").await?, 0);
    Faulty::set(&store.alter_get, None);

    // Part 1 loses a line on the way back: the run fails naming it, part 0 stays verified.
    Faulty::set(&store.truncate_get, Some("part-00001"));
    let err = retain(&t.db, &store, 2)
        .await
        .expect_err("part 1 does not verify");
    assert!(
        err.message.contains("part 1 does not verify"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("nothing was dropped"),
        "{}",
        err.message
    );
    assert_eq!(count(&t.db, "event_store_exports").await?, 1);
    assert_eq!(
        events_of_day(&t.db, 40).await?,
        day_events,
        "the day is whole"
    );

    // Interrupted before the manifest: every part is verified, nothing dropped.
    Faulty::set(&store.truncate_get, None);
    Faulty::set(&store.fail_put, Some("manifest.json"));
    let err = retain(&t.db, &store, 2)
        .await
        .expect_err("the manifest cannot be written");
    assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(
        count(&t.db, "event_store_exports").await?,
        3,
        "parts 1 and 2 added"
    );
    assert_eq!(count(&t.db, "event_store_retired_days").await?, 0);
    Faulty::set(&store.fail_put, None);

    // A manifest that reads back different drops nothing.
    Faulty::set(&store.alter_get, Some("manifest.json"));
    let err = retain(&t.db, &store, 2)
        .await
        .expect_err("the manifest reads back different");
    assert!(
        err.message.contains("reads back different"),
        "{}",
        err.message
    );
    Faulty::set(&store.alter_get, None);

    // The live projection was built under other rules: no snapshot of it is taken under
    // these, and the day waits (the run says why) instead of going without one.
    t.db.execute_unprepared("UPDATE projection_state SET rules_version = 99")
        .await?;
    let other = retain(&t.db, &store, 2).await?;
    assert!(!other.complete());
    assert!(
        other
            .stopped
            .as_deref()
            .is_some_and(|s| s.contains("built under projection rules 99")),
        "{other:?}"
    );
    assert_eq!(count(&t.db, "projection_snapshots").await?, 0);
    t.db.execute_unprepared(&format!(
        "UPDATE projection_state SET rules_version = {PROJECTION_RULES_VERSION}"
    ))
    .await?;

    // While a rebuild holds its lock, nothing is dropped, even with a snapshot that covers
    // the day; the run says why and succeeds.
    let LiveSnapshot::Taken(_) = snapshot_live(&t.db).await? else {
        anyhow::bail!("a snapshot of the live projection");
    };
    let rebuild = t.db.begin().await?;
    rebuild
        .execute_unprepared(&format!("SELECT pg_advisory_xact_lock({REBUILD_LOCK_KEY})"))
        .await?;
    let waiting = retain(&t.db, &store, 2).await?;
    assert!(
        waiting
            .stopped
            .as_deref()
            .is_some_and(|s| s.contains("rebuild is running")),
        "{waiting:?}"
    );
    assert_eq!(count(&t.db, "event_store_retired_days").await?, 0);
    rebuild.rollback().await?;

    // An event commits into the day inside an exported part's range (a seq taken before the
    // export, committed after it): the drop's last check sees it, drops nothing, and forgets
    // the export.
    t.db.execute_unprepared(&format!(
        "INSERT INTO inventory_events (seq, update_key, event_type, event_version, product_id, supplier_id, occurred_at, recorded_at, payload) \
         SELECT seq + 1, repeat('f', 64), event_type, event_version, product_id, supplier_id, occurred_at, recorded_at, payload \
         FROM inventory_events WHERE seq = {}",
        day_events[1].0
    ))
    .await?;
    Faulty::set(&store.fail_put, None);
    let err = retain(&t.db, &store, 2)
        .await
        .expect_err("the day changed after its export");
    assert!(
        err.message.contains(&format!("{day} now holds 6 events")),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("nothing was dropped"),
        "{}",
        err.message
    );
    assert_eq!(
        count(&t.db, "event_store_exports").await?,
        0,
        "the stale export is forgotten"
    );
    assert_eq!(events_of_day(&t.db, 40).await?.len(), 6);

    // The next run exports the day again, all six events, and drops it.
    let done = retain(&t.db, &store, 2).await?;
    assert!(done.complete(), "{done:?}");
    assert_eq!(done.exported_events, 6);
    assert_eq!(done.retired_days.first(), Some(&day));
    let (manifest, lines) = read_export(&store.inner, day).await?;
    assert_eq!((manifest.checksum.events, lines.len()), (6, 6));
    assert_eq!(events_of_day(&t.db, 40).await?.len(), 0);
    assert_eq!(
        scalar(
            &t.db,
            &format!("SELECT events FROM event_store_retired_days WHERE day = '{day}'")
        )
        .await?,
        6
    );
    t.cleanup().await
}
