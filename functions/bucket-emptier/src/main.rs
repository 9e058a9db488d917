//! The `bucket-emptier` Lambda: a CloudFormation custom resource that empties the archive
//! bucket when the stack deletes it, and always answers CloudFormation.

// The runtime's future nests the SDK's and the responder's futures deeper than rustc's default
// layout-query limit (the compiler's own suggestion).
#![recursion_limit = "256"]

use aws_sdk_s3::Client;
use inventory::adapters::aws;
use inventory::adapters::custom_resource::{Budget, ResponseSender, respond};
use inventory::adapters::lambda::init_tracing;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let s3 = aws::s3_client(&aws::bulk_sdk_config().await);
    let sender = ResponseSender::new()?;
    lambda_runtime::run(service_fn(|event| handle(event, &s3, &sender))).await
}

/// Answers one custom-resource request; an error only when CloudFormation could not be told.
async fn handle(
    event: LambdaEvent<Value>,
    s3: &Client,
    sender: &ResponseSender,
) -> Result<(), Diagnostic> {
    let budget = Budget::from_deadline_ms(
        event.context.deadline,
        event.context.env_config.log_stream.clone(),
    );
    let s3 = s3.clone();
    respond(event.payload, &budget, sender, move |request| async move {
        bucket_emptier::on_request(&s3, request).await
    })
    .await
    .map(|_| ())
    .map_err(Diagnostic::from)
}
