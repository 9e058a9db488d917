//! The `validate` binary as Lambda runs it: configuration, the lazy pool behind the quarantine
//! and the handler wired together, one invocation through the Runtime API on loopback.

use test_support::lambda_runtime_api::invoke_once;

const CHUNK: &str = include_str!("../../../tests/fixtures/chunk-with-bad-records.json");

#[tokio::test]
async fn a_quarantine_it_cannot_reach_fails_the_invocation_as_transient_so_nothing_is_dropped() {
    let refused = format!(
        "postgres://inventory@127.0.0.1:{}/inventory",
        test_support::free_port()
    );
    let chunk: serde_json::Value = serde_json::from_str(CHUNK).expect("the fixture is JSON");

    let answered = invoke_once(
        env!("CARGO_BIN_EXE_validate"),
        &[("DATABASE_URL", &refused)],
        &chunk,
    )
    .await;

    assert_eq!(answered.outcome.as_deref(), Some("error"), "{answered:?}");
    assert_eq!(
        answered.error_type(),
        Some("Inventory.DependencyUnavailable"),
        "{answered:?}"
    );
}
