//! The `validate` Lambda: config and pool once per cold start, then one chunk per invocation.

use inventory::adapters::lambda::init_tracing;
use inventory::adapters::postgres::{PgQuarantine, connect_from_config};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let config = validate::Config::from_env()?;
    let quarantine = PgQuarantine::new(connect_from_config(&config.database).await?);
    let quarantine = &quarantine;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        validate::handle(event.payload, quarantine).await
    }))
    .await
}
