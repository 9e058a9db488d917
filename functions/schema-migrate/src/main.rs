//! The `schema-migrate` Lambda: config, pool and HTTP client once per cold start; then a
//! direct invocation or a CloudFormation custom-resource request per invocation.

use inventory::PipelineError;
use inventory::adapters::aws;
use inventory::adapters::custom_resource::{Budget, ResponseSender};
use inventory::adapters::lambda::{config_or_report, init_tracing, report_bad_configuration};
use inventory::adapters::s3_export::S3ExportStore;
use inventory::config::FromEnv;
use inventory::ports::{ExportStore, LoginSecret, SchemaMigrator};
use inventory_schema_migrate::{
    Config, PgSchemaMigrator, SecretsManagerLogin, UnavailableMigrator,
};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use std::sync::Arc;

/// The migrator, set up from the configuration. Its failure is logged once: a bad
/// configuration as every function logs one, anything else as a failed cold start.
async fn migrator() -> Result<PgSchemaMigrator, PipelineError> {
    let config = Config::from_env().inspect_err(report_bad_configuration)?;
    build(config).await.inspect_err(|e| {
        tracing::error!(error_type = e.kind.name(), error = %e.detailed(), "cold start failed; every request will report it");
    })
}

async fn build(config: Config) -> Result<PgSchemaMigrator, PipelineError> {
    // Exports of a whole day go up and are read back within a 15-minute budget.
    let sdk = aws::bulk_sdk_config().await;
    let login = config.app_secret_arn.map(|arn| {
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        Arc::new(SecretsManagerLogin { client, arn }) as Arc<dyn LoginSecret>
    });
    let retention = config.retention.map(|(days, archive)| {
        let store = S3ExportStore::new(aws::s3_client(&sdk), archive);
        (days, Arc::new(store) as Arc<dyn ExportStore>)
    });
    Ok(PgSchemaMigrator {
        db: inventory::adapters::postgres::connect_from_config(&config.database, &sdk).await?,
        login,
        retention,
    })
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let sender = config_or_report(ResponseSender::new())?;
    // A setup failure must not stop the runtime: CloudFormation would wait for an answer
    // that never comes. Every request is answered with the setup error instead.
    let migrator: Arc<dyn SchemaMigrator> = match migrator().await {
        Ok(m) => Arc::new(m),
        Err(e) => Arc::new(UnavailableMigrator::new(&e)),
    };
    let sender = &sender;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let migrator = migrator.clone();
        async move {
            let budget = Budget::from_deadline_ms(
                event.context.deadline,
                event.context.env_config.log_stream.clone(),
            );
            inventory_schema_migrate::handle(event.payload, &budget, sender, migrator).await
        }
    }))
    .await
}
