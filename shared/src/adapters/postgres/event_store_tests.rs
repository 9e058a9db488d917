use super::*;
use crate::adapters::postgres::entity::product_offer;
use crate::adapters::postgres::mock::{parameters, postgres, row, sent, sql, statement_failed};
use crate::domain::ids::UpdateId;
use crate::domain::projection::Offer;
use crate::domain::update::{SourcePosition, parse_record};
use chrono::TimeZone;
use sea_orm::prelude::Uuid;
use sea_orm::{DbErr, MockDatabase, RuntimeErr, Statement, Value};
use std::collections::BTreeMap;

/// A valid update through the data contract; `minute` sets `occurred_at` (10:mm).
pub(crate) fn update(product: &str, supplier: &str, quantity: i64, minute: u32) -> InventoryUpdate {
    let json = format!(
        r#"{{"product_id":"{product}","supplier_id":"{supplier}","quantity":{quantity},"price":"10.5","currency":"EUR","occurred_at":"2026-11-24T10:{minute:02}:00Z"}}"#
    );
    let source = SourcePosition {
        shard_id: "shardId-000000000000".into(),
        sequence_number: format!("{minute}{quantity}"),
        arrived_at: Utc
            .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("valid time"),
    };
    parse_record(json.as_bytes(), &source).expect("test updates are valid")
}

/// The row the insert statement returns for an appended event.
fn appended(seq: i64, u: &InventoryUpdate) -> BTreeMap<String, Value> {
    row([
        ("seq", seq.into()),
        ("update_key", u.update_key.as_str().into()),
    ])
}

/// The rows the key statement returns: the keys of `updates`, which were new.
fn recorded(updates: &[&InventoryUpdate]) -> Vec<BTreeMap<String, Value>> {
    updates
        .iter()
        .map(|u| row([("key_id", id_of(u).into())]))
        .collect()
}

/// The id the keys table keeps of `u`'s key: its first 32 hex digits, as a uuid.
fn id_of(u: &InventoryUpdate) -> Uuid {
    Uuid::parse_str(&u.update_key.as_str()[..32]).expect("a key begins with 32 hex digits")
}

/// The uuids of an array parameter.
fn ids(values: &Value) -> Vec<Uuid> {
    match values {
        Value::Array(_, Some(items)) => items
            .iter()
            .map(|v| match v {
                Value::Uuid(Some(id)) => *id,
                other => panic!("not a uuid: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// The stored offer `u` became as event `seq`.
pub(crate) fn stored_offer(u: &InventoryUpdate, seq: i64) -> product_offer::Model {
    product_offer::Model {
        product_id: u.product_id.as_str().into(),
        supplier_id: u.supplier_id.as_str().into(),
        quantity: u.quantity.get(),
        price: u.price.get(),
        currency: u.currency.as_str().into(),
        occurred_at: u.occurred_at,
        update_key: u.update_key.as_str().into(),
        event_seq: seq,
    }
}

/// The answer to the projection write (how many rows it touched).
fn written() -> Vec<BTreeMap<String, Value>> {
    vec![row([("n", 3i64.into())])]
}

fn no_rows() -> Vec<BTreeMap<String, Value>> {
    Vec::new()
}

/// Each statement named by what it does, per transaction.
fn shape(log: &[Vec<Statement>]) -> Vec<Vec<&'static str>> {
    log.iter()
        .map(|t| {
            t.iter()
                .map(|s| {
                    let text = sql(s);
                    match text.as_str() {
                        "BEGIN" => "begin",
                        "COMMIT" => "commit",
                        "ROLLBACK" => "rollback",
                        t if t.contains("INSERT INTO inventory_update_key_ids") => "record keys",
                        t if t.starts_with("WITH locked AS") => "lock and append",
                        t if t.starts_with("SELECT o.product_id") => "load offers",
                        t if t.starts_with("WITH offers AS") => "write projection",
                        _ => panic!("unexpected statement {text}"),
                    }
                })
                .collect()
        })
        .collect()
}

fn texts(values: &Value) -> Vec<String> {
    match values {
        Value::Array(_, Some(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(Some(s)) => s.clone(),
                other => panic!("not text: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

fn pid(s: &str) -> ProductId {
    ProductId::parse(s).expect("valid product id")
}

async fn append(
    db: MockDatabase,
    updates: &[InventoryUpdate],
) -> (Result<AppendOutcome, PipelineError>, Vec<Vec<Statement>>) {
    let conn = db.into_connection();
    let out = PgEventStore::new(conn.clone()).append(updates).await;
    (out, sent(&conn))
}

#[tokio::test]
async fn an_empty_chunk_sends_nothing() {
    let (out, log) = append(postgres(), &[]).await;

    assert_eq!(out.expect("empty chunk"), AppendOutcome::default());
    assert!(log.is_empty(), "{log:?}");
}

#[tokio::test]
async fn a_chunk_is_recorded_locked_inserted_loaded_written_and_committed_in_one_transaction() {
    let a = update("p2", "s1", 5, 1);
    let b = update("p1", "s1", 3, 2);
    let db = postgres().append_query_results([
        recorded(&[&a, &b]),
        vec![appended(10, &a), appended(11, &b)],
        vec![],
        written(),
    ]);

    let (out, log) = append(db, &[a.clone(), b.clone()]).await;

    let out = out.expect("appended");
    assert_eq!((out.appended, out.duplicates), (2, 0));
    assert_eq!(
        out.changed,
        vec![
            ChangedProduct {
                product_id: pid("p1"),
                version: 11
            },
            ChangedProduct {
                product_id: pid("p2"),
                version: 10
            },
        ]
    );
    assert_eq!(
        shape(&log),
        [[
            "begin",
            "record keys",
            "lock and append",
            "load offers",
            "write projection",
            "commit"
        ]]
    );
    let t = &log[0];
    let mut keys = vec![id_of(&a), id_of(&b)];
    keys.sort_unstable();
    assert_eq!(
        ids(&parameters(&t[1])[0]),
        keys,
        "keys are recorded in one order, whatever the chunk's"
    );
    assert_eq!(
        texts(&parameters(&t[2])[14]),
        ["p1", "p2"],
        "the products to lock are sent in id order"
    );
    assert_eq!(texts(&parameters(&t[3])[0]), ["p1", "p2"]);
}

#[tokio::test]
async fn the_insert_binds_one_array_per_column_in_chunk_order_with_the_event_type() {
    let a = update("p10", "s9", 5, 1);
    let mut b = update("P1", "s1", 3, 2);
    b.update_id = Some(UpdateId::parse("feed-7/42").expect("valid"));
    let db = postgres().append_query_results([
        recorded(&[&b, &a]),
        vec![appended(1, &a), appended(2, &b)],
        vec![],
        written(),
    ]);

    let (out, log) = append(db, &[a.clone(), b.clone()]).await;

    out.expect("appended");
    let p = parameters(&log[0][2]);
    assert_eq!(p.len(), 15);
    assert_eq!(texts(&p[0]), [a.update_key.as_str(), b.update_key.as_str()]);
    assert_eq!(texts(&p[1]), ["p10", "P1"]);
    assert_eq!(texts(&p[2]), ["s9", "s1"]);
    assert_eq!(p[3], Value::from(vec![a.occurred_at, b.occurred_at]));
    assert_eq!(p[4], Value::from(vec![a.quantity.get(), b.quantity.get()]));
    assert_eq!(p[5], Value::from(vec![a.price.get(), b.price.get()]));
    assert_eq!(texts(&p[6]), [a.currency.as_str(), b.currency.as_str()]);
    assert_eq!(
        p[7],
        Value::from(vec![
            a.occurred_at_from_supplier,
            b.occurred_at_from_supplier
        ])
    );
    assert_eq!(
        texts(&p[8]),
        ["", "feed-7/42"],
        "no update_id is sent empty"
    );
    assert_eq!(
        texts(&p[9]),
        [a.source.shard_id.as_str(), b.source.shard_id.as_str()]
    );
    assert_eq!(
        texts(&p[10]),
        [
            a.source.sequence_number.as_str(),
            b.source.sequence_number.as_str()
        ]
    );
    assert_eq!(
        p[11],
        Value::from(vec![a.source.arrived_at, b.source.arrived_at])
    );
    assert_eq!(p[12], Value::from(InventoryUpdateReceived::EVENT_TYPE));
    assert_eq!(p[13], Value::from(InventoryUpdateReceived::EVENT_VERSION));
    assert_eq!(
        texts(&p[14]),
        ["P1", "p10"],
        "the products to lock, in the ids' byte order"
    );
}

#[tokio::test]
async fn duplicate_keys_inside_a_chunk_are_sent_once_and_counted_as_duplicates() {
    let u = update("p1", "s1", 5, 1);
    let newer = update("p1", "s1", 6, 2);
    let db = postgres().append_query_results([
        recorded(&[&u, &newer]),
        vec![appended(1, &u), appended(2, &newer)],
        vec![],
        written(),
    ]);

    let (out, log) = append(db, &[u.clone(), u.clone(), newer.clone(), u.clone()]).await;

    let out = out.expect("appended");
    assert_eq!((out.appended, out.duplicates), (2, 2));
    assert_eq!(
        ids(&parameters(&log[0][1])[0]).len(),
        2,
        "each key recorded once"
    );
    assert_eq!(
        texts(&parameters(&log[0][2])[0]),
        [u.update_key.as_str(), newer.update_key.as_str()],
        "the first of each key, in chunk order"
    );
    assert_eq!(texts(&parameters(&log[0][2])[14]), ["p1"]);
    assert_eq!(
        out.changed,
        [ChangedProduct {
            product_id: pid("p1"),
            version: 2
        }]
    );
    let written = parameters(&log[0][4]);
    assert_eq!(
        written[6],
        Value::from(vec![newer.update_key.as_str().to_owned()]),
        "only the newest update becomes the offer"
    );
}

#[tokio::test]
async fn a_failed_lock_or_insert_rolls_back_and_commits_nothing() {
    let u = update("p1", "s1", 5, 1);
    let db = postgres()
        .append_query_results([recorded(&[&u])])
        .append_query_errors([statement_failed("check constraint")]);

    let (out, log) = append(db, &[u]).await;

    let e = out.expect_err("insert failed");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(
        e.detailed()
            .starts_with("could not lock the products and append their events"),
        "{}",
        e.detailed()
    );
    assert_eq!(
        shape(&log),
        [["begin", "record keys", "lock and append", "rollback"]]
    );
}

#[tokio::test]
async fn a_transient_failure_keeps_its_kind_so_the_chunk_is_retried() {
    let u = update("p1", "s1", 5, 1);
    let unreachable = DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(
        sea_orm::sqlx::Error::PoolTimedOut,
    )));
    let db = postgres().append_query_errors([unreachable]);

    let (out, log) = append(db, &[u]).await;

    let e = out.expect_err("insert failed");
    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert!(e.is_transient());
    assert_eq!(log[0].last().map(sql).as_deref(), Some("ROLLBACK"));
}

#[tokio::test]
async fn a_failed_projection_write_rolls_the_appended_events_back() {
    let u = update("p1", "s1", 5, 1);
    let db = postgres()
        .append_query_results([recorded(&[&u]), vec![appended(1, &u)], vec![]])
        .append_query_errors([statement_failed("check constraint")]);

    let (out, log) = append(db, &[u]).await;

    let e = out.expect_err("write failed");
    assert!(
        e.detailed().starts_with("could not write the projection"),
        "{}",
        e.detailed()
    );
    assert_eq!(
        shape(&log),
        [[
            "begin",
            "record keys",
            "lock and append",
            "load offers",
            "write projection",
            "rollback"
        ]]
    );
}

#[tokio::test]
async fn a_key_the_store_did_not_append_is_an_internal_error_and_nothing_is_committed() {
    let u = update("p1", "s1", 5, 1);
    let stranger = update("p9", "s9", 1, 9);
    let db = postgres().append_query_results([recorded(&[&u]), vec![appended(1, &stranger)]]);

    let (out, log) = append(db, &[u]).await;

    let e = out.expect_err("unknown key");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(
        e.message.contains(stranger.update_key.as_str()) && e.message.contains("not appended"),
        "{}",
        e.message
    );
    assert_eq!(
        shape(&log),
        [["begin", "record keys", "lock and append", "rollback"]]
    );
}

#[tokio::test]
async fn the_same_key_returned_twice_is_an_internal_error() {
    let u = update("p1", "s1", 5, 1);
    let db =
        postgres().append_query_results([recorded(&[&u]), vec![appended(1, &u), appended(2, &u)]]);

    let (out, _) = append(db, &[u]).await;

    assert_eq!(out.expect_err("key twice").kind, ErrorKind::Internal);
}

#[tokio::test]
async fn an_appended_row_without_its_seq_or_key_is_an_internal_error() {
    let u = update("p1", "s1", 5, 1);
    for (bad, says) in [
        (
            row([("update_key", u.update_key.as_str().into())]),
            "could not read an appended seq",
        ),
        (
            row([("seq", 1i64.into())]),
            "could not read an appended key",
        ),
    ] {
        let db = postgres().append_query_results([recorded(&[&u]), vec![bad]]);

        let (out, log) = append(db, std::slice::from_ref(&u)).await;

        let e = out.expect_err(says);
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.detailed().starts_with(says), "{}", e.detailed());
        assert_eq!(log[0].last().map(sql).as_deref(), Some("ROLLBACK"));
    }
}

/// A retry after a lost response appends nothing, writes nothing, and still reports the
/// products whose current offers come from the chunk, at their current version.
#[tokio::test]
async fn a_redelivered_chunk_appends_nothing_and_reports_the_products_its_keys_still_hold() {
    let mine = update("p1", "s1", 5, 1);
    let superseded = update("p2", "s1", 1, 1);
    let newer_elsewhere = update("p2", "s1", 2, 30);
    let db = postgres()
        .append_query_results([no_rows(), no_rows()])
        .append_query_results([vec![
            stored_offer(&mine, 7),
            stored_offer(&newer_elsewhere, 9),
        ]]);

    let (out, log) = append(db, &[mine.clone(), superseded]).await;

    let out = out.expect("redelivery");
    assert_eq!((out.appended, out.duplicates), (0, 2));
    assert_eq!(
        out.changed,
        [ChangedProduct {
            product_id: pid("p1"),
            version: 7
        }]
    );
    assert_eq!(
        shape(&log),
        [[
            "begin",
            "record keys",
            "lock and append",
            "load offers",
            "commit"
        ]],
        "no new key: nothing appended or written"
    );
    let lock = parameters(&log[0][2]);
    assert_eq!(
        texts(&lock[14]),
        ["p1", "p2"],
        "the products are locked all the same"
    );
    assert!(texts(&lock[0]).is_empty(), "no event to insert");
}

#[tokio::test]
async fn an_update_older_than_the_current_offer_is_kept_but_changes_nothing() {
    let newer = update("p1", "s1", 20, 30);
    let older = update("p1", "s1", 10, 10);
    let db = postgres()
        .append_query_results([recorded(&[&older]), vec![appended(12, &older)]])
        .append_query_results([vec![stored_offer(&newer, 11)]]);

    let (out, log) = append(db, &[older]).await;

    let out = out.expect("appended");
    assert_eq!((out.appended, out.duplicates), (1, 0));
    assert!(out.changed.is_empty(), "{:?}", out.changed);
    assert_eq!(
        shape(&log),
        [[
            "begin",
            "record keys",
            "lock and append",
            "load offers",
            "commit"
        ]]
    );
}

/// Keys another writer recorded first are not appended again: only the events of the keys
/// that came back as new go into the insert, and the rest count as duplicates.
#[tokio::test]
async fn only_the_keys_that_were_new_are_appended() {
    let mine = update("p1", "s1", 5, 1);
    let theirs = update("p1", "s2", 4, 2);
    let db = postgres().append_query_results([
        recorded(&[&mine]),
        vec![appended(3, &mine)],
        vec![],
        written(),
    ]);

    let (out, log) = append(db, &[theirs.clone(), mine.clone()]).await;

    let out = out.expect("appended");
    assert_eq!((out.appended, out.duplicates), (1, 1));
    assert_eq!(ids(&parameters(&log[0][1])[0]).len(), 2);
    let p = parameters(&log[0][2]);
    assert_eq!(texts(&p[0]), [mine.update_key.as_str()]);
    assert_eq!(texts(&p[1]), ["p1"]);
    assert_eq!(
        texts(&p[2]),
        ["s1"],
        "every column keeps only the new key's event"
    );
    assert_eq!(p[3], Value::from(vec![mine.occurred_at]));
    assert_eq!(texts(&p[6]).len(), 1);
}

#[tokio::test]
async fn the_keys_are_sent_in_one_order_whatever_the_chunks() {
    let mut chunk = vec![update("p1", "s1", 5, 1), update("p2", "s1", 3, 2)];
    chunk.sort_by(|a, b| b.update_key.cmp(&a.update_key));
    let db = postgres().append_query_results([
        recorded(&[&chunk[0], &chunk[1]]),
        vec![appended(1, &chunk[0]), appended(2, &chunk[1])],
        vec![],
        written(),
    ]);

    let (out, log) = append(db, &chunk).await;

    out.expect("appended");
    let chunk_order = [chunk[0].update_key.as_str(), chunk[1].update_key.as_str()];
    let mut sorted = [id_of(&chunk[0]), id_of(&chunk[1])];
    sorted.sort_unstable();
    assert_ne!(
        [id_of(&chunk[0]), id_of(&chunk[1])],
        sorted,
        "the chunk is not in key order"
    );
    assert_eq!(ids(&parameters(&log[0][1])[0]), sorted);
    assert_eq!(
        texts(&parameters(&log[0][2])[0]),
        chunk_order,
        "the events keep the chunk's order"
    );
}

/// A recorded key whose event did not come back would be lost for good (every redelivery
/// would count it as a duplicate), so the append rolls back.
#[tokio::test]
async fn a_new_key_whose_event_did_not_come_back_rolls_everything_back() {
    let a = update("p1", "s1", 5, 1);
    let b = update("p1", "s2", 4, 2);
    let db = postgres().append_query_results([recorded(&[&a, &b]), vec![appended(1, &a)]]);

    let (out, log) = append(db, &[a, b.clone()]).await;

    let e = out.expect_err("an event missing");
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(
        e.message.contains("appended 1 of 2 events") && e.message.contains(b.update_key.as_str()),
        "{}",
        e.message
    );
    assert_eq!(
        shape(&log),
        [["begin", "record keys", "lock and append", "rollback"]]
    );
}

#[tokio::test]
async fn a_failed_key_record_rolls_back_before_anything_is_locked() {
    let db = postgres().append_query_errors([statement_failed("disk full")]);

    let (out, log) = append(db, &[update("p1", "s1", 5, 1)]).await;

    let e = out.expect_err("keys failed");
    assert!(
        e.detailed().starts_with("could not record the update keys"),
        "{}",
        e.detailed()
    );
    assert_eq!(shape(&log), [["begin", "record keys", "rollback"]]);
}

#[tokio::test]
async fn a_recorded_key_that_was_not_sent_or_came_back_twice_or_unreadable_is_internal() {
    let u = update("p1", "s1", 5, 1);
    let stranger = update("p9", "s9", 1, 9);
    for (answer, says) in [
        (recorded(&[&stranger]), "was not sent or came back twice"),
        (recorded(&[&u, &u]), "was not sent or came back twice"),
        (
            vec![row([("seq", 1i64.into())])],
            "could not read a recorded key",
        ),
    ] {
        let db = postgres().append_query_results([answer]);

        let (out, log) = append(db, std::slice::from_ref(&u)).await;

        let e = out.expect_err(says);
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.detailed().contains(says), "{}", e.detailed());
        assert_eq!(shape(&log), [["begin", "record keys", "rollback"]]);
    }
}

#[test]
fn changed_products_are_those_whose_current_offers_hold_a_key_of_the_chunk() {
    let a = update("p1", "s1", 5, 1);
    let b = update("p1", "s2", 4, 2);
    let other = update("p2", "s1", 3, 3);
    let offer = |u: &InventoryUpdate, seq| rows_offer(stored_offer(u, seq));
    let offers: OffersByProduct = [
        (pid("p1"), vec![offer(&a, 4), offer(&b, 6)]),
        (pid("p2"), vec![offer(&other, 8)]),
        (pid("p3"), vec![]),
    ]
    .into_iter()
    .collect();
    let keys: HashSet<&str> = [a.update_key.as_str()].into_iter().collect();

    let changed = changed_products(&offers, &keys);

    assert_eq!(
        changed,
        [ChangedProduct {
            product_id: pid("p1"),
            version: 6
        }],
        "at the product's version, which another supplier's newer event set"
    );
    assert!(changed_products(&offers, &HashSet::new()).is_empty());
}

fn rows_offer(m: product_offer::Model) -> Offer {
    crate::adapters::postgres::rows::offer(m).expect("valid offer")
}
