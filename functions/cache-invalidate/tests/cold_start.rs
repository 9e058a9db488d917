//! The `cache-invalidate` binary as Lambda runs it: configuration, the lazy Redis connection
//! and the handler wired together, one invocation through the Runtime API on loopback.

use test_support::lambda_runtime_api::invoke_once;

const INPUT: &str = include_str!("../../../tests/fixtures/cache-invalidate-input.json");

#[tokio::test]
async fn an_unreachable_cache_fails_the_invocation_as_transient_so_it_is_retried() {
    let refused = format!("redis://127.0.0.1:{}", test_support::free_port());
    let input: serde_json::Value = serde_json::from_str(INPUT).expect("the fixture is JSON");

    let answered = invoke_once(
        env!("CARGO_BIN_EXE_cache-invalidate"),
        &[("REDIS_URL", &refused)],
        &input,
    )
    .await;

    assert_eq!(answered.outcome.as_deref(), Some("error"), "{answered:?}");
    assert_eq!(
        answered.error_type(),
        Some("Inventory.DependencyUnavailable"),
        "{answered:?}"
    );
}
