//! The handler against an in-memory quarantine and the shared JSON fixture, and the
//! configuration read from a map.

use crate::{Config, handle};
use inventory::config::FromEnv;
use inventory::testing::MemoryQuarantine;
use inventory::{ErrorKind, RejectionCode};
use serde_json::Value;

/// Shortly after the fixture's records reached the stream.
fn fixture_now() -> chrono::DateTime<chrono::Utc> {
    "2026-11-24T12:01:00Z".parse().expect("a time")
}

fn fixture() -> Value {
    serde_json::from_str(include_str!(
        "../../../tests/fixtures/chunk-with-bad-records.json"
    ))
    .expect("fixture")
}

/// An old execution's input run again as a new execution, after every redrive could have
/// happened: nothing passes (the keys that would recognise an earlier copy may be gone),
/// and every record that has bytes is kept with them, so a replay can send it again.
#[tokio::test]
async fn records_validated_later_than_any_redrive_could_are_all_kept_not_passed() {
    let q = MemoryQuarantine::default();
    let late = fixture_now() + inventory::domain::update::MAX_VALIDATION_DELAY;

    let out = handle(fixture(), &q, late).await.expect("validated");

    assert!(out.valid.is_empty(), "{:?}", out.valid);
    let kept = q.kept();
    assert_eq!(kept.len(), 9, "every record is kept");
    for k in kept.iter().filter(|k| k.raw.is_some()) {
        assert_eq!(k.reason.code, RejectionCode::ArrivedTooLongAgo, "{k:?}");
    }
    assert_eq!(
        kept.iter().filter(|k| k.raw.is_some()).count(),
        7,
        "all but the two records without bytes here"
    );
}

#[tokio::test]
async fn good_records_pass_and_bad_ones_are_quarantined_with_their_reasons() {
    let q = MemoryQuarantine::default();

    let out = handle(fixture(), &q, fixture_now())
        .await
        .expect("a chunk with bad records still succeeds");

    assert_eq!(out.valid.len(), 4);
    assert_eq!(out.valid[0].product_id.as_str(), "product123");
    let codes: Vec<RejectionCode> = out.rejected.iter().map(|r| r.reason.code).collect();
    assert_eq!(
        codes,
        [
            RejectionCode::NotJson,
            RejectionCode::QuantityNegative,
            RejectionCode::CurrencyUnknown,
            RejectionCode::PayloadUnavailable,
            RejectionCode::RecordTooLarge
        ]
    );
    let kept = q.kept();
    assert_eq!(kept.len(), 5);
    assert_eq!(kept[0].stream, "inventory-updates-test");
    assert_eq!(kept[0].sequence_number, out.rejected[0].sequence_number);
}

#[tokio::test]
async fn a_payload_that_is_not_a_chunk_is_an_invalid_payload() {
    for payload in [
        serde_json::json!({"records": "nope"}),
        Value::Null,
        serde_json::json!([1, 2]),
    ] {
        let e = handle(payload, &MemoryQuarantine::default(), fixture_now())
            .await
            .expect_err("not a chunk");
        assert_eq!(e.kind, ErrorKind::InvalidPayload);
        assert!(e.message.contains("ChunkInput"), "{}", e.message);
    }
}

#[test]
fn the_configuration_names_a_missing_or_invalid_variable() {
    let vars = |pairs: &[(&str, &str)]| {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |n: &str| map.get(n).cloned()
    };
    let db = ("DATABASE_URL", "postgres://h/d");
    let ok = Config::from_lookup(vars(&[db])).expect("valid");
    assert_eq!(ok.rejections, None, "no supplier mapped");

    let missing = Config::from_lookup(vars(&[
        db,
        ("SUPPLIER_ACCOUNTS", "acme=111111111111"),
        ("SUPPLIER_ACCOUNT_IDS", "111111111111"),
    ]))
    .expect_err("no rejections bucket");
    assert_eq!(missing.kind, ErrorKind::Misconfigured);
    assert!(
        missing.message.contains("REJECTIONS_BUCKET"),
        "{}",
        missing.message
    );

    let invalid =
        Config::from_lookup(vars(&[("DATABASE_URL", "mysql://h/d")])).expect_err("not PostgreSQL");
    assert_eq!(invalid.kind, ErrorKind::Misconfigured);
    assert!(
        invalid.message.contains("DATABASE_URL"),
        "{}",
        invalid.message
    );
}

#[tokio::test]
async fn an_unreachable_quarantine_fails_the_task_so_it_is_retried() {
    let q = MemoryQuarantine::unavailable();
    let e = handle(fixture(), &q, fixture_now())
        .await
        .expect_err("quarantine down");
    assert!(e.is_transient());
}
