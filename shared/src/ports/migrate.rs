//! What the schema migrator's use case needs: the migrations, the event store's upkeep, and
//! the functions' login secret.

use crate::config::DbCredentials;
use crate::domain::partitions::PartitionReport;
use crate::domain::retention::RetentionReport;
use crate::error::PipelineError;
use async_trait::async_trait;

/// Where the functions' login (user name and password) comes from.
#[async_trait]
pub trait LoginSecret: Send + Sync {
    /// The current user name and password.
    async fn read(&self) -> Result<DbCredentials, PipelineError>;
}

/// Applies pending migrations, and keeps the event store's partitions and retention.
#[async_trait]
pub trait SchemaMigrator: Send + Sync {
    /// Applies pending migrations; returns the names of those applied.
    async fn migrate(&self) -> Result<Vec<String>, PipelineError>;
    /// The event store's partition maintenance, and the state it leaves.
    async fn maintain(&self) -> Result<PartitionReport, PipelineError>;
    /// The event store's retention, until `deadline`.
    async fn retain(&self, deadline: std::time::Instant) -> Result<RetentionReport, PipelineError>;
}
