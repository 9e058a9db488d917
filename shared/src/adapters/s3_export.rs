//! The event store's exports in the archive bucket (see [`crate::domain::retention`]): written like
//! archive objects (SSE-KMS) and read back to be verified. Its own feature, since only the
//! retention (schema-migrate) reads objects back.

use super::aws;
use super::s3::{ArchiveConfig, put_object};
use crate::error::{ErrorKind, PipelineError};
use crate::ports::{ExportStore, ObjectKind};
use async_trait::async_trait;
use aws_sdk_s3::Client;

/// [`ExportStore`] on the archive bucket: the event store's exports (see
/// [`crate::domain::retention`]), encrypted like the archive.
#[derive(Debug, Clone)]
pub struct S3ExportStore {
    client: Client,
    config: ArchiveConfig,
}

impl S3ExportStore {
    pub fn new(client: Client, config: ArchiveConfig) -> Self {
        Self { client, config }
    }
}

#[async_trait]
impl ExportStore for S3ExportStore {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.config.bucket)
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.config.bucket, key = %key, bytes = body.len()))]
    async fn put(&self, key: &str, body: Vec<u8>, kind: ObjectKind) -> Result<(), PipelineError> {
        put_object(&self.client, &self.config, key, body, kind).await
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.config.bucket, key = %key))]
    async fn get(&self, key: &str) -> Result<Vec<u8>, PipelineError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                aws::pipeline_error(format_args!("could not read {}", self.location(key)), &e)
            })?;
        let body = object.body.collect().await.map_err(|e| {
            PipelineError::new(
                ErrorKind::DependencyUnavailable,
                format!("could not read {} to its end: {e}", self.location(key)),
            )
        })?;
        Ok(body.into_bytes().to_vec())
    }
}
