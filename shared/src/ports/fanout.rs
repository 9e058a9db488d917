//! The fan-out's port for starting executions. (Its other need, putting oversized records,
//! is the [`ObjectStore`](super::ObjectStore) the archive writes through.)

use crate::error::PipelineError;
use async_trait::async_trait;

/// What starting an execution did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// A new execution is running.
    Started,
    /// An execution with this name exists already: the batch was delivered before.
    AlreadyStarted,
}

/// Starts state-machine executions.
#[async_trait]
pub trait ExecutionStarter: Send + Sync {
    /// Starts an execution named `name` with `input` (JSON). An execution of the same name
    /// that exists already is [`StartOutcome::AlreadyStarted`], not an error.
    async fn start(&self, name: &str, input: &str) -> Result<StartOutcome, PipelineError>;
}
