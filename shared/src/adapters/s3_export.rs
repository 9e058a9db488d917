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

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::stub_http::{Answer, StubServer};

    fn store(endpoint: &str) -> S3ExportStore {
        let sdk = test_support::aws::stub_sdk_config(endpoint);
        S3ExportStore::new(
            aws::s3_client(&sdk),
            ArchiveConfig {
                bucket: "inventory-archive-dev".into(),
                kms_key_id: Some("alias/archive".into()),
            },
        )
    }

    const KEY: &str = "exports/event_store/2026/01/02/events.jsonl.gz";

    #[test]
    fn an_export_is_located_by_its_s3_uri() {
        let store = store("http://127.0.0.1:1");
        assert_eq!(
            store.location(KEY),
            "s3://inventory-archive-dev/exports/event_store/2026/01/02/events.jsonl.gz"
        );
    }

    #[tokio::test]
    async fn an_export_is_written_under_its_key_encrypted_like_the_archive() {
        let stub = StubServer::always(200, &[("etag", "\"abc\"")], "").await;

        store(stub.endpoint())
            .put(KEY, b"{\"n\":1}\n".to_vec(), ObjectKind::GzipJsonLines)
            .await
            .expect("written");

        let request = &stub.received()[0];
        assert_eq!(request.method(), "PUT");
        assert!(
            request
                .target()
                .starts_with(&format!("/inventory-archive-dev/{KEY}")),
            "{}",
            request.target()
        );
        assert_eq!(
            request.header("x-amz-server-side-encryption"),
            Some("aws:kms")
        );
        assert_eq!(
            request.header("x-amz-server-side-encryption-aws-kms-key-id"),
            Some("alias/archive")
        );
        assert_eq!(
            request.header("x-amz-server-side-encryption-bucket-key-enabled"),
            Some("true")
        );
        assert_eq!(request.header("content-encoding"), Some("gzip"));
    }

    #[tokio::test]
    async fn an_export_is_read_back_whole() {
        let stub =
            StubServer::always(200, &[("content-type", "application/gzip")], "day-bytes").await;

        let body = store(stub.endpoint()).get(KEY).await.expect("read");

        assert_eq!(body, b"day-bytes");
        let request = &stub.received()[0];
        assert_eq!(request.method(), "GET");
        assert!(
            request
                .target()
                .starts_with(&format!("/inventory-archive-dev/{KEY}")),
            "{}",
            request.target()
        );
    }

    #[tokio::test]
    async fn an_export_that_is_not_there_is_an_error_naming_its_location() {
        let stub = StubServer::always(
            404,
            &[("content-type", "application/xml")],
            "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
        )
        .await;

        let e = store(stub.endpoint()).get(KEY).await.expect_err("missing");

        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(
            e.message
                .starts_with(&format!("could not read s3://inventory-archive-dev/{KEY}")),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_read_that_breaks_off_is_transient() {
        let stub = StubServer::always(
            503,
            &[("content-type", "application/xml")],
            "<Error><Code>SlowDown</Code><Message>busy</Message></Error>",
        )
        .await;
        let e = store(stub.endpoint()).get(KEY).await.expect_err("busy");
        assert!(e.is_transient(), "{e:?}");

        // The head says more bytes than come: the body ends early.
        let stub = StubServer::start(
            Vec::new(),
            Answer::new(200, &[("transfer-encoding", "chunked")], "40\r\nonly-a-few"),
        )
        .await;

        let e = store(stub.endpoint())
            .get(KEY)
            .await
            .expect_err("cut short");

        assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
        assert!(
            e.message.starts_with(&format!(
                "could not read s3://inventory-archive-dev/{KEY} to its end"
            )),
            "{}",
            e.message
        );
    }
}
