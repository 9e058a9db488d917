//! The `archive` binary as Lambda runs it: configuration, the S3 client and the handler wired
//! together, one invocation through the Runtime API on loopback, S3 a stub on loopback.

use test_support::lambda_runtime_api::invoke_once;
use test_support::stub_http::StubServer;

const CHUNK: &str = include_str!("../../../tests/fixtures/archive-chunk-input.json");

#[tokio::test]
async fn a_chunk_goes_to_the_configured_bucket_encrypted_with_the_configured_key() {
    let s3 = StubServer::always(200, &[("etag", "\"0123\"")], "").await;
    let chunk: serde_json::Value = serde_json::from_str(CHUNK).expect("the fixture is JSON");

    let answered = invoke_once(
        env!("CARGO_BIN_EXE_archive"),
        &[
            ("ARCHIVE_BUCKET", "archive-under-test"),
            ("ARCHIVE_KMS_KEY_ID", "alias/archive-under-test"),
            ("AWS_ENDPOINT_URL", s3.endpoint()),
        ],
        &chunk,
    )
    .await;

    assert_eq!(
        answered.outcome.as_deref(),
        Some("response"),
        "{answered:?}"
    );
    assert_eq!(answered.body["bucket"], "archive-under-test");
    let key = answered.body["key"].as_str().expect("a key");
    let put = s3.next_request().await;
    assert_eq!(put.method(), "PUT");
    assert!(
        // Path-style, the key percent-encoded (`dt=` is `dt%3D`).
        put.target()
            .starts_with(&format!("/archive-under-test/{}", key.replace('=', "%3D"))),
        "{}",
        put.target()
    );
    assert_eq!(put.header("x-amz-server-side-encryption"), Some("aws:kms"));
    assert_eq!(
        put.header("x-amz-server-side-encryption-aws-kms-key-id"),
        Some("alias/archive-under-test")
    );
}

#[tokio::test]
async fn a_cold_start_without_a_bucket_stops_with_one_line_naming_it() {
    let chunk: serde_json::Value = serde_json::from_str(CHUNK).expect("the fixture is JSON");

    let answered = invoke_once(env!("CARGO_BIN_EXE_archive"), &[], &chunk).await;

    assert_eq!(answered.outcome, None, "{answered:?}");
    assert!(!answered.exited_ok);
    assert!(
        answered.logs.contains("Inventory.Misconfigured")
            && answered.logs.contains("ARCHIVE_BUCKET"),
        "{}",
        answered.logs
    );
}
