//! The `fanout` binary as Lambda runs it: configuration, the Step Functions and S3 clients and
//! the handler wired together, one Kinesis batch through the Runtime API on loopback, the AWS
//! endpoint a stub on loopback.

use test_support::lambda_runtime_api::invoke_once;
use test_support::stub_http::StubServer;

const BATCH: &str = include_str!("../../../tests/fixtures/kinesis-batch.json");
const STATE_MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:under-test";

#[tokio::test]
async fn a_batch_starts_its_executions_on_the_configured_state_machine() {
    let sfn = StubServer::always(
        200,
        &[("content-type", "application/x-amz-json-1.0")],
        r#"{"executionArn":"arn:aws:states:us-east-1:123456789012:execution:under-test:x","startDate":1795000000.0}"#,
    )
    .await;
    let batch: serde_json::Value = serde_json::from_str(BATCH).expect("the fixture is JSON");

    let answered = invoke_once(
        env!("CARGO_BIN_EXE_fanout"),
        &[
            ("STATE_MACHINE_ARN", STATE_MACHINE),
            ("ARCHIVE_BUCKET", "archive-under-test"),
            ("AWS_ENDPOINT_URL", sfn.endpoint()),
        ],
        &batch,
    )
    .await;

    assert_eq!(
        answered.outcome.as_deref(),
        Some("response"),
        "{answered:?}"
    );
    assert_eq!(
        answered.body["batchItemFailures"],
        serde_json::json!([]),
        "{answered:?}"
    );
    let start = sfn.next_request().await;
    assert_eq!(
        start.header("x-amz-target"),
        Some("AWSStepFunctions.StartExecution")
    );
    assert_eq!(start.json()["stateMachineArn"], STATE_MACHINE);
}
