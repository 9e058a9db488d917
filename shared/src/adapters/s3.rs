//! The archive bucket on S3: the archived chunks (gzip JSON lines) and the records too large
//! to travel inline, written by one [`ObjectStore`], SSE-KMS when a key is configured, S3's
//! errors sorted by [`aws::classify`]. [`write_object`] is the project's one `PutObject`.

use super::aws;
use crate::config::FromEnv;
use crate::config::Vars;
use crate::domain::keys::ArchiveKey;
use crate::error::PipelineError;
use crate::ports::{ObjectKind, ObjectStore};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

/// Media type of an archive object's (decompressed) body.
pub const ARCHIVE_CONTENT_TYPE: &str = "application/x-ndjson";
/// How an archive object's body is encoded.
pub const ARCHIVE_CONTENT_ENCODING: &str = "gzip";
/// Media type of an oversized record's bytes, which are stored as they arrived.
pub const RECORD_CONTENT_TYPE: &str = "application/octet-stream";

/// Where archive objects go, from `ARCHIVE_BUCKET` and `ARCHIVE_KMS_KEY_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    pub bucket: String,
    /// The KMS key (id, ARN or alias) objects are encrypted with. `None`: the bucket's
    /// default encryption applies (locally, where moto has no key).
    pub kms_key_id: Option<String>,
}

impl ArchiveConfig {
    pub const BUCKET_VAR: &'static str = "ARCHIVE_BUCKET";
    pub const KMS_KEY_VAR: &'static str = "ARCHIVE_KMS_KEY_ID";
}

impl FromEnv for ArchiveConfig {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        let vars = Vars::new(get);
        Ok(Self {
            bucket: vars.required(Self::BUCKET_VAR)?,
            kms_key_id: vars.optional(Self::KMS_KEY_VAR),
        })
    }
}

/// [`ObjectStore`] on the archive bucket: archive's chunks and fanout's oversized records.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: Client,
    config: ArchiveConfig,
}

impl S3ObjectStore {
    pub fn new(client: Client, config: ArchiveConfig) -> Self {
        Self { client, config }
    }

    pub fn config(&self) -> &ArchiveConfig {
        &self.config
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    fn bucket(&self) -> &str {
        &self.config.bucket
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.config.bucket, key = %key, bytes = body.len(), sse_kms = self.config.kms_key_id.is_some()))]
    async fn put(
        &self,
        key: &ArchiveKey,
        body: Vec<u8>,
        kind: ObjectKind,
    ) -> Result<(), PipelineError> {
        put_object(&self.client, &self.config, key.as_str(), body, kind).await?;
        tracing::debug!("archive object written");
        Ok(())
    }
}

/// Writes one object to the archive bucket: SSE-KMS with the configured key (and an S3
/// Bucket Key) when there is one, the content type and encoding of `kind`.
pub(crate) async fn put_object(
    client: &Client,
    config: &ArchiveConfig,
    key: &str,
    body: Vec<u8>,
    kind: ObjectKind,
) -> Result<(), PipelineError> {
    let (content_type, content_encoding) = match kind {
        ObjectKind::GzipJsonLines => (ARCHIVE_CONTENT_TYPE, Some(ARCHIVE_CONTENT_ENCODING)),
        ObjectKind::Json => ("application/json", None),
        ObjectKind::Bytes => (RECORD_CONTENT_TYPE, None),
    };
    write_object(
        client,
        NewObject {
            bucket: &config.bucket,
            key,
            body,
            content_type,
            content_encoding,
            sse_kms: config.kms_key_id.as_deref().map(|key_id| SseKms {
                key_id,
                bucket_key: true,
            }),
        },
    )
    .await
}

/// One object to write, and how S3 encrypts it.
#[derive(Debug)]
pub struct NewObject<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub body: Vec<u8>,
    pub content_type: &'a str,
    pub content_encoding: Option<&'a str>,
    /// `None`: the bucket's default encryption applies (locally, where moto has no key).
    pub sse_kms: Option<SseKms<'a>>,
}

/// SSE-KMS with a customer-managed key.
#[derive(Debug, Clone, Copy)]
pub struct SseKms<'a> {
    /// The key's id, ARN or alias.
    pub key_id: &'a str,
    /// An S3 Bucket Key (fewer KMS calls). Off where the key policy must see each object's
    /// ARN rather than the bucket's (the per-supplier rejections).
    pub bucket_key: bool,
}

/// The one `PutObject` of the project: the archive, the exports, the oversize chunks and the
/// rejections all write through it, and its errors are sorted by [`aws::classify`].
pub async fn write_object(client: &Client, object: NewObject<'_>) -> Result<(), PipelineError> {
    let mut request = client
        .put_object()
        .bucket(object.bucket)
        .key(object.key)
        .content_type(object.content_type)
        .set_content_encoding(object.content_encoding.map(str::to_owned))
        .body(ByteStream::from(object.body));
    if let Some(kms) = object.sse_kms {
        request = request
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(kms.key_id)
            .bucket_key_enabled(kms.bucket_key);
    }
    request.send().await.map_err(|e| {
        aws::pipeline_error(
            format_args!("could not write s3://{}/{}", object.bucket, object.key),
            &e,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::collections::HashMap;

    #[tokio::test]
    async fn an_unreachable_s3_is_a_transient_failure() {
        let sdk = test_support::aws::stub_sdk_config("http://127.0.0.1:1");
        let config = ArchiveConfig {
            bucket: "archive-test".into(),
            kms_key_id: Some("alias/archive".into()),
        };
        let store = S3ObjectStore::new(aws::s3_client(&sdk), config.clone());
        let key = ArchiveKey::for_chunk("s", chrono::DateTime::UNIX_EPOCH, "c");

        let e = store
            .put(&key, vec![0x1f, 0x8b], ObjectKind::GzipJsonLines)
            .await
            .expect_err("unreachable");

        assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
        assert!(
            e.message
                .starts_with("could not write s3://archive-test/raw/s/"),
            "{}",
            e.message
        );
        assert_eq!((store.bucket(), store.config()), ("archive-test", &config));
    }

    #[test]
    fn the_config_needs_a_bucket_and_takes_an_optional_key() {
        let vars: HashMap<&str, &str> = [
            ("ARCHIVE_BUCKET", "archive-dev"),
            ("ARCHIVE_KMS_KEY_ID", " "),
        ]
        .into();
        let c =
            ArchiveConfig::from_lookup(|n| vars.get(n).map(|v| (*v).to_owned())).expect("valid");
        assert_eq!(
            c,
            ArchiveConfig {
                bucket: "archive-dev".into(),
                kms_key_id: None
            }
        );

        let with_key: HashMap<&str, &str> = [
            ("ARCHIVE_BUCKET", "b"),
            ("ARCHIVE_KMS_KEY_ID", "alias/archive"),
        ]
        .into();
        let c = ArchiveConfig::from_lookup(|n| with_key.get(n).map(|v| (*v).to_owned()))
            .expect("valid");
        assert_eq!(c.kms_key_id.as_deref(), Some("alias/archive"));

        let e = ArchiveConfig::from_lookup(|_| None).expect_err("no bucket");
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(e.message.contains("ARCHIVE_BUCKET"), "{}", e.message);
    }
}
