//! The `validate` binary as Lambda runs it: configuration, the lazy pool behind the quarantine
//! and the handler wired together, one invocation through the Runtime API on loopback.

use test_support::lambda_runtime_api::invoke_once;

const CHUNK: &str = include_str!("../../../tests/fixtures/chunk-with-bad-records.json");

#[tokio::test]
async fn a_quarantine_that_does_not_answer_fails_the_invocation_as_transient_so_nothing_is_dropped()
{
    // A database that is there but does not answer: the pool gives up at once (a refused port
    // would have it retry until its acquire timeout).
    let (silent, _) = test_support::closing_peer();
    let silent = format!("postgres://inventory@{silent}/inventory");
    let chunk: serde_json::Value = serde_json::from_str(CHUNK).expect("the fixture is JSON");

    let answered = invoke_once(
        env!("CARGO_BIN_EXE_validate"),
        &[("DATABASE_URL", &silent)],
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
