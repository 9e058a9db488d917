//! The `fanout` Lambda binary: configuration and clients once, then one batch per invocation.

use aws_lambda_events::event::kinesis::KinesisEvent;
use inventory::adapters::aws;
use inventory::adapters::lambda::{config_or_report, init_tracing};
use inventory::adapters::s3::S3ObjectStore;
use inventory::config::FromEnv;
use inventory_fanout::Config;
use inventory_fanout::sfn::SfnExecutionStarter;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = config_or_report(Config::from_env())?;
    // A hung call comes back as a transient error (its chunk is reported and redelivered)
    // long before the function's own timeout fails the whole batch: see aws::timeouts.
    let sdk = aws::sdk_config().await;
    let starter =
        SfnExecutionStarter::new(aws_sdk_sfn::Client::new(&sdk), &config.state_machine_arn);
    let store = S3ObjectStore::new(aws::s3_client(&sdk), config.oversized.clone());
    let (starter, store) = (&starter, &store);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KinesisEvent>| async move {
            inventory_fanout::handle(event.payload, starter, store).await
        },
    ))
    .await
}
