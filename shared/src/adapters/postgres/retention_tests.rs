//! The retention job against a scripted database and an in-memory archive: which days go,
//! in which order its statements run, what is bound to them, and what stops or fails a run.

use super::*;
use crate::adapters::postgres::mock::{
    affected, parameters, postgres, row, sent, server_error, sql, statement_failed,
};
use crate::adapters::postgres::rebuild::REBUILD_LOCK_KEY;
use crate::domain::projection::PROJECTION_RULES_VERSION;
use async_trait::async_trait;
use sea_orm::{DbErr, MockDatabase, Statement, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

// ---- the archive ----------------------------------------------------------------------------

/// How an object comes back from [`MemoryExports::get`].
#[derive(Clone, Copy)]
enum ReadBack {
    /// As written.
    Same,
    /// One character more in its last line (a manifest: one byte more): as many lines,
    /// another checksum.
    Altered,
    /// Without its last line.
    Truncated,
}

/// An [`ExportStore`] in memory: keeps what it is given, can refuse the put of a key or give
/// a key back changed, and can take its time over a put.
struct MemoryExports {
    objects: Mutex<BTreeMap<String, (Vec<u8>, ObjectKind)>>,
    /// A put of a key containing this fails as S3 being unreachable.
    fail_put: Option<&'static str>,
    /// A get of a key containing this comes back so.
    read_back: Option<(&'static str, ReadBack)>,
    /// Each put takes this long.
    slow_put: Option<Duration>,
}

impl MemoryExports {
    fn new() -> Self {
        Self {
            objects: Mutex::new(BTreeMap::new()),
            fail_put: None,
            read_back: None,
            slow_put: None,
        }
    }

    fn failing_put(key: &'static str) -> Self {
        Self {
            fail_put: Some(key),
            ..Self::new()
        }
    }

    fn reading_back(key: &'static str, how: ReadBack) -> Self {
        Self {
            read_back: Some((key, how)),
            ..Self::new()
        }
    }

    fn keys(&self) -> Vec<String> {
        self.objects
            .lock()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect()
    }

    fn object(&self, key: &str) -> (Vec<u8>, ObjectKind) {
        self.objects
            .lock()
            .expect("not poisoned")
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("no object {key}"))
    }

    fn lines(&self, key: &str) -> Vec<String> {
        let (body, kind) = self.object(key);
        assert_eq!(kind, ObjectKind::GzipJsonLines, "{key}");
        Checksum::of_gzip_lines(&body).expect("gzip lines").1
    }

    fn manifest(&self, day: NaiveDate) -> Manifest {
        let (body, kind) = self.object(&manifest_key(day));
        assert_eq!(kind, ObjectKind::Json);
        serde_json::from_slice(&body).expect("a manifest")
    }
}

#[async_trait]
impl ExportStore for MemoryExports {
    fn location(&self, key: &str) -> String {
        format!("s3://archive/{key}")
    }

    async fn put(&self, key: &str, body: Vec<u8>, kind: ObjectKind) -> Result<(), PipelineError> {
        if let Some(pause) = self.slow_put {
            std::thread::sleep(pause);
        }
        if self.fail_put.is_some_and(|k| key.contains(k)) {
            return Err(PipelineError::new(
                ErrorKind::DependencyUnavailable,
                format!("could not write {key}: connection reset"),
            ));
        }
        self.objects
            .lock()
            .expect("not poisoned")
            .insert(key.to_owned(), (body, kind));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, PipelineError> {
        let (mut body, _) = self.object(key);
        let how = match self.read_back {
            Some((k, how)) if key.contains(k) => how,
            _ => ReadBack::Same,
        };
        if key.ends_with(".json") {
            if !matches!(how, ReadBack::Same) {
                body.push(b' ');
            }
            return Ok(body);
        }
        let (_, mut lines) = Checksum::of_gzip_lines(&body)?;
        match how {
            ReadBack::Same => return Ok(body),
            ReadBack::Altered => lines.last_mut().expect("a line").push(' '),
            ReadBack::Truncated => {
                lines.pop();
            }
        }
        gzip_lines(lines.iter().map(String::as_str))
    }
}

// ---- the database's answers -----------------------------------------------------------------

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("a time")
}

/// The run's clock: with 30 days kept, partitions ending by 2026-11-07 are due.
fn now() -> DateTime<Utc> {
    at("2026-12-07T10:00:00Z")
}

fn cutoff() -> DateTime<Utc> {
    at("2026-11-07T00:00:00Z")
}

fn config() -> RetentionConfig {
    RetentionConfig::new(30).expect("valid").with_part_events(2)
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).expect("a day")
}

fn next_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 2).expect("a day")
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

fn table(d: NaiveDate) -> String {
    format!("public.inventory_events_p{}", d.format("%Y%m%d"))
}

const LINE_11: &str = r#"{"seq": 11, "update_key": "a"}"#;
const LINE_12: &str = r#"{"seq": 12, "update_key": "b"}"#;
const LINE_13: &str = r#"{"seq": 13, "update_key": "c"}"#;

fn checksum_of(lines: &[&str]) -> Checksum {
    let mut c = Checksum::default();
    lines.iter().for_each(|l| c.add_line(l));
    c
}

/// The database's answers, in the order the job asks (queries and executions are two
/// queues, each consumed in order).
struct Script(MockDatabase);

type Row = BTreeMap<String, Value>;

impl Script {
    fn new() -> Self {
        Self(postgres())
    }

    fn rows(self, rows: Vec<Row>) -> Self {
        Self(self.0.append_query_results([rows]))
    }

    fn one(self, r: Row) -> Self {
        self.rows(vec![r])
    }

    fn exec(self, rows: u64) -> Self {
        Self(self.0.append_exec_results([affected(rows)]))
    }

    fn query_fails(self, e: DbErr) -> Self {
        Self(self.0.append_query_errors([e]))
    }

    fn exec_fails(self, e: DbErr) -> Self {
        Self(self.0.append_exec_errors([e]))
    }

    fn connect(self) -> DatabaseConnection {
        self.0.into_connection()
    }

    /// The answer to `pg_try_advisory_xact_lock` (the retention's or the rebuild's lock).
    fn lock(self, locked: bool) -> Self {
        self.one(row([("locked", locked.into())]))
    }

    /// The due partitions, one per day.
    fn due(self, days: &[NaiveDate]) -> Self {
        self.rows(
            days.iter()
                .map(|&d| {
                    row([
                        ("tbl", table(d).into()),
                        ("day_from", midnight(d).into()),
                        ("day_to", midnight(d + chrono::Days::new(1)).into()),
                    ])
                })
                .collect(),
        )
    }

    fn verified(self, parts: &[ExportPart]) -> Self {
        self.rows(
            parts
                .iter()
                .map(|p| {
                    row([
                        ("part", i32::try_from(p.part).expect("small").into()),
                        ("after_seq", p.after_seq.into()),
                        ("up_to_seq", p.up_to_seq.into()),
                        ("events", p.checksum.events.into()),
                        ("checksum", p.checksum.sum.to_string().into()),
                        ("object_key", p.key.clone().into()),
                    ])
                })
                .collect(),
        )
    }

    fn checksum(self, c: Checksum) -> Self {
        self.one(row([
            ("events", c.events.into()),
            ("sum", c.sum.to_string().into()),
        ]))
    }

    /// A part's read: the session's time zone, the events, and the database's checksum of
    /// them.
    fn read_part(self, events: &[(i64, &str)], in_db: Checksum) -> Self {
        self.exec(0)
            .rows(
                events
                    .iter()
                    .map(|&(seq, line)| row([("seq", seq.into()), ("line", line.into())]))
                    .collect(),
            )
            .checksum(in_db)
    }

    /// A part read and recorded as verified.
    fn part(self, events: &[(i64, &str)]) -> Self {
        let lines: Vec<&str> = events.iter().map(|(_, l)| *l).collect();
        self.read_part(events, checksum_of(&lines)).exec(1)
    }

    /// No event left after the last part.
    fn nothing_left(self) -> Self {
        self.exec(0).rows(vec![])
    }

    fn snapshot(self, snapshot: Option<(i64, i64)>) -> Self {
        self.rows(snapshot.map(snapshot_row).into_iter().collect())
    }

    /// [`snapshot_live`] taking snapshot `id` at `up_to_seq`.
    fn snapshot_taken(self, id: i64, up_to_seq: i64) -> Self {
        self.lock(true)
            .one(row([("rules_version", PROJECTION_RULES_VERSION.into())]))
            .exec(0)
            .one(row([
                ("seq", up_to_seq.into()),
                ("snapshot", "00000003-0000001B-1".into()),
            ]))
            .exec(0)
            .one(row([("live", "public".into())]))
            .one(snapshot_row((id, up_to_seq)))
            .exec(10)
            .exec(4)
            .exec(1)
    }

    /// The drop's transaction up to its last check: time zone, rebuild lock, partition lock,
    /// the partition's checksum.
    fn drop_checked(self, in_db: Checksum) -> Self {
        self.exec(0).lock(true).exec(0).checksum(in_db)
    }

    /// The day recorded as retired and its partition dropped.
    fn dropped(self) -> Self {
        self.exec(1).exec(0)
    }

    fn oldest(self, from: Option<DateTime<Utc>>) -> Self {
        self.one(row([("oldest_from", from.into())]))
    }

    /// A due `day()` exported as one part of events 11 and 12, and its manifest.
    fn one_day_exported(self) -> Self {
        self.lock(true)
            .due(&[day()])
            .verified(&[])
            .part(&[(11, LINE_11), (12, LINE_12)])
            .nothing_left()
    }

    /// [`Self::one_day_exported`], covered by snapshot 7.
    fn one_day_up_to_the_drop(self) -> Self {
        self.one_day_exported().snapshot(Some((7, 12)))
    }
}

fn snapshot_row((id, up_to_seq): (i64, i64)) -> Row {
    row([
        ("id", id.into()),
        ("up_to_seq", up_to_seq.into()),
        ("rules_version", PROJECTION_RULES_VERSION.into()),
        ("taken_at", at("2026-12-07T09:00:00Z").into()),
        ("offers", 10i64.into()),
        ("products", 4i64.into()),
    ])
}

fn part0() -> ExportPart {
    ExportPart {
        part: 0,
        key: part_key(day(), 0),
        after_seq: 0,
        up_to_seq: 12,
        checksum: checksum_of(&[LINE_11, LINE_12]),
    }
}

// ---- what the job sent ----------------------------------------------------------------------

/// Every statement sent, in order, whitespace folded.
fn statements(db: &DatabaseConnection) -> Vec<Statement> {
    sent(db).concat()
}

fn texts(stmts: &[Statement]) -> Vec<String> {
    stmts.iter().map(sql).collect()
}

/// Asserts that the statements start, one for one, with these prefixes.
fn assert_sequence(stmts: &[Statement], expected: &[&str]) {
    let texts = texts(stmts);
    assert_eq!(
        texts.len(),
        expected.len(),
        "statements sent:\n{}",
        texts.join("\n")
    );
    for (text, prefix) in texts.iter().zip(expected) {
        assert!(
            text.starts_with(prefix),
            "expected {prefix:?}, sent {text:?}; all:\n{}",
            texts.join("\n")
        );
    }
}

/// The only statement that starts with `prefix`.
fn the<'a>(stmts: &'a [Statement], prefix: &str) -> &'a Statement {
    let found: Vec<&Statement> = stmts
        .iter()
        .filter(|s| sql(s).starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "{prefix:?} in {:#?}", texts(stmts));
    found[0]
}

fn none_starts_with(stmts: &[Statement], prefix: &str) -> bool {
    !stmts.iter().any(|s| sql(s).starts_with(prefix))
}

const LOCK: &str = "SELECT pg_try_advisory_xact_lock($1) AS locked";
const DUE: &str = "SELECT quote_ident(p.partition_schemaname)";
const VERIFIED: &str = "SELECT part, after_seq, up_to_seq, events, checksum::text";
const UTC: &str = "SET LOCAL TIME ZONE 'UTC'";
const EVENTS: &str = "SELECT seq, to_jsonb(e)::text AS line FROM public.inventory_events_p20261001 e WHERE seq > $1 ORDER BY seq LIMIT $2";
const CHECKSUM: &str = "SELECT count(*)::bigint AS events";
const RECORD: &str = "INSERT INTO event_store_exports";
const LATEST: &str =
    "SELECT id, up_to_seq, rules_version, taken_at, offers, products FROM projection_snapshots";
const LOCK_PARTITION: &str =
    "SET LOCAL lock_timeout = '2s'; LOCK TABLE public.inventory_events_p20261001 IN SHARE MODE";
const RETIRE: &str = "INSERT INTO event_store_retired_days";
const DROP: &str = "DROP TABLE public.inventory_events_p20261001";
const FORGET: &str = "DELETE FROM event_store_exports WHERE day = $1";
/// The check of the whole partition, before its drop.
fn checksum_all() -> String {
    sql(&stmt(&checksum_sql(&table(day()), "true"), vec![]))
}

const OLDEST: &str = "SELECT min(i.child_start_time) AS oldest_from";

async fn run(
    db: &DatabaseConnection,
    store: &MemoryExports,
) -> Result<RetentionReport, PipelineError> {
    retain_event_store(db, store, config(), now(), far()).await
}

// ---- runs with nothing to do ----------------------------------------------------------------

#[tokio::test]
async fn nothing_due_is_a_complete_run_that_releases_its_lock_and_reports_the_oldest_day() {
    let oldest = at("2026-11-08T00:00:00Z");
    let db = Script::new()
        .lock(true)
        .due(&[])
        .oldest(Some(oldest))
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run");

    assert_eq!(
        report,
        RetentionReport {
            cutoff: Some(cutoff()),
            oldest_from: Some(oldest),
            ..RetentionReport::default()
        }
    );
    assert!(report.complete());
    let sent = sent(&db);
    assert_eq!(sent.len(), 2, "the locked run, then the oldest day's read");
    assert_sequence(&sent[0], &["BEGIN", LOCK, DUE, "COMMIT"]);
    assert_sequence(&sent[1], &[OLDEST]);
    assert_eq!(
        parameters(&sent[0][1]),
        vec![Value::from(RETENTION_LOCK_KEY)]
    );
    assert_eq!(
        parameters(&sent[0][2]),
        vec![Value::from(EVENT_STORE_PARENT), Value::from(cutoff())]
    );
    assert_eq!(
        parameters(&sent[1][0]),
        vec![Value::from(EVENT_STORE_PARENT)]
    );
    assert!(store.keys().is_empty());
}

#[tokio::test]
async fn another_run_holding_the_lock_leaves_every_due_day_and_says_so() {
    let db = Script::new()
        .lock(false)
        .due(&[day(), next_day()])
        .oldest(Some(midnight(day())))
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run that does nothing");

    assert_eq!(report.overdue_days, 2);
    assert!(!report.complete());
    assert_eq!(
        report.stopped.as_deref(),
        Some("another retention run holds the lock")
    );
    assert!(report.retired_days.is_empty());
    assert_eq!((report.exported_parts, report.exported_events), (0, 0));
    assert_eq!(report.oldest_from, Some(midnight(day())));
    let sent = sent(&db);
    assert_sequence(&sent[0], &["BEGIN", LOCK, DUE, "COMMIT"]);
    assert!(store.keys().is_empty(), "nothing exported");
}

#[tokio::test]
async fn a_spent_time_budget_retires_nothing_and_counts_what_is_overdue() {
    let db = Script::new()
        .lock(true)
        .due(&[day(), next_day()])
        .oldest(Some(midnight(day())))
        .connect();
    let store = MemoryExports::new();

    let report = retain_event_store(&db, &store, config(), now(), Instant::now())
        .await
        .expect("a run");

    assert_eq!(report.overdue_days, 2);
    assert_eq!(
        report.stopped.as_deref(),
        Some("the run's time budget is spent")
    );
    assert!(report.retired_days.is_empty());
    assert_sequence(&sent(&db)[0], &["BEGIN", LOCK, DUE, "COMMIT"]);
}

// ---- a day that goes ------------------------------------------------------------------------

#[tokio::test]
async fn a_due_day_is_exported_verified_recorded_and_dropped_in_that_order() {
    let oldest = midnight(next_day());
    let total = checksum_of(&[LINE_11, LINE_12]);
    let db = Script::new()
        .one_day_up_to_the_drop()
        .drop_checked(total)
        .dropped()
        .oldest(Some(oldest))
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run");

    assert_eq!(
        report,
        RetentionReport {
            cutoff: Some(cutoff()),
            retired_days: vec![day()],
            exported_parts: 1,
            exported_events: 2,
            snapshot: None,
            overdue_days: 0,
            stopped: None,
            oldest_from: Some(oldest),
        }
    );
    assert_eq!(store.keys(), vec![manifest_key(day()), part_key(day(), 0)]);
    assert_eq!(store.lines(&part_key(day(), 0)), vec![LINE_11, LINE_12]);
    let manifest = store.manifest(day());
    manifest.check().expect("a consistent manifest");
    assert_eq!(
        (manifest.day, manifest.from, manifest.to),
        (day(), midnight(day()), midnight(next_day()))
    );
    assert_eq!(manifest.table, "inventory_events");
    assert_eq!(manifest.checksum, total);
    assert_eq!(manifest.parts, vec![part0()]);

    let sent = sent(&db);
    assert_eq!(sent.len(), 2);
    let run = &sent[0];
    assert_sequence(
        run,
        &[
            "BEGIN",
            LOCK,
            DUE,
            VERIFIED,
            // part 0: read in one REPEATABLE READ transaction, then recorded
            "SAVEPOINT savepoint_1",
            UTC,
            EVENTS,
            CHECKSUM,
            "RELEASE SAVEPOINT savepoint_1",
            RECORD,
            // nothing after part 0
            "SAVEPOINT savepoint_1",
            UTC,
            EVENTS,
            "ROLLBACK TO SAVEPOINT savepoint_1",
            LATEST,
            // the drop, in one transaction
            "SAVEPOINT savepoint_1",
            UTC,
            LOCK,
            LOCK_PARTITION,
            CHECKSUM,
            RETIRE,
            DROP,
            "RELEASE SAVEPOINT savepoint_1",
            "COMMIT",
        ],
    );
    assert_sequence(&sent[1], &[OLDEST]);

    assert_eq!(
        parameters(&run[3]),
        vec![Value::from(day())],
        "the verified parts of the day"
    );
    assert_eq!(
        parameters(&run[6]),
        vec![Value::from(0i64), Value::from(2i64)],
        "the events after seq 0, two at most"
    );
    assert!(
        sql(&run[7])
            .ends_with("FROM public.inventory_events_p20261001 e WHERE seq > $1 AND seq <= $2"),
        "{}",
        sql(&run[7])
    );
    assert_eq!(
        parameters(&run[7]),
        vec![Value::from(0i64), Value::from(12i64)],
        "the database's checksum of the part's range"
    );
    assert_eq!(
        parameters(&run[9]),
        vec![
            Value::from(day()),
            Value::from(0i32),
            Value::from(0i64),
            Value::from(12i64),
            Value::from(2i64),
            Value::from(total.sum.to_string()),
            Value::from(part_key(day(), 0)),
        ]
    );
    assert_eq!(
        parameters(&run[12]),
        vec![Value::from(12i64), Value::from(2i64)]
    );
    assert_eq!(
        parameters(&run[14]),
        vec![Value::from(PROJECTION_RULES_VERSION)]
    );
    assert_eq!(
        parameters(&run[17]),
        vec![Value::from(REBUILD_LOCK_KEY)],
        "the drop waits for no rebuild"
    );
    assert_eq!(
        sql(&run[19]),
        checksum_all(),
        "the whole partition checked once more"
    );
    assert_eq!(
        parameters(&run[20]),
        vec![
            Value::from(day()),
            Value::from(2i64),
            Value::from(total.sum.to_string()),
            Value::from(Some(12i64)),
            Value::from(format!("s3://archive/{}", manifest_key(day()))),
            Value::from(Some(7i64)),
        ],
        "the day, its figures, its manifest and the snapshot that covers it"
    );
}

#[tokio::test]
async fn a_day_goes_on_after_its_verified_parts_and_its_manifest_lists_them_all() {
    let total = checksum_of(&[LINE_11, LINE_12, LINE_13]);
    let db = Script::new()
        .lock(true)
        .due(&[day()])
        .verified(&[part0()])
        .part(&[(13, LINE_13)])
        .nothing_left()
        .snapshot(Some((8, 13)))
        .drop_checked(total)
        .dropped()
        .oldest(None)
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run");

    assert_eq!(report.retired_days, vec![day()]);
    assert_eq!(
        (report.exported_parts, report.exported_events),
        (1, 1),
        "only what this run exported"
    );
    assert_eq!(report.oldest_from, None);
    assert_eq!(
        store.keys(),
        vec![manifest_key(day()), part_key(day(), 1)],
        "part 0 is not written again"
    );
    assert_eq!(store.lines(&part_key(day(), 1)), vec![LINE_13]);
    let manifest = store.manifest(day());
    manifest.check().expect("a consistent manifest");
    assert_eq!(manifest.checksum, total);
    assert_eq!(
        manifest.parts,
        vec![
            part0(),
            ExportPart {
                part: 1,
                key: part_key(day(), 1),
                after_seq: 12,
                up_to_seq: 13,
                checksum: checksum_of(&[LINE_13]),
            }
        ]
    );
    let run = statements(&db);
    let reads: Vec<&Statement> = run.iter().filter(|s| sql(s) == EVENTS).collect();
    assert_eq!(
        parameters(reads[0]),
        vec![Value::from(12i64), Value::from(2i64)]
    );
    assert_eq!(
        parameters(reads[1]),
        vec![Value::from(13i64), Value::from(2i64)]
    );
    let record = parameters(the(&run, RECORD));
    assert_eq!(
        record[..4],
        [
            Value::from(day()),
            Value::from(1i32),
            Value::from(12i64),
            Value::from(13i64)
        ]
    );
    assert_eq!(parameters(the(&run, RETIRE))[3], Value::from(Some(13i64)));
}

#[tokio::test]
async fn a_day_of_more_events_than_a_part_holds_is_exported_part_after_part() {
    let total = checksum_of(&[LINE_11, LINE_12, LINE_13]);
    let db = Script::new()
        .lock(true)
        .due(&[day()])
        .verified(&[])
        .part(&[(11, LINE_11), (12, LINE_12)])
        .part(&[(13, LINE_13)])
        .nothing_left()
        .snapshot(Some((8, 13)))
        .drop_checked(total)
        .dropped()
        .oldest(None)
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run");

    assert_eq!(report.retired_days, vec![day()]);
    assert_eq!((report.exported_parts, report.exported_events), (2, 3));
    assert_eq!(store.lines(&part_key(day(), 0)), vec![LINE_11, LINE_12]);
    assert_eq!(store.lines(&part_key(day(), 1)), vec![LINE_13]);
    let manifest = store.manifest(day());
    manifest.check().expect("a consistent manifest");
    assert_eq!(manifest.checksum, total);
    assert_eq!(manifest.parts.len(), 2);
    let run = statements(&db);
    let after: Vec<Value> = run
        .iter()
        .filter(|s| sql(s) == EVENTS)
        .map(|s| parameters(s)[0].clone())
        .collect();
    assert_eq!(
        after,
        vec![Value::from(0i64), Value::from(12i64), Value::from(13i64)],
        "each part starts where the one before ended"
    );
    let records: Vec<Vec<Value>> = run
        .iter()
        .filter(|s| sql(s).starts_with(RECORD))
        .map(|s| parameters(s)[1..4].to_vec())
        .collect();
    assert_eq!(
        records,
        vec![
            vec![Value::from(0i32), Value::from(0i64), Value::from(12i64)],
            vec![Value::from(1i32), Value::from(12i64), Value::from(13i64)],
        ]
    );
    let retire = parameters(the(&run, RETIRE));
    assert_eq!(
        (retire[1].clone(), retire[3].clone()),
        (Value::from(3i64), Value::from(Some(13i64)))
    );
}

#[tokio::test]
async fn an_empty_day_is_dropped_with_an_empty_manifest_and_no_snapshot() {
    let db = Script::new()
        .lock(true)
        .due(&[day()])
        .verified(&[])
        .nothing_left()
        .snapshot(None)
        .drop_checked(Checksum::default())
        .dropped()
        .oldest(None)
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run");

    assert_eq!(report.retired_days, vec![day()]);
    assert_eq!((report.exported_parts, report.snapshot), (0, None));
    let manifest = store.manifest(day());
    assert_eq!(
        (manifest.parts.len(), manifest.checksum),
        (0, Checksum::default())
    );
    let run = statements(&db);
    assert!(
        none_starts_with(&run, "SELECT rules_version"),
        "no snapshot is taken for a day without events"
    );
    let retire = parameters(the(&run, RETIRE));
    assert_eq!(retire[3], Value::from(None::<i64>), "no greatest seq");
    assert_eq!(retire[5], Value::from(None::<i64>), "no snapshot");
    the(&run, DROP);
}

#[tokio::test]
async fn two_due_days_go_oldest_first_and_what_stops_the_second_is_reported() {
    let total = checksum_of(&[LINE_11, LINE_12]);
    let db = Script::new()
        .lock(true)
        .due(&[day(), next_day()])
        .verified(&[])
        .part(&[(11, LINE_11), (12, LINE_12)])
        .nothing_left()
        .snapshot(Some((7, 12)))
        .drop_checked(total)
        .dropped()
        // the second day: empty, but a rebuild holds its lock at the drop
        .verified(&[])
        .nothing_left()
        .snapshot(Some((7, 12)))
        .exec(0)
        .lock(false)
        .oldest(Some(midnight(next_day())))
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run");

    assert_eq!(report.retired_days, vec![day()]);
    assert_eq!(report.overdue_days, 1, "the second day is left");
    assert_eq!(
        report.stopped.as_deref(),
        Some("a projection rebuild is running; 2026-10-02 was not dropped, the next run drops it")
    );
    let run = statements(&db);
    let verified: Vec<Vec<Value>> = run
        .iter()
        .filter(|s| sql(s).starts_with(VERIFIED))
        .map(parameters)
        .collect();
    assert_eq!(
        verified,
        vec![vec![Value::from(day())], vec![Value::from(next_day())]],
        "oldest first"
    );
    assert!(store.keys().contains(&manifest_key(next_day())));
    assert_eq!(
        run.iter()
            .filter(|s| sql(s).starts_with("DROP TABLE"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_budget_spent_while_exporting_stops_after_the_part_in_hand() {
    let db = Script::new()
        .lock(true)
        .due(&[day()])
        .verified(&[])
        .part(&[(11, LINE_11), (12, LINE_12)])
        .oldest(Some(midnight(day())))
        .connect();
    let store = MemoryExports {
        slow_put: Some(Duration::from_millis(1500)),
        ..MemoryExports::new()
    };
    // Time enough to start the day, not to finish its first part.
    let deadline = Instant::now() + Duration::from_millis(1000);

    let report = retain_event_store(&db, &store, config(), now(), deadline)
        .await
        .expect("a run");

    assert_eq!((report.exported_parts, report.exported_events), (1, 2));
    assert!(report.retired_days.is_empty());
    assert_eq!(report.overdue_days, 1);
    assert_eq!(
        report.stopped.as_deref(),
        Some("the run's time budget is spent while exporting 2026-10-01")
    );
    let run = statements(&db);
    the(&run, RECORD);
    assert!(none_starts_with(&run, LATEST), "no manifest, no drop");
    assert_eq!(store.keys(), vec![part_key(day(), 0)]);
}

// ---- a snapshot first -----------------------------------------------------------------------

#[tokio::test]
async fn a_snapshot_is_taken_when_none_reaches_the_day_and_the_drop_records_it() {
    let total = checksum_of(&[LINE_11, LINE_12]);
    let db = Script::new()
        .lock(true)
        .due(&[day()])
        .verified(&[])
        .part(&[(11, LINE_11), (12, LINE_12)])
        .nothing_left()
        .snapshot(Some((5, 11)))
        .snapshot_taken(9, 20)
        .drop_checked(total)
        .dropped()
        .oldest(None)
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run");

    assert_eq!(report.snapshot, Some(9));
    assert_eq!(report.retired_days, vec![day()]);
    let run = statements(&db);
    assert_eq!(
        parameters(the(&run, RETIRE))[5],
        Value::from(Some(9i64)),
        "the new snapshot, not the older one"
    );
    let at = |prefix: &str| {
        run.iter()
            .position(|s| sql(s).starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix:?} in {:#?}", texts(&run)))
    };
    assert!(
        at(LATEST) < at("INSERT INTO projection_snapshots")
            && at("INSERT INTO projection_snapshots") < at(DROP),
        "the snapshot is taken between the read of the newest and the drop"
    );
}

#[tokio::test]
async fn a_day_waits_for_a_snapshot_while_a_rebuild_runs() {
    let db = Script::new()
        .one_day_exported()
        .snapshot(None)
        .lock(false)
        .oldest(None)
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run");

    assert!(report.retired_days.is_empty());
    assert_eq!((report.exported_parts, report.overdue_days), (1, 1));
    assert_eq!(report.snapshot, None);
    assert_eq!(
        report.stopped.as_deref(),
        Some(
            "2026-10-01 needs a snapshot of the projection and a rebuild is running; the next run takes one"
        )
    );
    let run = statements(&db);
    assert!(none_starts_with(&run, "DROP TABLE"));
    assert!(none_starts_with(&run, RETIRE));
}

#[tokio::test]
async fn a_day_waits_when_the_live_projection_follows_other_rules() {
    let db = Script::new()
        .one_day_exported()
        .snapshot(Some((5, 11)))
        .lock(true)
        .one(row([("rules_version", 99i32.into())]))
        .oldest(None)
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run");

    assert!(report.retired_days.is_empty());
    assert_eq!(report.overdue_days, 1);
    let stopped = report.stopped.expect("a reason");
    assert!(
        stopped.starts_with(
            "2026-10-01 needs a snapshot of the projection, and the live projection was built under projection rules 99, not this build's"
        ),
        "{stopped}"
    );
    assert!(
        stopped.contains("inventory rebuild-projection"),
        "{stopped}"
    );
    let run = statements(&db);
    assert!(none_starts_with(&run, "INSERT INTO projection_snapshots"));
    assert!(none_starts_with(&run, "DROP TABLE"));
}

#[tokio::test]
async fn a_snapshot_that_falls_short_of_the_day_fails_the_run_and_drops_nothing() {
    let db = Script::new()
        .one_day_exported()
        .snapshot(None)
        .snapshot_taken(9, 11)
        .connect();
    let store = MemoryExports::new();

    let err = run(&db, &store).await.expect_err("a short snapshot");

    assert_eq!(err.kind, ErrorKind::Internal);
    assert_eq!(
        err.message,
        "the snapshot just taken does not reach event 12 of 2026-10-01"
    );
    let sent = sent(&db);
    assert_eq!(sent.len(), 1, "no oldest day read after a failure");
    assert_eq!(
        sql(sent[0].last().expect("sent")),
        "COMMIT",
        "the lock is released"
    );
    assert!(none_starts_with(&sent[0], "DROP TABLE"));
}

// ---- an export that fails or does not verify ------------------------------------------------

#[tokio::test]
async fn a_failed_export_leaves_the_partition_attached() {
    let db = Script::new()
        .lock(true)
        .due(&[day()])
        .verified(&[])
        .part(&[(11, LINE_11), (12, LINE_12)])
        .connect();
    let store = MemoryExports::failing_put("part-00000");

    let err = run(&db, &store).await.expect_err("S3 is unreachable");

    assert_eq!(err.kind, ErrorKind::DependencyUnavailable, "retried later");
    assert!(err.message.contains("part-00000"), "{}", err.message);
    let sent = sent(&db);
    assert_eq!(sent.len(), 1);
    let run = &sent[0];
    assert!(
        none_starts_with(run, RECORD),
        "nothing recorded as verified"
    );
    assert!(none_starts_with(run, "DROP TABLE"));
    assert_eq!(
        sql(run.last().expect("sent")),
        "COMMIT",
        "the lock is released"
    );
}

#[tokio::test]
async fn a_part_that_reads_back_changed_does_not_verify_and_nothing_is_recorded_or_dropped() {
    for how in [ReadBack::Altered, ReadBack::Truncated] {
        let db = Script::new()
            .lock(true)
            .due(&[day()])
            .verified(&[])
            .part(&[(11, LINE_11), (12, LINE_12)])
            .connect();
        let store = MemoryExports::reading_back("part-00000", how);

        let err = run(&db, &store).await.expect_err("no verification");

        assert_eq!(err.kind, ErrorKind::Internal);
        let total = checksum_of(&[LINE_11, LINE_12]);
        assert!(
            err.message.starts_with(&format!(
                "the export of 2026-10-01 part 0 does not verify: the database has 2 events (checksum {}) with 0 < seq <= 12, 2 were written ({}),",
                total.sum, total.sum
            )),
            "{}",
            err.message
        );
        assert!(
            err.message.ends_with(
                "from s3://archive/event-store/inventory_events/2026/10/01/part-00000.jsonl.gz; nothing was dropped"
            ),
            "{}",
            err.message
        );
        let run = statements(&db);
        assert!(none_starts_with(&run, RECORD));
        assert!(none_starts_with(&run, "DROP TABLE"));
        assert!(!store.keys().contains(&manifest_key(day())));
    }
}

#[tokio::test]
async fn a_database_checksum_other_than_the_rows_read_does_not_verify() {
    let in_db = Checksum {
        events: 3,
        ..checksum_of(&[LINE_11, LINE_12])
    };
    let db = Script::new()
        .lock(true)
        .due(&[day()])
        .verified(&[])
        .read_part(&[(11, LINE_11), (12, LINE_12)], in_db)
        .connect();
    let store = MemoryExports::new();

    let err = run(&db, &store).await.expect_err("no verification");

    assert_eq!(err.kind, ErrorKind::Internal);
    assert!(
        err.message.contains("the database has 3 events"),
        "{}",
        err.message
    );
    assert!(none_starts_with(&statements(&db), RECORD));
}

#[tokio::test]
async fn a_manifest_that_cannot_be_written_fails_as_transient_before_the_drop() {
    let db = Script::new().one_day_exported().connect();
    let store = MemoryExports::failing_put("manifest.json");

    let err = run(&db, &store).await.expect_err("S3 is unreachable");

    assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
    let run = statements(&db);
    the(&run, RECORD);
    assert!(none_starts_with(&run, LATEST));
    assert!(none_starts_with(&run, "DROP TABLE"));
}

#[tokio::test]
async fn a_manifest_that_reads_back_different_stops_before_the_drop() {
    let db = Script::new().one_day_exported().connect();
    let store = MemoryExports::reading_back("manifest.json", ReadBack::Altered);

    let err = run(&db, &store).await.expect_err("a different manifest");

    assert_eq!(err.kind, ErrorKind::Internal);
    assert_eq!(
        err.message,
        "s3://archive/event-store/inventory_events/2026/10/01/manifest.json reads back different from what was written"
    );
    let run = statements(&db);
    assert!(none_starts_with(&run, LATEST));
    assert!(none_starts_with(&run, "DROP TABLE"));
}

#[tokio::test]
async fn verified_parts_that_do_not_follow_each_other_fail_the_manifest_check() {
    let misnumbered = ExportPart { part: 1, ..part0() };
    let db = Script::new()
        .lock(true)
        .due(&[day()])
        .verified(&[misnumbered])
        .nothing_left()
        .connect();
    let store = MemoryExports::new();

    let err = run(&db, &store)
        .await
        .expect_err("an inconsistent manifest");

    assert_eq!(err.kind, ErrorKind::Internal);
    assert!(
        err.message
            .starts_with("the export manifest of 2026-10-01 is inconsistent"),
        "{}",
        err.message
    );
    assert!(store.keys().is_empty(), "no manifest written");
}

// ---- the drop -------------------------------------------------------------------------------

#[tokio::test]
async fn a_day_that_changed_since_its_export_is_rolled_back_and_its_parts_forgotten() {
    let exported = checksum_of(&[LINE_11, LINE_12]);
    let now_in_db = checksum_of(&[LINE_11, LINE_12, LINE_13]);
    let db = Script::new()
        .one_day_up_to_the_drop()
        .drop_checked(now_in_db)
        .exec(1)
        .connect();
    let store = MemoryExports::new();

    let err = run(&db, &store).await.expect_err("the day changed");

    assert_eq!(err.kind, ErrorKind::Internal);
    assert_eq!(
        err.message,
        format!(
            "2026-10-01 now holds 3 events (checksum {}), its export 2 (checksum {}): nothing was dropped, and the next run exports the day again",
            now_in_db.sum, exported.sum
        )
    );
    let sent = sent(&db);
    assert_eq!(sent.len(), 1);
    let run = &sent[0];
    assert_sequence(
        &run[run.len() - 6..],
        &[
            LOCK,
            LOCK_PARTITION,
            CHECKSUM,
            "ROLLBACK TO SAVEPOINT savepoint_1",
            FORGET,
            "COMMIT",
        ],
    );
    assert_eq!(parameters(the(run, FORGET)), vec![Value::from(day())]);
    assert!(none_starts_with(run, RETIRE));
    assert!(none_starts_with(run, "DROP TABLE"));
}

#[tokio::test]
async fn a_running_rebuild_defers_the_drop_to_the_next_run() {
    let db = Script::new()
        .one_day_up_to_the_drop()
        .exec(0)
        .lock(false)
        .oldest(Some(midnight(day())))
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run that waits");

    assert!(report.retired_days.is_empty());
    assert_eq!(report.overdue_days, 1);
    assert_eq!(
        report.stopped.as_deref(),
        Some("a projection rebuild is running; 2026-10-01 was not dropped, the next run drops it")
    );
    let sent = sent(&db);
    let run = &sent[0];
    assert_sequence(
        &run[run.len() - 5..],
        &[
            "SAVEPOINT savepoint_1",
            UTC,
            LOCK,
            "ROLLBACK TO SAVEPOINT savepoint_1",
            "COMMIT",
        ],
    );
    assert_eq!(
        parameters(&run[run.len() - 3]),
        vec![Value::from(REBUILD_LOCK_KEY)]
    );
    assert!(
        none_starts_with(run, "SET LOCAL lock_timeout"),
        "the partition is not locked"
    );
}

#[tokio::test]
async fn a_busy_partition_is_left_for_the_next_run_not_failed() {
    let db = Script::new()
        .one_day_up_to_the_drop()
        .exec(0)
        .lock(true)
        .exec_fails(server_error("55P03"))
        .oldest(Some(midnight(day())))
        .connect();
    let store = MemoryExports::new();

    let report = run(&db, &store).await.expect("a run that waits");

    assert!(report.retired_days.is_empty());
    assert_eq!(report.overdue_days, 1);
    let stopped = report.stopped.expect("a reason");
    assert!(
        stopped.starts_with(
            "2026-10-01 was not dropped, the next run tries again: could not lock the partition of 2026-10-01"
        ),
        "{stopped}"
    );
    let run = statements(&db);
    assert!(
        !texts(&run).contains(&checksum_all()),
        "the partition is not checked"
    );
    assert!(none_starts_with(&run, "DROP TABLE"));
    assert!(
        texts(&run).contains(&"ROLLBACK TO SAVEPOINT savepoint_1".to_owned()),
        "{:#?}",
        texts(&run)
    );
}

#[tokio::test]
async fn a_drop_that_fails_otherwise_fails_the_run_with_its_kind_and_keeps_the_export() {
    let total = checksum_of(&[LINE_11, LINE_12]);
    let db = Script::new()
        .one_day_up_to_the_drop()
        .drop_checked(total)
        .exec(1)
        .exec_fails(server_error("57P01"))
        .connect();
    let store = MemoryExports::new();

    let err = run(&db, &store).await.expect_err("the server went away");

    assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(err.message, "could not drop the partition of 2026-10-01");
    let sent = sent(&db);
    let run = &sent[0];
    assert_sequence(
        &run[run.len() - 4..],
        &[RETIRE, DROP, "ROLLBACK TO SAVEPOINT savepoint_1", "COMMIT"],
    );
    assert!(none_starts_with(run, FORGET), "the export stays verified");
}

#[tokio::test]
async fn a_day_that_cannot_be_recorded_as_retired_is_not_dropped() {
    let total = checksum_of(&[LINE_11, LINE_12]);
    let db = Script::new()
        .one_day_up_to_the_drop()
        .drop_checked(total)
        .exec_fails(statement_failed("violates a constraint"))
        .connect();
    let store = MemoryExports::new();

    let err = run(&db, &store).await.expect_err("no record");

    assert_eq!(err.kind, ErrorKind::Internal);
    assert_eq!(err.message, "could not record a retired day");
    assert!(none_starts_with(&statements(&db), "DROP TABLE"));
}

// ---- the database failing -------------------------------------------------------------------

#[tokio::test]
async fn the_lock_is_released_even_when_listing_the_partitions_fails() {
    let db = Script::new()
        .lock(true)
        .query_fails(server_error("57P01"))
        .connect();
    let store = MemoryExports::new();

    let err = run(&db, &store).await.expect_err("the server went away");

    assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(err.message, "could not list the event store's partitions");
    let sent = sent(&db);
    assert_eq!(sent.len(), 1, "no oldest day read after a failure");
    assert_sequence(&sent[0], &["BEGIN", LOCK, DUE, "COMMIT"]);
}

#[tokio::test]
async fn a_lock_that_cannot_be_asked_for_fails_as_transient() {
    let db = Script::new().query_fails(server_error("08006")).connect();
    let store = MemoryExports::new();

    let err = run(&db, &store).await.expect_err("no connection");

    assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(err.message, "could not take the retention lock");
}

#[tokio::test]
async fn reads_and_records_that_fail_name_what_failed_and_keep_its_kind() {
    // (what the database does wrong, the error's kind, its message)
    type Case = (fn(Script) -> Script, ErrorKind, &'static str);
    let cases: [Case; 7] = [
        (
            |s| s.query_fails(server_error("40001")),
            ErrorKind::Conflict,
            "could not read the verified exports",
        ),
        (
            |s| s.verified(&[]).exec_fails(server_error("57P03")),
            ErrorKind::DependencyUnavailable,
            "could not set up reading events to export",
        ),
        (
            |s| s.verified(&[]).exec(0).query_fails(server_error("57014")),
            ErrorKind::DependencyUnavailable,
            "could not read the events of 2026-10-01",
        ),
        (
            |s| {
                s.verified(&[])
                    .exec(0)
                    .rows(vec![row([("seq", 11i64.into())])])
            },
            ErrorKind::Internal,
            "could not read the events of 2026-10-01",
        ),
        (
            |s| {
                s.verified(&[])
                    .exec(0)
                    .rows(vec![row([("seq", 11i64.into()), ("line", LINE_11.into())])])
                    .query_fails(server_error("40P01"))
            },
            ErrorKind::Conflict,
            "could not compute the events' checksum",
        ),
        (
            |s| {
                s.verified(&[])
                    .read_part(&[(11, LINE_11)], checksum_of(&[LINE_11]))
                    .exec_fails(server_error("40001"))
            },
            ErrorKind::Conflict,
            "could not record a verified export",
        ),
        (
            |s| s.rows(vec![row([("part", 0i32.into())])]),
            ErrorKind::Internal,
            "could not read the verified exports",
        ),
    ];
    for (script, kind, message) in cases {
        let db = script(Script::new().lock(true).due(&[day()])).connect();
        let store = MemoryExports::new();

        let err = run(&db, &store).await.expect_err(message);

        assert_eq!((err.kind, err.message.as_str()), (kind, message));
        let sent = sent(&db);
        assert_eq!(sent.len(), 1);
        assert_eq!(sql(sent[0].last().expect("sent")), "COMMIT", "{message}");
    }
}

#[tokio::test]
async fn a_checksum_the_database_does_not_give_is_an_internal_error() {
    let cases: [(Vec<Row>, &str); 3] = [
        (vec![], "the checksum query returned no row"),
        (
            vec![row([("events", 1i64.into()), ("sum", "twelve".into())])],
            "the database's checksum \"twelve\" is not an integer",
        ),
        (
            vec![row([("events", 1i64.into())])],
            "could not read the events' checksum",
        ),
    ];
    for (answer, message) in cases {
        let db = Script::new()
            .lock(true)
            .due(&[day()])
            .verified(&[])
            .exec(0)
            .rows(vec![row([("seq", 11i64.into()), ("line", LINE_11.into())])])
            .rows(answer)
            .connect();
        let store = MemoryExports::new();

        let err = run(&db, &store).await.expect_err(message);

        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Internal, message)
        );
        assert!(store.keys().is_empty(), "nothing written: {message}");
    }
}

#[tokio::test]
async fn a_partition_row_that_does_not_decode_is_an_internal_error() {
    let db = Script::new()
        .lock(true)
        .rows(vec![row([
            ("tbl", table(day()).into()),
            ("day_from", midnight(day()).into()),
        ])])
        .connect();
    let store = MemoryExports::new();

    let err = run(&db, &store).await.expect_err("no day_to");

    assert_eq!(err.kind, ErrorKind::Internal);
    assert_eq!(err.message, "could not list the event store's partitions");
}

#[tokio::test]
async fn a_failed_read_of_the_oldest_day_fails_the_finished_run() {
    let db = Script::new()
        .lock(true)
        .due(&[])
        .query_fails(server_error("57P01"))
        .connect();
    let store = MemoryExports::new();

    let err = run(&db, &store).await.expect_err("the server went away");

    assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(err.message, "could not read the oldest partition");
}

// ---- retired_up_to --------------------------------------------------------------------------

#[tokio::test]
async fn retired_up_to_is_the_greatest_seq_that_left_or_none() {
    let db = Script::new()
        .one(row([("seq", Some(40i64).into())]))
        .one(row([("seq", None::<i64>.into())]))
        .rows(vec![])
        .query_fails(server_error("57P01"))
        .connect();

    assert_eq!(retired_up_to(&db).await.expect("a read"), Some(40));
    assert_eq!(
        retired_up_to(&db).await.expect("a read"),
        None,
        "no day retired"
    );
    assert_eq!(retired_up_to(&db).await.expect("a read"), None, "no row");
    let err = retired_up_to(&db).await.expect_err("the server went away");
    assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(err.message, "could not read the retired days");

    let sent = statements(&db);
    assert_eq!(
        sql(&sent[0]),
        "SELECT max(max_seq) AS seq FROM event_store_retired_days"
    );
    assert!(parameters(&sent[0]).is_empty());
}
