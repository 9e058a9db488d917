//! The two things the fan-out needs from AWS, as small traits so the batch logic runs against
//! in-memory fakes in tests.

use async_trait::async_trait;
use inventory::{ArchiveKey, PipelineError};

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

/// Keeps the bytes of records too large to travel inline.
#[async_trait]
pub trait OversizeStore: Send + Sync {
    /// The bucket the objects go to (it is named in each record's `data_ref`).
    fn bucket(&self) -> &str;
    /// Writes (or overwrites, on a redelivery) one record's bytes.
    async fn put(&self, key: &ArchiveKey, data: &[u8]) -> Result<(), PipelineError>;
}
