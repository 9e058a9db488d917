//! The `product-api` binary as Lambda runs it: configuration, the lazy pool, the cache
//! connection and the router wired together, one API Gateway request through the Runtime API
//! on loopback.

use test_support::lambda_runtime_api::invoke_once;

const REQUEST: &str = include_str!("../../../tests/fixtures/apigw-http-get-product.json");

#[tokio::test]
async fn with_the_cache_and_the_database_down_a_read_answers_503_for_the_client_to_retry() {
    // There but not answering: the pool and the cache give up at once.
    let (silent, _) = test_support::closing_peer();
    let request: serde_json::Value = serde_json::from_str(REQUEST).expect("the fixture is JSON");

    let answered = invoke_once(
        env!("CARGO_BIN_EXE_product-api"),
        &[
            (
                "DATABASE_URL",
                &format!("postgres://inventory@{silent}/inventory"),
            ),
            ("REDIS_URL", &format!("redis://{silent}")),
        ],
        &request,
    )
    .await;

    assert_eq!(
        answered.outcome.as_deref(),
        Some("response"),
        "{answered:?}"
    );
    assert_eq!(answered.body["statusCode"], 503, "{answered:?}");
    let body = answered.body["body"].as_str().unwrap_or_default();
    assert!(body.contains("catalog-unavailable"), "{body}");
}
