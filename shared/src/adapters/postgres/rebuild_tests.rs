//! The rebuild against SeaORM's mock connection: which statements it sends in which order,
//! what it reports, and how it fails. The mock has one session, so each of the rebuild's own
//! transactions appears in the log as a savepoint inside the guard's transaction (the one
//! that holds the rebuild lock): `SAVEPOINT` where it begins, `RELEASE SAVEPOINT` where it
//! commits, `ROLLBACK TO SAVEPOINT` where it is abandoned.

use super::*;
use crate::adapters::postgres::mock::{
    affected, parameters, postgres, row, sent, sql, statement_failed,
};
use crate::domain::event::{InventoryUpdateReceived, UpdateKey};
use crate::domain::ids::SupplierId;
use crate::domain::money::{Currency, Price, Quantity};
use crate::domain::update::SourcePosition;
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnAcquireErr, DbErr, MockDatabase, RuntimeErr, Statement, Value};
use std::collections::BTreeMap;

/// The database's answers in the order the rebuild asks for them (the mock keeps one queue
/// for queries and one for other statements; each step adds to the queues it uses).
struct Script(MockDatabase);

impl Script {
    fn new() -> Self {
        Self(postgres())
    }

    fn rows(self, rows: Vec<BTreeMap<String, Value>>) -> Self {
        Self(self.0.append_query_results([rows]))
    }

    fn failing_query(self, e: DbErr) -> Self {
        Self(self.0.append_query_errors([e]))
    }

    fn execs(self, n: usize) -> Self {
        Self(self.0.append_exec_results((0..n).map(|_| affected(0))))
    }

    fn failing_exec(self, e: DbErr) -> Self {
        Self(self.0.append_exec_errors([e]))
    }

    /// `pg_try_advisory_xact_lock` answers `taken`.
    fn lock(self, taken: bool) -> Self {
        self.rows(vec![row([("locked", taken.into())])])
    }

    /// The live tables are in `public`, and the shadow tables are made.
    fn shadow(self) -> Self {
        self.rows(vec![row([("live", "public".into())])]).execs(1)
    }

    /// The newest snapshot of this build's rules, and its restore's two copies.
    fn latest(self, snapshot: Option<SnapshotInfo>) -> Self {
        match snapshot {
            Some(s) => self.rows(vec![info_row(s)]).execs(2),
            None => self.rows(vec![]),
        }
    }

    /// The greatest `seq` that left the database.
    fn retired(self, seq: Option<i64>) -> Self {
        self.rows(vec![row([("seq", Value::BigInt(seq))])])
    }

    /// The store's high-water mark, read under its SHARE lock.
    fn high_water(self, seq: i64) -> Self {
        self.execs(1).max_seq(seq)
    }

    fn max_seq(self, seq: i64) -> Self {
        self.rows(vec![row([("seq", seq.into())])])
    }

    /// The new schema goes first on the `search_path` of a batch's transaction.
    fn search_path(self) -> Self {
        self.execs(1)
    }

    /// One read of events; for events, the read of their products' offers (none yet) and
    /// the write of what changed.
    fn events(self, seqs: &[i64]) -> Self {
        let read = self.stored_events(seqs.iter().map(|&s| stored(s)).collect());
        if seqs.is_empty() {
            read
        } else {
            read.rows(vec![]).rows(vec![])
        }
    }

    /// One read of events answering `models`.
    fn stored_events(self, models: Vec<inventory_event::Model>) -> Self {
        Self(self.0.append_query_results([models]))
    }

    /// The new snapshot is recorded as `snapshot`, its two tables copied, the old ones pruned.
    fn saved(self, snapshot: SnapshotInfo) -> Self {
        self.rows(vec![info_row(snapshot)]).execs(3)
    }

    /// `ANALYZE`.
    fn analyzed(self) -> Self {
        self.execs(1)
    }

    /// The switch locks the live tables, reads the last `seq` and selects the new schema.
    fn switch_from(self, last: i64) -> Self {
        self.execs(1).max_seq(last).search_path()
    }

    /// The switch records the rules version, swaps the tables and counts them.
    fn switched(self, offers: i64, products: i64) -> Self {
        self.execs(2).rows(vec![row([
            ("offers", offers.into()),
            ("products", products.into()),
        ])])
    }

    fn connect(self) -> DatabaseConnection {
        self.0.into_connection()
    }
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0)
        .single()
        .expect("valid time")
}

/// A stored event of product `p{seq % 3}` and supplier `s-1`.
fn stored(seq: i64) -> inventory_event::Model {
    let product_id = ProductId::parse(&format!("p{}", seq % 3)).expect("valid product");
    let supplier_id = SupplierId::parse("s-1").expect("valid supplier");
    let quantity = Quantity::new(seq % 10).expect("valid quantity");
    let price = Price::parse_decimal("12.50").expect("valid price");
    let currency = Currency::parse("EUR").expect("valid currency");
    let occurred_at = at(u32::try_from(seq % 60).expect("minute"));
    let update_key = UpdateKey::for_content(
        &product_id,
        &supplier_id,
        quantity,
        price,
        currency,
        occurred_at,
    );
    let event = InventoryUpdateReceived {
        product_id: product_id.clone(),
        supplier_id: supplier_id.clone(),
        quantity,
        price,
        currency,
        occurred_at,
        occurred_at_from_supplier: true,
        update_id: None,
        source: SourcePosition {
            shard_id: "shard-0".into(),
            sequence_number: seq.to_string(),
            arrived_at: occurred_at,
        },
    };
    crate::adapters::postgres::rows::stored::typed_row(seq, update_key.as_str(), &event)
}

fn snapshot(id: i64, up_to_seq: i64) -> SnapshotInfo {
    SnapshotInfo {
        id,
        up_to_seq,
        rules_version: PROJECTION_RULES_VERSION,
        taken_at: at(0),
        offers: 3,
        products: 2,
    }
}

fn info_row(s: SnapshotInfo) -> BTreeMap<String, Value> {
    row([
        ("id", s.id.into()),
        ("up_to_seq", s.up_to_seq.into()),
        ("rules_version", s.rules_version.into()),
        ("taken_at", s.taken_at.into()),
        ("offers", s.offers.into()),
        ("products", s.products.into()),
    ])
}

/// The one transaction the mock logged (the guard's, with the rebuild's own transactions
/// nested in it as savepoints).
fn statements(db: &DatabaseConnection) -> Vec<Statement> {
    let mut log = sent(db);
    assert_eq!(log.len(), 1, "everything ran under the guard: {log:#?}");
    log.remove(0)
}

/// Asserts that `statements` are, in order, statements starting with `expected`.
fn assert_sequence(statements: &[Statement], expected: &[&str]) {
    let got: Vec<String> = statements.iter().map(sql).collect();
    let matches =
        got.len() == expected.len() && got.iter().zip(expected).all(|(s, e)| s.starts_with(e));
    assert!(
        matches,
        "expected statements starting with\n{expected:#?}\nbut the rebuild sent\n{got:#?}"
    );
}

/// The `(after, upto]` range of each read of events, in order.
fn event_reads(statements: &[Statement]) -> Vec<(i64, i64)> {
    statements
        .iter()
        .filter(|s| sql(s).starts_with(r#"SELECT "inventory_events"."seq""#))
        .map(|s| {
            let p = parameters(s);
            assert_eq!(p.len(), 3, "{p:?}");
            assert_eq!(
                p[2],
                Value::BigUnsigned(Some(REBUILD_BATCH)),
                "the batch limit"
            );
            match (&p[0], &p[1]) {
                (Value::BigInt(Some(after)), Value::BigInt(Some(upto))) => (*after, *upto),
                other => panic!("unexpected range parameters {other:?}"),
            }
        })
        .collect()
}

fn count_starting(statements: &[Statement], prefix: &str) -> usize {
    statements
        .iter()
        .filter(|s| sql(s).starts_with(prefix))
        .count()
}

fn transient() -> DbErr {
    DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)
}

async fn rebuild(
    db: &DatabaseConnection,
    from: RebuildFrom,
) -> (Result<RebuildReport, PipelineError>, Vec<RebuildStage>) {
    let mut stages = Vec::new();
    let result = rebuild_projection_from(db, from, |stage| {
        stages.push(stage);
        std::future::ready(())
    })
    .await;
    (result, stages)
}

const HIGH_WATER: &str = "LOCK TABLE inventory_events IN SHARE MODE";
const MAX_SEQ: &str = "SELECT coalesce(max(seq), 0) AS seq FROM inventory_events";
const SEARCH_PATH: &str = "SET LOCAL search_path TO projection_rebuild, public";
const READ_EVENTS: &str = r#"SELECT "inventory_events"."seq""#;
const LOAD_OFFERS: &str = "SELECT o.product_id";
const WRITE_CHANGE: &str = "WITH offers AS";
const RECORD_SNAPSHOT: &str = "INSERT INTO projection_snapshots";
const LATEST_SNAPSHOT: &str =
    "SELECT id, up_to_seq, rules_version, taken_at, offers, products FROM projection_snapshots";

#[tokio::test]
async fn a_rebuild_from_the_first_event_builds_snapshots_and_switches_in_this_order() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(3)
        .search_path()
        .events(&[1, 2, 3])
        .saved(snapshot(7, 3))
        .high_water(3)
        .analyzed()
        .switch_from(3)
        .switched(2, 1)
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let report = result.expect("rebuild");
    assert_eq!(
        report,
        RebuildReport {
            events: 3,
            caught_up: 0,
            offers: 2,
            products: 1,
            from_snapshot: None,
            snapshot: Some(snapshot(7, 3)),
        }
    );
    assert_eq!(
        stages,
        vec![
            RebuildStage::Built { up_to_seq: 3 },
            RebuildStage::Switching { up_to_seq: 3 }
        ]
    );
    let sent = statements(&db);
    assert_sequence(
        &sent,
        &[
            "BEGIN",
            "SELECT pg_try_advisory_xact_lock($1) AS locked",
            // The shadow schema, made again from the live tables.
            "SAVEPOINT savepoint_1",
            "SELECT quote_ident(relnamespace::regnamespace::text) AS live",
            "DROP SCHEMA IF EXISTS projection_rebuild CASCADE; CREATE SCHEMA projection_rebuild; \
             CREATE TABLE projection_rebuild.product_offers (LIKE public.product_offers INCLUDING ALL);",
            "RELEASE SAVEPOINT savepoint_1",
            // No snapshot is looked for; the retired days are checked.
            "SELECT max(max_seq) AS seq FROM event_store_retired_days",
            // The high-water mark.
            "SAVEPOINT savepoint_1",
            HIGH_WATER,
            MAX_SEQ,
            "RELEASE SAVEPOINT savepoint_1",
            // The build: one batch.
            "SAVEPOINT savepoint_1",
            SEARCH_PATH,
            READ_EVENTS,
            LOAD_OFFERS,
            WRITE_CHANGE,
            "RELEASE SAVEPOINT savepoint_1",
            // The snapshot for the next rebuild, in one transaction.
            "SAVEPOINT savepoint_1",
            RECORD_SNAPSHOT,
            "INSERT INTO projection_snapshot_offers",
            "INSERT INTO projection_snapshot_summaries",
            "DELETE FROM projection_snapshots",
            "RELEASE SAVEPOINT savepoint_1",
            // One catch-up look: nothing new.
            "SAVEPOINT savepoint_1",
            HIGH_WATER,
            MAX_SEQ,
            "RELEASE SAVEPOINT savepoint_1",
            "ANALYZE projection_rebuild.product_offers, projection_rebuild.product_summaries",
            // The switch, in persist's lock order.
            "SAVEPOINT savepoint_1",
            "LOCK TABLE public.product_summaries, public.inventory_events, public.product_offers IN EXCLUSIVE MODE",
            MAX_SEQ,
            SEARCH_PATH,
            "UPDATE projection_state SET rules_version = $1",
            "SET LOCAL search_path TO public; \
             LOCK TABLE public.product_summaries, public.product_offers IN ACCESS EXCLUSIVE MODE; \
             DROP TABLE public.product_offers, public.product_summaries; \
             ALTER TABLE projection_rebuild.product_offers SET SCHEMA public; \
             ALTER TABLE projection_rebuild.product_summaries SET SCHEMA public; \
             DROP SCHEMA projection_rebuild;",
            "SELECT (SELECT count(*) FROM product_offers) AS offers",
            "RELEASE SAVEPOINT savepoint_1",
            "COMMIT",
        ],
    );
    assert_eq!(parameters(&sent[1]), vec![Value::from(REBUILD_LOCK_KEY)]);
    assert_eq!(event_reads(&sent), vec![(0, 3)]);
    let load = sent
        .iter()
        .find(|s| sql(s).starts_with(LOAD_OFFERS))
        .expect("offers loaded");
    assert_eq!(
        parameters(load),
        vec![Value::from(vec![
            "p0".to_owned(),
            "p1".to_owned(),
            "p2".to_owned()
        ])],
        "the batch's products, each once"
    );
    let record = sent
        .iter()
        .find(|s| sql(s).starts_with(RECORD_SNAPSHOT))
        .expect("snapshot recorded");
    assert_eq!(
        parameters(record),
        vec![Value::from(3_i64), Value::from(PROJECTION_RULES_VERSION)],
        "the snapshot holds every event up to the high-water mark, under this build's rules"
    );
    let rules = sent
        .iter()
        .find(|s| sql(s).starts_with("UPDATE projection_state"))
        .expect("rules recorded");
    assert_eq!(
        parameters(rules),
        vec![Value::from(PROJECTION_RULES_VERSION)]
    );
}

#[tokio::test]
async fn events_are_read_in_seq_batches_each_its_own_transaction_and_later_ones_are_caught_up() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(12_000)
        // (0, 5000]: ends on its last seq.
        .search_path()
        .events(&[5_000])
        // (5000, 10000]: a gap after 7000, so one more read finds nothing.
        .search_path()
        .events(&[7_000])
        .events(&[])
        // (10000, 12000]
        .search_path()
        .events(&[12_000])
        .saved(snapshot(1, 12_000))
        // Catch-up: 8000 more, more than a batch: replayed outside the switch.
        .high_water(20_000)
        .search_path()
        .events(&[13_000])
        .events(&[])
        .search_path()
        .events(&[20_000])
        // 100 more: few enough for the switch.
        .high_water(20_100)
        .analyzed()
        .switch_from(20_150)
        .events(&[20_150])
        .switched(6, 3)
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let report = result.expect("rebuild");
    assert_eq!((report.events, report.caught_up), (6, 3));
    assert_eq!(report.snapshot, Some(snapshot(1, 12_000)));
    assert_eq!(
        stages,
        vec![
            RebuildStage::Built { up_to_seq: 12_000 },
            RebuildStage::Switching { up_to_seq: 20_150 }
        ],
        "built up to the first mark; the switch takes everything up to the last event"
    );
    let sent = statements(&db);
    assert_eq!(
        event_reads(&sent),
        vec![
            (0, 5_000),
            (5_000, 10_000),
            (7_000, 10_000),
            (10_000, 12_000),
            (12_000, 17_000),
            (13_000, 17_000),
            (17_000, 20_000),
            (20_000, 20_150),
        ],
        "the switch replays from the last mark applied, not from the last one read"
    );
    assert_eq!(
        count_starting(&sent, "SAVEPOINT"),
        1 + 1 + 3 + 1 + 1 + 2 + 1 + 1,
        "shadow, mark, 3 build batches, snapshot, mark, 2 catch-up batches, mark, switch"
    );
    assert_eq!(count_starting(&sent, "ROLLBACK"), 0);
}

#[tokio::test]
async fn the_catch_up_gives_up_after_five_rounds_and_the_switch_takes_the_rest() {
    let mut script = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(0)
        .saved(snapshot(1, 0));
    // The store keeps growing by more than a batch between every two looks.
    for round in 1..=5_i64 {
        script = script
            .high_water(round * 6_000)
            .search_path()
            .events(&[])
            .search_path()
            .events(&[]);
    }
    let db = script
        .analyzed()
        .switch_from(36_000)
        .events(&[36_000])
        .switched(1, 1)
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let report = result.expect("rebuild");
    assert_eq!((report.events, report.caught_up), (1, 1));
    assert_eq!(stages[1], RebuildStage::Switching { up_to_seq: 36_000 });
    let sent = statements(&db);
    assert_eq!(
        count_starting(&sent, HIGH_WATER),
        1 + 5,
        "the first mark and five catch-up rounds, no sixth"
    );
    assert_eq!(
        event_reads(&sent).last(),
        Some(&(30_000, 36_000)),
        "the switch replays everything after the fifth round's mark"
    );
}

#[tokio::test]
async fn a_lag_of_one_batch_or_less_is_left_to_the_switch() {
    let batch = i64::try_from(REBUILD_BATCH).expect("fits");
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(0)
        .saved(snapshot(1, 0))
        // Exactly one batch appended since the mark: no catch-up round.
        .high_water(batch)
        .analyzed()
        .switch_from(batch)
        .events(&[batch])
        .switched(1, 1)
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let report = result.expect("rebuild");
    assert_eq!((report.events, report.caught_up), (1, 1));
    assert_eq!(stages[1], RebuildStage::Switching { up_to_seq: batch });
    let sent = statements(&db);
    assert_eq!(count_starting(&sent, HIGH_WATER), 2);
    assert_eq!(
        event_reads(&sent),
        vec![(0, batch)],
        "read once, inside the switch"
    );
}

#[tokio::test]
async fn a_rebuild_from_the_latest_snapshot_restores_it_and_replays_only_the_later_events() {
    let from = snapshot(4, 100);
    let db = Script::new()
        .lock(true)
        .shadow()
        .latest(Some(from))
        // The days that left the database are all in the snapshot.
        .retired(Some(100))
        .high_water(130)
        .search_path()
        .events(&[101, 130])
        .saved(snapshot(5, 130))
        .high_water(130)
        .analyzed()
        .switch_from(130)
        .switched(4, 3)
        .connect();

    let (result, _) = rebuild(&db, RebuildFrom::LatestSnapshot).await;

    let report = result.expect("rebuild");
    assert_eq!(report.from_snapshot, Some(from));
    assert_eq!(report.snapshot, Some(snapshot(5, 130)));
    assert_eq!((report.events, report.caught_up), (2, 0));
    let sent = statements(&db);
    assert_sequence(
        &sent[6..12],
        &[
            "SELECT id, up_to_seq, rules_version, taken_at, offers, products FROM projection_snapshots WHERE rules_version = $1",
            "SAVEPOINT savepoint_1",
            "INSERT INTO projection_rebuild.product_offers (product_id, supplier_id,",
            "INSERT INTO projection_rebuild.product_summaries (product_id, total_quantity,",
            "RELEASE SAVEPOINT savepoint_1",
            "SELECT max(max_seq) AS seq FROM event_store_retired_days",
        ],
    );
    assert_eq!(
        parameters(&sent[6]),
        vec![Value::from(PROJECTION_RULES_VERSION)]
    );
    assert_eq!(
        parameters(&sent[8]),
        vec![Value::from(4_i64)],
        "snapshot 4's rows"
    );
    assert_eq!(
        parameters(&sent[9]),
        vec![Value::from(4_i64)],
        "snapshot 4's rows"
    );
    assert_eq!(event_reads(&sent), vec![(100, 130)]);
}

#[tokio::test]
async fn a_rebuild_that_finds_nothing_after_its_snapshot_stores_no_copy_of_it() {
    let from = snapshot(4, 130);
    let db = Script::new()
        .lock(true)
        .shadow()
        .latest(Some(from))
        .retired(None)
        .high_water(130)
        .high_water(130)
        .analyzed()
        .switch_from(130)
        .switched(4, 3)
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::LatestSnapshot).await;

    let report = result.expect("rebuild");
    assert_eq!(report.from_snapshot, Some(from));
    assert_eq!(report.snapshot, None);
    assert_eq!(report.events, 0);
    assert_eq!(stages[0], RebuildStage::Built { up_to_seq: 130 });
    let sent = statements(&db);
    assert_eq!(count_starting(&sent, RECORD_SNAPSHOT), 0);
    assert!(event_reads(&sent).is_empty());
}

#[tokio::test]
async fn a_rebuild_from_the_first_event_looks_for_no_snapshot() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(2)
        .search_path()
        .events(&[1, 2])
        .saved(snapshot(9, 2))
        .high_water(2)
        .analyzed()
        .switch_from(2)
        .switched(2, 2)
        .connect();

    let (result, _) = rebuild(&db, RebuildFrom::FirstEvent).await;

    assert_eq!(result.expect("rebuild").from_snapshot, None);
    let sent = statements(&db);
    assert_eq!(
        count_starting(&sent, LATEST_SNAPSHOT),
        0,
        "no snapshot is read"
    );
    assert_eq!(event_reads(&sent), vec![(0, 2)]);
}

#[tokio::test]
async fn an_empty_store_is_rebuilt_to_an_empty_projection_with_a_snapshot_at_zero() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .latest(None)
        .retired(None)
        .high_water(0)
        .saved(snapshot(1, 0))
        .high_water(0)
        .analyzed()
        .switch_from(0)
        .switched(0, 0)
        .connect();

    let mut stages = Vec::new();
    let report = rebuild_projection_observed(&db, |stage| {
        stages.push(stage);
        std::future::ready(())
    })
    .await
    .expect("rebuild");

    assert_eq!(
        report,
        RebuildReport {
            snapshot: Some(snapshot(1, 0)),
            ..RebuildReport::default()
        }
    );
    assert_eq!(
        stages,
        vec![
            RebuildStage::Built { up_to_seq: 0 },
            RebuildStage::Switching { up_to_seq: 0 }
        ]
    );
    let sent = statements(&db);
    assert!(event_reads(&sent).is_empty(), "no event to read");
    assert_eq!(
        count_starting(&sent, LATEST_SNAPSHOT),
        1,
        "the observed rebuild starts from the latest snapshot"
    );
}

#[tokio::test]
async fn the_plain_rebuild_starts_from_the_latest_snapshot() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .latest(Some(snapshot(2, 10)))
        .retired(None)
        .high_water(10)
        .high_water(10)
        .analyzed()
        .switch_from(10)
        .switched(1, 1)
        .connect();

    let report = rebuild_projection(&db).await.expect("rebuild");

    assert_eq!(report.from_snapshot, Some(snapshot(2, 10)));
    assert_eq!((report.offers, report.products), (1, 1));
}

#[tokio::test]
async fn a_rebuild_while_another_runs_is_a_conflict_and_touches_nothing() {
    let db = Script::new().lock(false).connect();

    let (result, stages) = rebuild(&db, RebuildFrom::LatestSnapshot).await;

    let e = result.expect_err("the lock is held");
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(
        e.message.contains("another projection rebuild is running"),
        "{e:?}"
    );
    assert!(stages.is_empty());
    let sent = statements(&db);
    assert_sequence(
        &sent,
        &["BEGIN", "SELECT pg_try_advisory_xact_lock($1)", "ROLLBACK"],
    );
    assert_eq!(parameters(&sent[1]), vec![Value::from(REBUILD_LOCK_KEY)]);
}

#[tokio::test]
async fn a_lock_that_cannot_be_asked_for_is_a_transient_failure() {
    let db = Script::new().failing_query(transient()).connect();

    let (result, _) = rebuild(&db, RebuildFrom::LatestSnapshot).await;

    let e = result.expect_err("no lock");
    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(e.message, "could not take the rebuild lock");
}

#[tokio::test]
async fn a_rebuild_from_the_first_event_after_retention_stops_before_reading_the_store() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(Some(50))
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let e = result.expect_err("events are missing");
    assert_eq!(e.kind, ErrorKind::Internal, "retrying cannot help");
    assert!(
        e.message
            .starts_with("events up to seq 50 have left the database")
            && e.message
                .contains("rebuild from the newest snapshot (without --from-scratch)"),
        "{}",
        e.message
    );
    assert!(stages.is_empty());
    let sent = statements(&db);
    assert_eq!(count_starting(&sent, HIGH_WATER), 0);
    assert_eq!(sql(sent.last().expect("statements")), "ROLLBACK");
}

#[tokio::test]
async fn a_snapshot_older_than_the_retired_days_cannot_start_a_rebuild() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .latest(Some(snapshot(3, 40)))
        .retired(Some(50))
        .connect();

    let (result, _) = rebuild(&db, RebuildFrom::LatestSnapshot).await;

    let e = result.expect_err("events are missing");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(
        e.message.contains(&format!(
            "the newest snapshot of projection rules {PROJECTION_RULES_VERSION} reaches only seq 40"
        )) && e.message.contains("restore the exported days first"),
        "{}",
        e.message
    );
    assert_eq!(count_starting(&statements(&db), HIGH_WATER), 0);
}

#[tokio::test]
async fn a_snapshot_beyond_the_end_of_the_store_asks_for_a_rebuild_from_scratch() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .latest(Some(snapshot(3, 100)))
        .retired(None)
        .high_water(50)
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::LatestSnapshot).await;

    let e = result.expect_err("the snapshot is ahead of the store");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(
        e.message,
        "the newest snapshot reaches event 100, but the event store ends at 50: rebuild with --from-scratch"
    );
    assert!(stages.is_empty());
    assert!(event_reads(&statements(&db)).is_empty());
}

#[tokio::test]
async fn a_snapshot_that_cannot_be_stored_does_not_stop_the_rebuild() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(1)
        .search_path()
        .events(&[1])
        .failing_query(statement_failed(
            "could not extend file: No space left on device",
        ))
        .high_water(1)
        .analyzed()
        .switch_from(1)
        .switched(1, 1)
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let report = result.expect("the rebuild goes on");
    assert_eq!(report.snapshot, None);
    assert_eq!(report.events, 1);
    assert_eq!(stages.len(), 2);
    let sent = statements(&db);
    let record = sent
        .iter()
        .position(|s| sql(s).starts_with(RECORD_SNAPSHOT))
        .expect("a snapshot was attempted");
    assert_sequence(
        &sent[record..=record + 1],
        &[RECORD_SNAPSHOT, "ROLLBACK TO SAVEPOINT savepoint_1"],
    );
    assert_eq!(sql(sent.last().expect("statements")), "COMMIT");
}

#[tokio::test]
async fn a_batch_that_cannot_be_read_fails_the_rebuild_before_the_switch() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(10)
        .search_path()
        .failing_query(transient())
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let e = result.expect_err("the read failed");
    assert_eq!(e.kind, ErrorKind::DependencyUnavailable, "worth retrying");
    assert_eq!(e.message, "could not read events");
    assert!(stages.is_empty());
    let sent = statements(&db);
    let n = sent.len();
    assert_sequence(
        &sent[n - 3..],
        &[READ_EVENTS, "ROLLBACK TO SAVEPOINT savepoint_1", "ROLLBACK"],
    );
    assert_eq!(count_starting(&sent, "ANALYZE"), 0);
}

#[tokio::test]
async fn a_stored_event_this_build_does_not_know_fails_the_rebuild_naming_it() {
    let mut unknown = stored(8);
    unknown.event_type = "PriceWithdrawn".into();
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(8)
        .search_path()
        .stored_events(vec![unknown])
        .connect();

    let (result, _) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let e = result.expect_err("unknown event");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(
        e.message.contains("event 8 is PriceWithdrawn v1"),
        "{}",
        e.message
    );
    assert_eq!(count_starting(&statements(&db), LOAD_OFFERS), 0);
}

#[tokio::test]
async fn a_shadow_schema_that_cannot_be_made_fails_the_rebuild_with_its_kind() {
    let db = Script::new()
        .lock(true)
        .rows(vec![row([("live", "public".into())])])
        .failing_exec(DbErr::Conn(RuntimeErr::Internal("connection reset".into())))
        .connect();

    let (result, _) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let e = result.expect_err("no shadow");
    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(e.message, "could not make the tables of the new projection");
    let sent = statements(&db);
    let n = sent.len();
    assert_sequence(
        &sent[n - 2..],
        &["ROLLBACK TO SAVEPOINT savepoint_1", "ROLLBACK"],
    );
}

#[tokio::test]
async fn a_failed_swap_leaves_the_switch_uncommitted() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(0)
        .saved(snapshot(1, 0))
        .high_water(0)
        .analyzed()
        .switch_from(0)
        .execs(1)
        .failing_exec(DbErr::Conn(RuntimeErr::Internal("connection reset".into())))
        .connect();

    let (result, stages) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let e = result.expect_err("the swap failed");
    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(e.message, "could not switch to the rebuilt projection");
    assert_eq!(
        stages,
        vec![
            RebuildStage::Built { up_to_seq: 0 },
            RebuildStage::Switching { up_to_seq: 0 }
        ]
    );
    let sent = statements(&db);
    let n = sent.len();
    assert_sequence(
        &sent[n - 3..],
        &[
            "SET LOCAL search_path TO public;",
            "ROLLBACK TO SAVEPOINT savepoint_1",
            "ROLLBACK",
        ],
    );
}

#[tokio::test]
async fn a_count_with_no_row_fails_the_switch() {
    let db = Script::new()
        .lock(true)
        .shadow()
        .retired(None)
        .high_water(0)
        .saved(snapshot(1, 0))
        .high_water(0)
        .analyzed()
        .switch_from(0)
        .execs(2)
        .rows(vec![])
        .connect();

    let (result, _) = rebuild(&db, RebuildFrom::FirstEvent).await;

    let e = result.expect_err("no count");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "the count returned no row");
    let sent = statements(&db);
    let n = sent.len();
    assert_sequence(
        &sent[n - 2..],
        &["ROLLBACK TO SAVEPOINT savepoint_1", "ROLLBACK"],
    );
    assert_eq!(count_starting(&sent, "COMMIT"), 0);
}

#[tokio::test]
async fn projection_counts_decode_each_column_and_report_a_missing_one() {
    let db = Script::new()
        .rows(vec![row([
            ("offers", 12_i64.into()),
            ("products", 5_i64.into()),
        ])])
        .rows(vec![row([("offers", 12_i64.into())])])
        .connect();
    let txn = db.begin().await.expect("begin");

    assert_eq!(projection_counts(&txn).await.expect("counts"), (12, 5));
    let e = projection_counts(&txn)
        .await
        .expect_err("no products column");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "could not count the projection");
}
