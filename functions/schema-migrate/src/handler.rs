//! One invocation: a direct one (migrate, maintain or retain), or a CloudFormation
//! custom-resource request, which is always answered through its `ResponseURL`.

use inventory::adapters::custom_resource::{
    self, Budget, CustomResourceEvent, Outcome, RequestKind, ResponseSender,
};
use inventory::domain::partitions::PartitionReport;
use inventory::domain::retention::RetentionReport;
use inventory::ports::SchemaMigrator;
use inventory::{ErrorKind, PipelineError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The physical id of the schema resource: the same on every Create, so a replacement never
/// makes CloudFormation "delete" the schema.
pub const PHYSICAL_ID: &str = "inventory-database-schema";

/// A direct invocation's payload: `{}` (or nothing) migrates, `{"action":"maintain"}`
/// maintains the event store's partitions, `{"action":"retain"}` runs its retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    #[serde(default)]
    pub action: Action,
}

/// What a direct invocation asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Migrate,
    Maintain,
    Retain,
}

/// How long a deploy lets the retention run after the migrations.
pub const DEPLOY_RETENTION_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// The answer to `{"action":"retain"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetainOutput {
    pub event_store: RetentionReport,
}

/// Time kept back from the invocation's deadline: the part or drop in flight when the budget
/// runs out finishes within it (a part is seconds).
pub const RETENTION_MARGIN: std::time::Duration = std::time::Duration::from_secs(90);

/// The answer to `{"action":"maintain"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintainOutput {
    pub event_store: PartitionReport,
}

/// A direct invocation's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateOutput {
    /// Migrations this run applied (empty when the schema was current).
    pub applied: Vec<String>,
    /// Every migration this build knows, oldest first.
    pub known: Vec<String>,
}

/// Whether a payload is a CloudFormation custom-resource request (even a malformed one, which
/// still gets a FAILED answer when it has a `ResponseURL`).
pub fn is_custom_resource(payload: &Value) -> bool {
    payload.get("RequestType").is_some() || payload.get("ResponseURL").is_some()
}

/// Handles one invocation of either kind.
pub async fn handle(
    payload: Value,
    budget: &Budget,
    sender: &ResponseSender,
    migrator: Arc<dyn SchemaMigrator>,
) -> Result<Value, PipelineError> {
    if is_custom_resource(&payload) {
        let response = custom_resource::respond(payload, budget, sender, move |event| {
            on_custom_resource(migrator, event)
        })
        .await?;
        return to_value(&response);
    }
    let payload = if payload.is_null() {
        Value::Object(Default::default())
    } else {
        payload
    };
    let request: MigrateRequest = serde_json::from_value(payload).map_err(|e| {
        PipelineError::invalid_payload(format!(
            "schema-migrate expects {{}}, {{\"action\":\"maintain\"}}, {{\"action\":\"retain\"}} or a CloudFormation custom-resource request: {e}"
        ))
    })?;
    match request.action {
        Action::Migrate => {
            let applied = migrator.migrate().await?;
            to_value(&MigrateOutput {
                applied,
                known: migration::known(),
            })
        }
        Action::Maintain => to_value(&MaintainOutput {
            event_store: maintain_checked(migrator.as_ref()).await?,
        }),
        Action::Retain => {
            let deadline =
                std::time::Instant::now() + budget.time_left.saturating_sub(RETENTION_MARGIN);
            to_value(&RetainOutput {
                event_store: retain_logged(migrator.as_ref(), deadline).await?,
            })
        }
    }
}

/// The retention, then its log line: "event store retention ran" when every due day is gone
/// (the line the stack's heartbeat alarm counts: infra/template.yaml,
/// EventStoreRetentionRanFilter), "event store retention continues" when the run stopped with
/// days left (its time budget, a running rebuild, another run), which the next run picks up.
pub async fn retain_logged(
    migrator: &dyn SchemaMigrator,
    deadline: std::time::Instant,
) -> Result<RetentionReport, PipelineError> {
    let report = migrator.retain(deadline).await?;
    let retired_days = report.retired_days.len();
    if report.complete() {
        tracing::info!(
            retired_days,
            exported_parts = report.exported_parts,
            exported_events = report.exported_events,
            overdue_days = report.overdue_days,
            oldest_from = ?report.oldest_from,
            "event store retention ran"
        );
    } else {
        tracing::info!(
            retired_days,
            exported_parts = report.exported_parts,
            exported_events = report.exported_events,
            overdue_days = report.overdue_days,
            oldest_from = ?report.oldest_from,
            stopped = report.stopped.as_deref().unwrap_or_default(),
            "event store retention continues"
        );
    }
    Ok(report)
}

/// The event store's partition maintenance, then a check of what it left; on success, the log
/// line the stack's heartbeat alarm counts (infra/template.yaml, EventStoreMaintainedFilter).
pub async fn maintain_checked(
    migrator: &dyn SchemaMigrator,
) -> Result<PartitionReport, PipelineError> {
    let report = migrator.maintain().await?;
    report.check(chrono::Utc::now())?;
    tracing::info!(
        partitions = report.partitions,
        covered_until = ?report.covered_until,
        pruned_keys = report.pruned_keys,
        database_bytes = report.database_bytes,
        "event store partitions maintained"
    );
    Ok(report)
}

/// Create and Update migrate; Delete leaves the schema (and the data) alone: the database
/// goes away with its own resource.
pub async fn on_custom_resource(
    migrator: Arc<dyn SchemaMigrator>,
    event: CustomResourceEvent,
) -> Result<Outcome, PipelineError> {
    let applied = match event.kind {
        RequestKind::Create | RequestKind::Update => {
            let applied = migrator.migrate().await?;
            // A deploy maintains the partitions too, so the heartbeat has its first data point
            // before the first daily run. Its failure does not fail the deploy: the migrations
            // are what the deploy needs, and the daily run reports and alarms.
            if let Err(e) = maintain_checked(migrator.as_ref()).await {
                tracing::warn!(error_type = e.kind.name(), error = %e.detailed(), "event store maintenance after the migrations failed");
            }
            // And a short retention run, so the retention's heartbeat has its first data point
            // on a new stack (nothing is due there) instead of alarming until the first hourly
            // run; on a stack with days due it stops after DEPLOY_RETENTION_BUDGET and the
            // hourly runs go on.
            let deadline = std::time::Instant::now() + DEPLOY_RETENTION_BUDGET;
            if let Err(e) = retain_logged(migrator.as_ref(), deadline).await {
                tracing::warn!(error_type = e.kind.name(), error = %e.detailed(), "event store retention after the migrations failed");
            }
            applied
        }
        RequestKind::Delete => {
            tracing::info!("Delete: the schema is left as it is");
            Vec::new()
        }
    };
    let latest = migration::known().last().cloned().unwrap_or_default();
    Ok(Outcome {
        // Keep the id CloudFormation knows on Update and Delete; a stable one on Create.
        physical_resource_id: Some(
            event
                .physical_resource_id
                .clone()
                .unwrap_or_else(|| PHYSICAL_ID.to_owned()),
        ),
        data: [
            ("Applied".to_owned(), applied.len().to_string()),
            ("LatestMigration".to_owned(), latest),
        ]
        .into(),
    })
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, PipelineError> {
    serde_json::to_value(v).map_err(|e| {
        PipelineError::with_source(ErrorKind::Internal, "could not encode the answer", e)
    })
}
