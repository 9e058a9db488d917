//! Lambda entry point of `archive`: configuration and the S3 client are built once per
//! process, then every invocation runs [`archive::handle`].

use inventory::adapters::aws;
use inventory::adapters::lambda::{config_or_report, init_tracing};
use inventory::adapters::s3::S3ObjectStore;
use inventory::config::FromEnv;
use inventory_archive::{Config, handle};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = config_or_report(Config::from_env())?;
    let sdk = aws::sdk_config().await;
    let store = S3ObjectStore::new(aws::s3_client(&sdk), config.archive);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handle(event.payload, store)
    }))
    .await
}
