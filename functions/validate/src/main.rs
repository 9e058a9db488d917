//! The `validate` Lambda: config, pool and S3 client once per cold start, then one chunk per
//! invocation.

use inventory::adapters::aws;
use inventory::adapters::lambda::{config_or_report, init_tracing};
use inventory::adapters::postgres::{PgQuarantine, connect_from_config};
use inventory::adapters::s3_rejections::S3RejectionStore;
use inventory::config::FromEnv;
use inventory::ports::Quarantine;
use inventory::steps::supplier_rejections::SupplierVisibleQuarantine;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = config_or_report(inventory_validate::Config::from_env())?;
    let sdk = aws::sdk_config().await;
    let quarantine = PgQuarantine::new(connect_from_config(&config.database, &sdk).await?);
    let store = config
        .rejections
        .as_ref()
        .map(|rejections| S3RejectionStore::new(aws::s3_client(&sdk), rejections));
    let visible = match (&store, &config.rejections) {
        (Some(store), Some(rejections)) => Some(SupplierVisibleQuarantine {
            quarantine: &quarantine,
            store,
            accounts: &rejections.accounts,
        }),
        _ => None,
    };
    let quarantine: &dyn Quarantine = match &visible {
        Some(v) => v,
        None => &quarantine,
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        inventory_validate::handle(event.payload, quarantine, chrono::Utc::now()).await
    }))
    .await
}
