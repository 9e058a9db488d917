//! Lambda entry point of `cache-invalidate`: configuration, the AUTH token and the Redis
//! connection manager are set up once per process, then every invocation runs
//! [`cache_invalidate::handle`].

use inventory::adapters::lambda::{config_or_report, init_tracing};
use inventory::config::FromEnv;
use inventory_cache_invalidate::{Config, connect, handle};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    inventory::adapters::tls::install_crypto_provider();
    init_tracing();
    let config = config_or_report(Config::from_env())?;
    let sdk = inventory::adapters::aws::sdk_config().await;
    let cache = connect(&config, &sdk)
        .await
        .inspect_err(|e| tracing::error!(error = %e.detailed(), "no cache"))?;
    let cache = &cache;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handle(event.payload, cache)
    }))
    .await
}
