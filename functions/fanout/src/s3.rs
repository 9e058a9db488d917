//! [`OversizeStore`] on S3: one object per oversized record, SSE-KMS when a key is configured.

use crate::ports::OversizeStore;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use inventory::adapters::s3::{ArchiveConfig, classify};
use inventory::{ArchiveKey, PipelineError};

/// Puts oversized records in the archive bucket, under `oversized/`.
#[derive(Debug, Clone)]
pub struct S3OversizeStore {
    client: Client,
    config: ArchiveConfig,
}

impl S3OversizeStore {
    pub fn new(client: Client, config: ArchiveConfig) -> Self {
        Self { client, config }
    }
}

#[async_trait]
impl OversizeStore for S3OversizeStore {
    fn bucket(&self) -> &str {
        &self.config.bucket
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.config.bucket, key = %key, bytes = data.len(), sse_kms = self.config.kms_key_id.is_some()))]
    async fn put(&self, key: &ArchiveKey, data: &[u8]) -> Result<(), PipelineError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.config.bucket)
            .key(key.as_str())
            .content_type("application/octet-stream")
            .body(ByteStream::from(data.to_vec()));
        if let Some(kms_key_id) = &self.config.kms_key_id {
            request = request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms_key_id)
                .bucket_key_enabled(true);
        }
        request.send().await.map_err(|e| {
            PipelineError::new(
                classify(&e),
                format!(
                    "could not write s3://{}/{key}: {}",
                    self.config.bucket,
                    DisplayErrorContext(&e)
                ),
            )
        })?;
        Ok(())
    }
}
