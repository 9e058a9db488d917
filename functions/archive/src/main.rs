//! Lambda entry point of `archive`: configuration and the S3 client are built once per
//! process, then every invocation runs [`archive::handle`].

use archive::{Config, handle};
use inventory::adapters::aws;
use inventory::adapters::s3::S3ObjectStore;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    inventory::adapters::lambda::init_tracing();
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let sdk = aws::sdk_config().await;
    let store = S3ObjectStore::new(aws::s3_client(&sdk), config.archive);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handle(event.payload, store)
    }))
    .await
}
