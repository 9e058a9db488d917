//! The `persist` Lambda: config and pool once per cold start, then one chunk per invocation.

use inventory::adapters::aws;
use inventory::adapters::lambda::{config_or_report, init_tracing};
use inventory::adapters::postgres::{PgEventStore, connect_from_config};
use inventory::config::FromEnv;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = config_or_report(inventory_persist::Config::from_env())?;
    let sdk = aws::sdk_config().await;
    let store = PgEventStore::new(connect_from_config(&config.database, &sdk).await?);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        inventory_persist::handle(event.payload, store, chrono::Utc::now()).await
    }))
    .await
}
