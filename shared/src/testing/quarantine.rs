//! The quarantine and the supplier-visible rejection store, in memory.

use crate::domain::keys::RejectionKey;
use crate::error::{ErrorKind, PipelineError};
use crate::ports::{Quarantine, QuarantinedRecord, RejectionStore};
use async_trait::async_trait;
use std::sync::Mutex;

/// Keeps every quarantined record, or fails like an unreachable database.
#[derive(Debug, Default)]
pub struct MemoryQuarantine {
    kept: Mutex<Vec<QuarantinedRecord>>,
    /// Every call fails with `DependencyUnavailable`.
    pub unavailable: bool,
}

impl MemoryQuarantine {
    /// A quarantine whose every call fails with `DependencyUnavailable`.
    pub fn unavailable() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    /// The records kept so far, in the order they came.
    pub fn kept(&self) -> Vec<QuarantinedRecord> {
        self.kept.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Quarantine for MemoryQuarantine {
    /// Keeps every record it is given, so it counts them all as new.
    async fn quarantine(&self, records: &[QuarantinedRecord]) -> Result<usize, PipelineError> {
        if self.unavailable {
            return Err(PipelineError::new(
                ErrorKind::DependencyUnavailable,
                "database unreachable",
            ));
        }
        self.kept.lock().expect("lock").extend_from_slice(records);
        Ok(records.len())
    }
}

/// Keeps every object written, as (key, body), or fails like an unreachable bucket.
#[derive(Debug, Default)]
pub struct MemoryRejectionStore {
    objects: Mutex<Vec<(String, Vec<u8>)>>,
    /// Every call fails with `DependencyUnavailable`.
    pub unavailable: bool,
}

impl MemoryRejectionStore {
    /// A store whose every call fails with `DependencyUnavailable`.
    pub fn unavailable() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    /// The objects written so far, in order: the key as text and the JSON-lines body.
    pub fn objects(&self) -> Vec<(String, Vec<u8>)> {
        self.objects.lock().expect("lock").clone()
    }
}

#[async_trait]
impl RejectionStore for MemoryRejectionStore {
    async fn put(&self, key: &RejectionKey, jsonl: Vec<u8>) -> Result<(), PipelineError> {
        if self.unavailable {
            return Err(PipelineError::new(
                ErrorKind::DependencyUnavailable,
                "s3 down",
            ));
        }
        self.objects
            .lock()
            .expect("lock")
            .push((key.to_string(), jsonl));
        Ok(())
    }
}
