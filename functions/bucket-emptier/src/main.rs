//! The `bucket-emptier` Lambda: a CloudFormation custom resource that empties the archive
//! bucket when the stack deletes it, and always answers CloudFormation. It reads no
//! configuration: the bucket is named by each request.

// The runtime's future nests the SDK's and the responder's futures deeper than rustc's default
// layout-query limit (the compiler's own suggestion).
#![recursion_limit = "256"]

use inventory::adapters::aws;
use inventory::adapters::custom_resource::{Budget, ResponseSender};
use inventory::adapters::lambda::{config_or_report, init_tracing};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let s3 = aws::s3_client(&aws::bulk_sdk_config().await);
    let sender = config_or_report(ResponseSender::new())?;
    let (s3, sender) = (&s3, &sender);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let budget = Budget::from_deadline_ms(
            event.context.deadline,
            event.context.env_config.log_stream.clone(),
        );
        inventory_bucket_emptier::handle(event.payload, &budget, s3, sender).await
    }))
    .await
}
