//! Snapshots against SeaORM's mock connection: the statements sent, in which transaction, what
//! is made of the answers, and how failures are reported. The mock has one session, so a
//! transaction opened while another is open appears in the log as a savepoint inside it.

use super::*;
use crate::adapters::postgres::REBUILD_LOCK_KEY;
use crate::adapters::postgres::mock::{
    affected, parameters, postgres, row, sent, sql, statement_failed,
};
use chrono::TimeZone;
use sea_orm::{ConnAcquireErr, DbErr, MockDatabase, Statement, Value};
use std::collections::BTreeMap;

fn taken_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn info(id: i64, up_to_seq: i64) -> SnapshotInfo {
    SnapshotInfo {
        id,
        up_to_seq,
        rules_version: PROJECTION_RULES_VERSION,
        taken_at: taken_at(),
        offers: 40,
        products: 12,
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

fn answers(db: MockDatabase, rows: Vec<BTreeMap<String, Value>>) -> MockDatabase {
    db.append_query_results([rows])
}

fn execs(db: MockDatabase, n: usize) -> MockDatabase {
    db.append_exec_results((0..n).map(|_| affected(1)))
}

fn transient() -> DbErr {
    DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)
}

/// The log's one transaction.
fn only_transaction(db: &DatabaseConnection) -> Vec<Statement> {
    let mut log = sent(db);
    assert_eq!(log.len(), 1, "one transaction: {log:#?}");
    log.remove(0)
}

fn sqls(statements: &[Statement]) -> Vec<String> {
    statements.iter().map(sql).collect()
}

fn count(statements: &[Statement], prefix: &str) -> usize {
    sqls(statements)
        .iter()
        .filter(|s| s.starts_with(prefix))
        .count()
}

/// Asserts that `statements` are, in order, statements starting with `expected`.
fn assert_sequence(statements: &[Statement], expected: &[&str]) {
    let got = sqls(statements);
    let matches =
        got.len() == expected.len() && got.iter().zip(expected).all(|(s, e)| s.starts_with(e));
    assert!(
        matches,
        "expected statements starting with\n{expected:#?}\nbut got\n{got:#?}"
    );
}

const COPY_OFFERS: &str =
    "product_id, supplier_id, quantity, price, currency, occurred_at, update_key, event_seq";
const COPY_SUMMARIES: &str = "product_id, total_quantity, best_price, best_price_currency, best_price_supplier, supplier_count, version, updated_at";

#[tokio::test]
async fn the_latest_snapshot_is_the_newest_of_this_builds_rules() {
    let db = answers(postgres(), vec![info_row(info(6, 900))]).into_connection();

    let latest = latest_snapshot(&db).await.expect("read");

    assert_eq!(latest, Some(info(6, 900)));
    let log = sent(&db);
    assert_eq!(log.len(), 1);
    let read = &log[0][0];
    assert_eq!(
        sql(read),
        "SELECT id, up_to_seq, rules_version, taken_at, offers, products FROM projection_snapshots \
         WHERE rules_version = $1 ORDER BY up_to_seq DESC, id DESC LIMIT 1",
        "snapshots of other rules are never candidates; the one reaching furthest wins"
    );
    assert_eq!(
        parameters(read),
        vec![Value::from(PROJECTION_RULES_VERSION)]
    );
}

#[tokio::test]
async fn without_a_snapshot_of_this_builds_rules_there_is_no_latest() {
    let db = answers(postgres(), vec![]).into_connection();

    assert_eq!(latest_snapshot(&db).await.expect("read"), None);
}

#[tokio::test]
async fn a_snapshot_row_that_does_not_decode_is_an_internal_error() {
    let mut broken = info_row(info(6, 900));
    broken.remove("taken_at");
    let db = answers(postgres(), vec![broken]).into_connection();

    let e = latest_snapshot(&db).await.expect_err("no taken_at");

    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "could not read the projection's snapshots");
}

#[tokio::test]
async fn a_snapshot_read_that_cannot_reach_the_database_is_transient() {
    let db = postgres()
        .append_query_errors([transient()])
        .into_connection();

    let e = latest_snapshot(&db).await.expect_err("unreachable");

    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(e.message, "could not read the projection's snapshots");
}

#[tokio::test]
async fn a_restore_copies_both_tables_of_the_snapshot_into_the_schema_in_one_transaction() {
    let db = execs(postgres(), 2).into_connection();

    restore_into(&db, "projection_rebuild", 17)
        .await
        .expect("restored");

    let txn = only_transaction(&db);
    assert_eq!(
        sqls(&txn),
        vec![
            "BEGIN".to_owned(),
            format!(
                "INSERT INTO projection_rebuild.product_offers ({COPY_OFFERS}) \
                 SELECT {COPY_OFFERS} FROM projection_snapshot_offers WHERE snapshot_id = $1"
            ),
            format!(
                "INSERT INTO projection_rebuild.product_summaries ({COPY_SUMMARIES}) \
                 SELECT {COPY_SUMMARIES} FROM projection_snapshot_summaries WHERE snapshot_id = $1"
            ),
            "COMMIT".to_owned(),
        ]
    );
    assert_eq!(parameters(&txn[1]), vec![Value::from(17_i64)]);
    assert_eq!(parameters(&txn[2]), vec![Value::from(17_i64)]);
}

#[tokio::test]
async fn a_restore_that_fails_half_way_is_rolled_back_and_names_the_table() {
    let db = execs(postgres(), 1)
        .append_exec_errors([transient()])
        .into_connection();

    let e = restore_into(&db, "projection_rebuild", 17)
        .await
        .expect_err("the second copy failed");

    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(
        e.message,
        "could not restore product_summaries from the snapshot"
    );
    let txn = only_transaction(&db);
    assert_eq!(sql(txn.last().expect("statements")), "ROLLBACK");
    assert_eq!(txn.len(), 4, "{:#?}", sqls(&txn));
}

#[tokio::test]
async fn saving_records_the_snapshot_copies_its_tables_and_keeps_only_the_newest() {
    let db = execs(answers(postgres(), vec![info_row(info(31, 500))]), 3).into_connection();

    let saved = save_from(&db, "projection_rebuild", 500)
        .await
        .expect("saved");

    assert_eq!(
        saved,
        info(31, 500),
        "the snapshot as the database recorded it"
    );
    let txn = only_transaction(&db);
    assert_eq!(
        sqls(&txn),
        vec![
            "BEGIN".to_owned(),
            "INSERT INTO projection_snapshots (up_to_seq, rules_version, offers, products) \
             VALUES ($1, $2, (SELECT count(*) FROM projection_rebuild.product_offers), \
             (SELECT count(*) FROM projection_rebuild.product_summaries)) \
             RETURNING id, up_to_seq, rules_version, taken_at, offers, products"
                .to_owned(),
            format!(
                "INSERT INTO projection_snapshot_offers (snapshot_id, {COPY_OFFERS}) \
                 SELECT $1, {COPY_OFFERS} FROM projection_rebuild.product_offers"
            ),
            format!(
                "INSERT INTO projection_snapshot_summaries (snapshot_id, {COPY_SUMMARIES}) \
                 SELECT $1, {COPY_SUMMARIES} FROM projection_rebuild.product_summaries"
            ),
            "DELETE FROM projection_snapshots WHERE id NOT IN \
             (SELECT id FROM projection_snapshots ORDER BY id DESC LIMIT $1)"
                .to_owned(),
            "COMMIT".to_owned(),
        ]
    );
    assert_eq!(
        parameters(&txn[1]),
        vec![Value::from(500_i64), Value::from(PROJECTION_RULES_VERSION)]
    );
    assert_eq!(parameters(&txn[2]), vec![Value::from(31_i64)], "the new id");
    assert_eq!(parameters(&txn[3]), vec![Value::from(31_i64)], "the new id");
    assert_eq!(
        parameters(&txn[4]),
        vec![Value::from(SNAPSHOTS_KEPT)],
        "all but the newest SNAPSHOTS_KEPT go"
    );
}

#[tokio::test]
async fn a_snapshot_the_database_gave_no_id_is_abandoned_before_any_copy() {
    let db = answers(postgres(), vec![]).into_connection();

    let e = save_from(&db, "projection_rebuild", 500)
        .await
        .expect_err("no id");

    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "the snapshot got no id");
    assert_sequence(
        &only_transaction(&db),
        &["BEGIN", "INSERT INTO projection_snapshots", "ROLLBACK"],
    );
}

#[tokio::test]
async fn a_snapshot_whose_old_ones_cannot_be_pruned_is_not_kept() {
    let db = execs(answers(postgres(), vec![info_row(info(31, 500))]), 2)
        .append_exec_errors([statement_failed("tuple concurrently deleted")])
        .into_connection();

    let e = save_from(&db, "projection_rebuild", 500)
        .await
        .expect_err("pruning failed");

    assert_eq!(e.message, "could not forget old snapshots");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_sequence(
        &only_transaction(&db),
        &[
            "BEGIN",
            "INSERT INTO projection_snapshots",
            "INSERT INTO projection_snapshot_offers",
            "INSERT INTO projection_snapshot_summaries",
            "DELETE FROM projection_snapshots",
            "ROLLBACK",
        ],
    );
}

#[tokio::test]
async fn a_snapshot_copy_that_fails_names_its_table() {
    let db = answers(postgres(), vec![info_row(info(31, 500))])
        .append_exec_errors([transient()])
        .into_connection();

    let e = save_from(&db, "projection_rebuild", 500)
        .await
        .expect_err("copy failed");

    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(e.message, "could not copy product_offers into the snapshot");
}

/// A live snapshot's database, whose rebuild lock answers `locked`.
fn live(locked: bool) -> MockDatabase {
    answers(postgres(), vec![row([("locked", locked.into())])])
}

fn rules(db: MockDatabase, version: i32) -> MockDatabase {
    answers(db, vec![row([("rules_version", version.into())])])
}

#[tokio::test]
async fn a_live_snapshot_copies_the_live_tables_as_of_the_stores_position() {
    let db = rules(live(true), PROJECTION_RULES_VERSION);
    let db = execs(db, 1);
    let db = answers(
        db,
        vec![row([
            ("seq", 812_i64.into()),
            ("snapshot", "00000003-0000001B-1".into()),
        ])],
    );
    let db = execs(db, 1);
    let db = answers(db, vec![row([("live", "\"inventory\"".into())])]);
    let db = execs(answers(db, vec![info_row(info(9, 812))]), 3).into_connection();

    let taken = snapshot_live(&db).await.expect("taken");

    assert_eq!(taken, LiveSnapshot::Taken(info(9, 812)));
    let txn = only_transaction(&db);
    assert_sequence(
        &txn,
        &[
            "BEGIN",
            "SELECT pg_try_advisory_xact_lock($1) AS locked",
            "SELECT rules_version FROM projection_state",
            // The copy's transaction, then the position's inside it (one session in the mock).
            "SAVEPOINT savepoint_1",
            "SAVEPOINT savepoint_2",
            "SET LOCAL lock_timeout = '5s'; LOCK TABLE inventory_events IN SHARE MODE",
            "SELECT coalesce(max(seq), 0) AS seq, pg_export_snapshot() AS snapshot FROM inventory_events",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
            // The position's transaction ends before the copy starts.
            "RELEASE SAVEPOINT savepoint_2",
            "SELECT quote_ident(relnamespace::regnamespace::text) AS live",
            "INSERT INTO projection_snapshots (up_to_seq, rules_version, offers, products) VALUES ($1, $2, (SELECT count(*) FROM \"inventory\".product_offers)",
            "INSERT INTO projection_snapshot_offers",
            "INSERT INTO projection_snapshot_summaries",
            "DELETE FROM projection_snapshots",
            "RELEASE SAVEPOINT savepoint_1",
            "COMMIT",
        ],
    );
    assert_eq!(parameters(&txn[1]), vec![Value::from(REBUILD_LOCK_KEY)]);
    assert_eq!(
        parameters(&txn[10]),
        vec![Value::from(812_i64), Value::from(PROJECTION_RULES_VERSION)],
        "the snapshot reaches the position read under the lock"
    );
}

#[tokio::test]
async fn an_exported_snapshot_name_cannot_close_its_quotes() {
    let db = rules(live(true), PROJECTION_RULES_VERSION);
    let db = execs(db, 1);
    let db = answers(
        db,
        vec![row([
            ("seq", 5_i64.into()),
            ("snapshot", "0'; DROP TABLE x; --".into()),
        ])],
    );
    let db = execs(db, 1);
    let db = answers(db, vec![row([("live", "public".into())])]);
    let db = execs(answers(db, vec![info_row(info(1, 5))]), 3).into_connection();

    snapshot_live(&db).await.expect("taken");

    let txn = only_transaction(&db);
    assert_eq!(
        sql(&txn[7]),
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '0; DROP TABLE x; --'"
    );
}

#[tokio::test]
async fn no_live_snapshot_is_taken_while_a_rebuild_runs() {
    let db = live(false).into_connection();

    assert_eq!(
        snapshot_live(&db).await.expect("answered"),
        LiveSnapshot::RebuildRunning
    );
    assert_sequence(
        &only_transaction(&db),
        &["BEGIN", "SELECT pg_try_advisory_xact_lock($1)", "COMMIT"],
    );
}

#[tokio::test]
async fn no_live_snapshot_is_taken_of_a_projection_built_under_other_rules() {
    let other = PROJECTION_RULES_VERSION + 1;
    let db = rules(live(true), other).into_connection();

    assert_eq!(
        snapshot_live(&db).await.expect("answered"),
        LiveSnapshot::OtherRules { live: other }
    );
    assert_sequence(
        &only_transaction(&db),
        &[
            "BEGIN",
            "SELECT pg_try_advisory_xact_lock($1)",
            "SELECT rules_version FROM projection_state",
            "COMMIT",
        ],
    );
}

#[tokio::test]
async fn a_database_without_projection_state_is_not_migrated_and_the_lock_is_still_released() {
    let db = answers(live(true), vec![]).into_connection();

    let e = snapshot_live(&db).await.expect_err("no row");

    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "projection_state has no row: run the migrations");
    assert_sequence(
        &only_transaction(&db),
        &[
            "BEGIN",
            "SELECT pg_try_advisory_xact_lock($1)",
            "SELECT rules_version FROM projection_state",
            "COMMIT",
        ],
    );
}

#[tokio::test]
async fn a_store_that_stays_locked_past_the_timeout_fails_the_snapshot_and_ends_every_transaction()
{
    let db = rules(live(true), PROJECTION_RULES_VERSION)
        .append_exec_errors([transient()])
        .into_connection();

    let e = snapshot_live(&db).await.expect_err("lock failed");

    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(e.message, "could not lock the event store");
    let txn = only_transaction(&db);
    let n = txn.len();
    assert_sequence(
        &txn[n - 3..],
        &[
            "ROLLBACK TO SAVEPOINT savepoint_2",
            "ROLLBACK TO SAVEPOINT savepoint_1",
            "COMMIT",
        ],
    );
}

#[tokio::test]
async fn a_position_query_without_a_row_or_a_column_is_an_internal_error() {
    let db = execs(rules(live(true), PROJECTION_RULES_VERSION), 1);
    let db = answers(db, vec![]).into_connection();
    let e = snapshot_live(&db).await.expect_err("no row");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "the position query returned no row");

    let db = execs(rules(live(true), PROJECTION_RULES_VERSION), 1);
    let db = answers(db, vec![row([("seq", 5_i64.into())])]).into_connection();
    let e = snapshot_live(&db).await.expect_err("no snapshot column");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "could not read the store's position");
}

#[tokio::test]
async fn a_position_that_cannot_be_shared_with_the_copy_fails_the_snapshot() {
    let db = execs(rules(live(true), PROJECTION_RULES_VERSION), 1);
    let db = answers(
        db,
        vec![row([("seq", 5_i64.into()), ("snapshot", "0000-1".into())])],
    )
    .append_exec_errors([statement_failed("invalid snapshot identifier")])
    .into_connection();

    let e = snapshot_live(&db).await.expect_err("not shared");

    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(
        e.message,
        "could not share the store's position with the snapshot's copy"
    );
    assert_eq!(
        count(&only_transaction(&db), "INSERT INTO projection_snapshots"),
        0,
        "nothing copied"
    );
}

#[tokio::test]
async fn the_live_rules_version_is_read_from_projection_state() {
    let db = rules(postgres(), 3).into_connection();

    assert_eq!(live_rules_version(&db).await.expect("read"), 3);
    let log = sent(&db);
    assert_eq!(
        sql(&log[0][0]),
        "SELECT rules_version FROM projection_state"
    );
}
