//! The handler against an in-memory event store, and the configuration read from a map.

use crate::{Config, handle};
use inventory::PipelineError;
use inventory::config::FromEnv;
use inventory::domain::projection::InMemoryProjection;
use inventory::ports::{AppendOutcome, EventStore};
use inventory::steps::payloads::PersistOutput;
use inventory::{
    ChangedProduct, ErrorKind, EventEnvelope, InventoryUpdate, InventoryUpdateReceived,
};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Mutex;

/// An event store in memory: keys seen once, the projection through the domain's
/// `InMemoryProjection`. Or a store that reports a conflict.
#[derive(Default)]
struct MemoryStore {
    state: Mutex<(HashSet<String>, InMemoryProjection, i64)>,
    conflict: bool,
}

#[async_trait::async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, updates: &[InventoryUpdate]) -> Result<AppendOutcome, PipelineError> {
        if self.conflict {
            return Err(PipelineError::new(ErrorKind::Conflict, "deadlock detected"));
        }
        let mut guard = self.state.lock().expect("lock");
        let (keys, catalog, seq) = &mut *guard;
        let mut events = Vec::new();
        for u in updates {
            if keys.insert(u.update_key.to_string()) {
                *seq += 1;
                events.push(EventEnvelope {
                    update_key: u.update_key.clone(),
                    seq: *seq,
                    event: InventoryUpdateReceived::from(u),
                });
            }
        }
        let change = catalog.apply(&events);
        Ok(AppendOutcome {
            appended: events.len(),
            duplicates: updates.len() - events.len(),
            changed: change
                .summaries
                .iter()
                .map(|s| ChangedProduct {
                    product_id: s.product_id.clone(),
                    version: s.version,
                })
                .collect(),
        })
    }
}

fn input() -> Value {
    let update = |quantity: u32| {
        serde_json::json!({
            "update_key": format!("{quantity:064x}"),
            "product_id": "SKU-1", "supplier_id": "acme", "quantity": quantity, "price": "10.5",
            "currency": "EUR", "occurred_at": format!("2026-11-24T11:5{quantity}:00Z"),
            "occurred_at_from_supplier": true, "update_id": null,
            "source": {"shard_id": "shardId-000000000000", "sequence_number": quantity.to_string(), "arrived_at": "2026-11-24T12:00:00Z"}
        })
    };
    serde_json::json!({
        "chunk": {"stream": "inventory-updates-test", "shard_id": "shardId-000000000000", "first_sequence": "1", "last_sequence": "3", "index": 0},
        "updates": [update(1), update(3), update(1)]
    })
}

#[tokio::test]
async fn updates_are_appended_once_and_the_changed_products_reported() {
    let store = MemoryStore::default();

    let first = handle(input(), &store, input_now())
        .await
        .expect("persisted");
    let retry = handle(input(), &store, input_now())
        .await
        .expect("persisted again");

    assert_eq!((first.appended, first.duplicates), (2, 1));
    assert_eq!(first.changed.len(), 1);
    assert_eq!(first.changed[0].product_id.as_str(), "SKU-1");
    assert_eq!((retry.appended, retry.duplicates), (0, 3));
}

#[tokio::test]
async fn a_chunk_with_no_valid_updates_persists_nothing() {
    let payload = serde_json::json!({
        "chunk": {"stream": "s", "shard_id": "shardId-0", "first_sequence": "1", "last_sequence": "1", "index": 0},
        "updates": []
    });
    let store = MemoryStore {
        conflict: true,
        ..MemoryStore::default()
    };

    let out = handle(payload, &store, input_now())
        .await
        .expect("nothing to do is not an error");

    assert_eq!(out, PersistOutput::default());
}

#[tokio::test]
async fn a_payload_that_is_not_a_persist_input_is_an_invalid_payload() {
    let mut bad_key = input();
    bad_key["updates"][0]["update_key"] = Value::from("not-a-key");
    for payload in [serde_json::json!({"chunk": 1}), Value::Null, bad_key] {
        let e = handle(payload, &MemoryStore::default(), input_now())
            .await
            .expect_err("invalid");
        assert_eq!(e.kind, ErrorKind::InvalidPayload, "{}", e.message);
    }
}

/// Shortly after the test updates reached the stream.
fn input_now() -> chrono::DateTime<chrono::Utc> {
    "2026-11-24T12:01:00Z".parse().expect("a time")
}

/// Past the margin, a key may be forgotten: nothing is appended, and the error is not one
/// the state machine retries.
#[tokio::test]
async fn updates_that_reached_the_stream_longer_ago_than_the_margin_are_not_appended() {
    let store = MemoryStore::default();
    let late = input_now() + inventory::domain::update::RETURN_MARGIN;
    let e = handle(input(), &store, late).await.expect_err("too late");
    assert_eq!(e.kind, ErrorKind::InvalidPayload);
    assert!(!e.is_transient());
    assert!(e.message.contains("more than 37 days ago"), "{}", e.message);
    assert!(
        store.state.lock().expect("lock").0.is_empty(),
        "nothing appended"
    );
    handle(
        input(),
        &store,
        input_now() + inventory::domain::update::RETURN_MARGIN - chrono::Duration::minutes(2),
    )
    .await
    .expect("inside the margin");
}

#[test]
fn the_configuration_names_a_missing_or_invalid_variable() {
    let ok = Config::from_lookup(|n| (n == "DATABASE_URL").then(|| "postgres://h/d".into()))
        .expect("valid");
    assert_eq!(ok.database.pool_max, 2);

    let missing = Config::from_lookup(|_| None).expect_err("no database");
    assert_eq!(missing.kind, ErrorKind::Misconfigured);
    assert!(missing.message.contains("DB_HOST"), "{}", missing.message);

    let bad = Config::from_lookup(|n| match n {
        "DATABASE_URL" => Some("postgres://h/d".into()),
        "DB_POOL_MAX" => Some("many".into()),
        _ => None,
    })
    .expect_err("bad pool size");
    assert_eq!(bad.kind, ErrorKind::Misconfigured);
    assert!(bad.message.contains("DB_POOL_MAX"), "{}", bad.message);
}

#[tokio::test]
async fn a_conflict_is_reported_as_transient_so_the_state_machine_retries() {
    let store = MemoryStore {
        conflict: true,
        ..MemoryStore::default()
    };
    let e = handle(input(), &store, input_now())
        .await
        .expect_err("conflict");
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.is_transient());
}
