//! The `persist` binary as Lambda runs it: configuration, the lazy pool and the handler wired
//! together, one invocation through the Runtime API on loopback.

use test_support::lambda_runtime_api::invoke_once;

/// A chunk of one valid update that arrived just now.
fn chunk() -> serde_json::Value {
    let now = chrono::Utc::now().to_rfc3339();
    serde_json::json!({
        "chunk": {"stream": "inventory-updates-test", "shard_id": "shardId-000000000000",
                  "first_sequence": "1", "last_sequence": "1", "index": 0},
        "updates": [{
            "update_key": "a".repeat(64), "product_id": "SKU-1", "supplier_id": "acme",
            "quantity": 5, "price": "10.5", "currency": "EUR", "occurred_at": now,
            "occurred_at_from_supplier": true, "update_id": null,
            "source": {"shard_id": "shardId-000000000000", "sequence_number": "1", "arrived_at": now}
        }]
    })
}

#[tokio::test]
async fn a_database_that_does_not_answer_fails_the_invocation_as_transient_not_the_cold_start() {
    // A database that is there but does not answer: the pool gives up at once (a refused port
    // would have it retry until its acquire timeout).
    let (silent, _) = test_support::closing_peer();
    let silent = format!("postgres://inventory@{silent}/inventory");

    let answered = invoke_once(
        env!("CARGO_BIN_EXE_persist"),
        &[("DATABASE_URL", &silent)],
        &chunk(),
    )
    .await;

    assert_eq!(answered.outcome.as_deref(), Some("error"), "{answered:?}");
    assert_eq!(
        answered.error_type(),
        Some("Inventory.DependencyUnavailable"),
        "{answered:?}"
    );
}

#[tokio::test]
async fn a_cold_start_without_a_database_setting_stops_with_one_line_naming_it() {
    let answered = invoke_once(env!("CARGO_BIN_EXE_persist"), &[], &chunk()).await;

    assert_eq!(answered.outcome, None, "{answered:?}");
    assert!(!answered.exited_ok);
    assert!(
        answered.logs.contains("Inventory.Misconfigured") && answered.logs.contains("DB_HOST"),
        "{}",
        answered.logs
    );
}
