//! The bucket of archived chunks and oversized records, in memory.

use crate::domain::keys::ArchiveKey;
use crate::error::{ErrorKind, PipelineError};
use crate::ports::{ObjectKind, ObjectStore};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// One object as it was written: its key as text, its bytes and what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub body: Vec<u8>,
    pub kind: ObjectKind,
}

/// An [`ObjectStore`] in memory: it keeps every object written, in order, and can fail every
/// put, or the puts to given keys, like an unreachable or refusing bucket.
#[derive(Debug)]
pub struct MemoryObjectStore {
    bucket: String,
    written: Mutex<Vec<StoredObject>>,
    fail_every_put: Option<ErrorKind>,
    failing_keys: Mutex<HashMap<String, ErrorKind>>,
    put_delay: Option<Duration>,
}

impl MemoryObjectStore {
    /// An empty bucket named `bucket` that accepts every put at once.
    pub fn new(bucket: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            written: Mutex::new(Vec::new()),
            fail_every_put: None,
            failing_keys: Mutex::new(HashMap::new()),
            put_delay: None,
        }
    }

    /// The same bucket, failing every put with `kind` (and keeping nothing).
    pub fn failing_every_put(self, kind: ErrorKind) -> Self {
        Self {
            fail_every_put: Some(kind),
            ..self
        }
    }

    /// The same bucket, taking `delay` over each put (failed or not), as a network call does,
    /// so concurrent callers interleave with it.
    pub fn with_put_delay(self, delay: Duration) -> Self {
        Self {
            put_delay: Some(delay),
            ..self
        }
    }

    /// From now on, puts to `key` fail with `DependencyUnavailable` (as S3 answering 503).
    pub fn fail_puts_to(&self, key: &ArchiveKey) {
        self.failing_keys
            .lock()
            .expect("lock")
            .insert(key.to_string(), ErrorKind::DependencyUnavailable);
    }

    /// Every object written so far, in the order written (a key written twice is listed
    /// twice).
    pub fn written(&self) -> Vec<StoredObject> {
        self.written.lock().expect("lock").clone()
    }

    /// What `key` holds now (the last object written to it), if anything.
    pub fn object(&self, key: &str) -> Option<StoredObject> {
        self.written
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|o| o.key == key)
            .cloned()
    }
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(
        &self,
        key: &ArchiveKey,
        body: Vec<u8>,
        kind: ObjectKind,
    ) -> Result<(), PipelineError> {
        if let Some(delay) = self.put_delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(kind) = self.fail_every_put {
            return Err(PipelineError::new(kind, "the bucket refused the put"));
        }
        if let Some(kind) = self.failing_keys.lock().expect("lock").get(key.as_str()) {
            return Err(PipelineError::new(
                *kind,
                format!("S3 answered 503 for {key}"),
            ));
        }
        self.written.lock().expect("lock").push(StoredObject {
            key: key.to_string(),
            body,
            kind,
        });
        Ok(())
    }
}
