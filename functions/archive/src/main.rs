//! Lambda entry point of `archive`: configuration and the S3 client are built once per
//! process, then every invocation runs [`archive::handle`].

use archive::{Config, handle, s3_client};
use aws_config::BehaviorVersion;
use inventory::adapters::s3::S3ArchiveStore;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    inventory::adapters::lambda::init_tracing();
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let store = S3ArchiveStore::new(s3_client(&sdk), config.archive);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handle(event.payload, store)
    }))
    .await
}
