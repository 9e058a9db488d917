//! The `schema-migrate` binary as Lambda runs it, one CloudFormation request through the
//! Runtime API on loopback, the ResponseURL a stub on loopback.

use test_support::lambda_runtime_api::invoke_once;
use test_support::stub_http::StubServer;

const CREATE: &str = include_str!("../../../tests/fixtures/cfn-schema-migrate-create.json");

#[tokio::test]
async fn a_bad_configuration_does_not_stop_the_runtime_cloudformation_gets_the_reason() {
    let cloudformation = StubServer::statuses(&[]).await;
    let mut create: serde_json::Value = serde_json::from_str(CREATE).expect("the fixture is JSON");
    create["ResponseURL"] = cloudformation.url("/response?X-Amz-Signature=s").into();

    // No database setting at all.
    let answered = invoke_once(env!("CARGO_BIN_EXE_schema-migrate"), &[], &create).await;

    let response = cloudformation.next_request().await;
    assert_eq!(response.method(), "PUT");
    let response = response.json();
    assert_eq!(response["Status"], "FAILED", "{response}");
    assert_eq!(response["LogicalResourceId"], "SchemaMigration");
    let reason = response["Reason"].as_str().unwrap_or_default();
    assert!(reason.contains("DB_HOST"), "{reason}");
    assert!(
        answered.logs.contains("Inventory.Misconfigured"),
        "{}",
        answered.logs
    );
}
