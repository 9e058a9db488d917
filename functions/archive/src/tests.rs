//! The handler against an in-memory archive store and the shared JSON fixture.

use crate::{Config, handle};
use inventory::config::FromEnv;
use inventory::ports::ObjectKind;
use inventory::testing::MemoryObjectStore;
use inventory::{ChunkInput, ErrorKind};
use std::io::Read as _;

const FIXTURE: &str = include_str!("../../../tests/fixtures/archive-chunk-input.json");

fn store() -> MemoryObjectStore {
    MemoryObjectStore::new("archive-test")
}

fn fixture() -> serde_json::Value {
    serde_json::from_str(FIXTURE).expect("the fixture is JSON")
}

fn gunzip_lines(body: &[u8]) -> Vec<serde_json::Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .expect("gzip");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[tokio::test]
async fn a_chunk_is_archived_whole_at_its_deterministic_key() {
    let store = store();

    let out = handle(fixture(), &store).await.expect("archived");

    let input: ChunkInput = serde_json::from_value(fixture()).expect("fixture is a chunk");
    let expected_key = format!(
        "raw/inventory-updates-dev/dt=2026-11-24/hour=07/{}.jsonl.gz",
        input.execution_name()
    );
    assert_eq!(out.bucket, "archive-test");
    assert_eq!(out.key, expected_key);
    assert_eq!(out.records, 5);
    let objects = store.written();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].key, expected_key);
    assert_eq!(objects[0].kind, ObjectKind::GzipJsonLines);
    assert_eq!(out.bytes, objects[0].body.len());
    let lines = gunzip_lines(&objects[0].body);
    let sequences: Vec<&str> = lines
        .iter()
        .map(|l| l["sequence_number"].as_str().expect("string"))
        .collect();
    let expected: Vec<&str> = input
        .records
        .iter()
        .map(|r| r.sequence_number.as_str())
        .collect();
    assert_eq!(sequences, expected, "every record, valid or not, in order");
    assert!(
        lines[4]["data_ref"]["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("oversized/"))
    );
}

#[tokio::test]
async fn the_same_chunk_archived_twice_goes_to_the_same_key() {
    let store = store();

    let first = handle(fixture(), &store).await.expect("archived");
    let second = handle(fixture(), &store).await.expect("archived again");

    assert_eq!(first, second);
    let objects = store.written();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0], objects[1]);
}

#[tokio::test]
async fn a_payload_that_is_not_a_chunk_is_an_invalid_payload() {
    let store = store();
    let mut missing_records = fixture();
    missing_records
        .as_object_mut()
        .expect("object")
        .remove("records");
    let mut bad_time = fixture();
    bad_time["records"][0]["arrived_at"] = "yesterday".into();

    for payload in [
        serde_json::Value::Null,
        serde_json::json!({}),
        serde_json::json!([1, 2]),
        missing_records,
        bad_time,
    ] {
        let e = handle(payload.clone(), &store)
            .await
            .expect_err("not a chunk");
        assert_eq!(e.kind.name(), "Inventory.InvalidPayload", "{payload}");
    }
    assert!(store.written().is_empty());
}

#[tokio::test]
async fn a_chunk_without_records_is_an_invalid_payload() {
    let mut empty = fixture();
    empty["records"] = serde_json::json!([]);

    let e = handle(empty, &store())
        .await
        .expect_err("nothing to archive");

    assert_eq!(e.kind.name(), "Inventory.InvalidPayload");
}

#[tokio::test]
async fn a_store_failure_keeps_its_stable_name() {
    for (kind, name) in [
        (ErrorKind::Throttled, "Inventory.Throttled"),
        (
            ErrorKind::DependencyUnavailable,
            "Inventory.DependencyUnavailable",
        ),
        (ErrorKind::Misconfigured, "Inventory.Misconfigured"),
    ] {
        let store = store().failing_every_put(kind);

        let e = handle(fixture(), &store).await.expect_err("store fails");

        assert_eq!(e.kind.name(), name);
        assert!(store.written().is_empty());
    }
}

#[test]
fn the_config_names_a_missing_bucket() {
    let e = Config::from_lookup(|_| None).expect_err("no bucket");
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(e.message.contains("ARCHIVE_BUCKET"), "{}", e.message);
    let c = Config::from_lookup(|n| {
        (n == "ARCHIVE_BUCKET").then(|| "inventory-archive-dev".to_owned())
    })
    .expect("valid");
    assert_eq!(c.archive.bucket, "inventory-archive-dev");
    assert_eq!(c.archive.kms_key_id, None);
}
