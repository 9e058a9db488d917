//! The `fanout` Lambda binary: configuration and clients once, then one batch per invocation.

use aws_lambda_events::event::kinesis::KinesisEvent;
use fanout::config::Config;
use fanout::s3::S3OversizeStore;
use fanout::sfn::SfnExecutionStarter;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    inventory::adapters::lambda::init_tracing();
    let config = Config::from_env().map_err(|e| e.detailed())?;
    let aws = aws_config::load_from_env().await;
    let starter =
        SfnExecutionStarter::new(aws_sdk_sfn::Client::new(&aws), &config.state_machine_arn);
    let store = S3OversizeStore::new(aws_sdk_s3::Client::new(&aws), config.oversized.clone());
    let (starter, store) = (&starter, &store);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KinesisEvent>| async move {
            fanout::fan_out(event.payload, starter, store)
                .await
                .map_err(Diagnostic::from)
        },
    ))
    .await
}
