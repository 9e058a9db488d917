//! The S3 archive: one gzip JSON-lines object per chunk, SSE-KMS when a key is configured,
//! and S3's errors sorted into transient and permanent ones.

use crate::error::{ErrorKind, PipelineError};
use crate::keys::ArchiveKey;
use crate::ports::ArchiveStore;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

/// Media type of an archive object's (decompressed) body.
pub const ARCHIVE_CONTENT_TYPE: &str = "application/x-ndjson";
/// How an archive object's body is encoded.
pub const ARCHIVE_CONTENT_ENCODING: &str = "gzip";

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

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, PipelineError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bucket = get(Self::BUCKET_VAR).ok_or_else(|| {
            PipelineError::misconfigured(format!(
                "environment variable {} is required but not set",
                Self::BUCKET_VAR
            ))
        })?;
        Ok(Self {
            bucket,
            kms_key_id: get(Self::KMS_KEY_VAR),
        })
    }
}

/// [`ArchiveStore`] on S3.
#[derive(Debug, Clone)]
pub struct S3ArchiveStore {
    client: Client,
    config: ArchiveConfig,
}

impl S3ArchiveStore {
    pub fn new(client: Client, config: ArchiveConfig) -> Self {
        Self { client, config }
    }

    pub fn config(&self) -> &ArchiveConfig {
        &self.config
    }
}

#[async_trait]
impl ArchiveStore for S3ArchiveStore {
    fn bucket(&self) -> &str {
        &self.config.bucket
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.config.bucket, key = %key, bytes = gzip_jsonl.len(), sse_kms = self.config.kms_key_id.is_some()))]
    async fn put(&self, key: &ArchiveKey, gzip_jsonl: Vec<u8>) -> Result<(), PipelineError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.config.bucket)
            .key(key.as_str())
            .content_type(ARCHIVE_CONTENT_TYPE)
            .content_encoding(ARCHIVE_CONTENT_ENCODING)
            .body(ByteStream::from(gzip_jsonl));
        if let Some(kms_key_id) = &self.config.kms_key_id {
            request = request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms_key_id)
                .bucket_key_enabled(true);
        }
        request.send().await.map_err(|e| {
            let kind = classify(&e);
            // DisplayErrorContext carries the whole chain (code, message, cause) in one line.
            PipelineError::new(
                kind,
                format!(
                    "could not write s3://{}/{key}: {}",
                    self.config.bucket,
                    DisplayErrorContext(&e)
                ),
            )
        })?;
        tracing::debug!("archive object written");
        Ok(())
    }
}

/// Sorts an S3 SDK error into the pipeline's taxonomy.
pub fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> ErrorKind {
    match error {
        // The request could not be built or signed: wrong configuration, not bad luck.
        SdkError::ConstructionFailure(_) => ErrorKind::Misconfigured,
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => ErrorKind::DependencyUnavailable,
        SdkError::DispatchFailure(f) if f.is_user() => ErrorKind::Misconfigured,
        SdkError::DispatchFailure(_) => ErrorKind::DependencyUnavailable,
        SdkError::ServiceError(s) => classify_service(error.code(), s.raw().status().as_u16()),
        _ => ErrorKind::DependencyUnavailable,
    }
}

/// Sorts an error S3 answered with, by its code and HTTP status.
pub fn classify_service(code: Option<&str>, status: u16) -> ErrorKind {
    const THROTTLED: [&str; 7] = [
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestThrottled",
        "KMS.ThrottlingException",
    ];
    const MISCONFIGURED: [&str; 12] = [
        "AccessDenied",
        "AllAccessDisabled",
        "NoSuchBucket",
        "InvalidBucketName",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "InvalidArgument",
        "KMSKeyNotFound",
    ];
    const TRANSIENT: [&str; 4] = [
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "KMS.KMSInternalException",
    ];
    match code {
        Some(c) if THROTTLED.contains(&c) => ErrorKind::Throttled,
        Some(c) if TRANSIENT.contains(&c) => ErrorKind::DependencyUnavailable,
        Some(c) if MISCONFIGURED.contains(&c) || c.starts_with("KMS.") => ErrorKind::Misconfigured,
        _ if status == 429 => ErrorKind::Throttled,
        _ if status >= 500 => ErrorKind::DependencyUnavailable,
        _ if status == 401 || status == 403 || status == 404 || status == 301 => {
            ErrorKind::Misconfigured
        }
        // Any other 4xx means this code asked S3 for something it does not do.
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::put_object::PutObjectError;
    use aws_sdk_s3::primitives::SdkBody;
    use std::collections::HashMap;

    fn service_error(code: &str, status: u16) -> SdkError<PutObjectError, HttpResponse> {
        let status = status.try_into().expect("valid status");
        SdkError::service_error(
            PutObjectError::generic(ErrorMetadata::builder().code(code).build()),
            HttpResponse::new(status, SdkBody::empty()),
        )
    }

    #[test]
    fn throttling_answers_are_throttled() {
        assert_eq!(
            classify(&service_error("SlowDown", 503)),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify(&service_error("KMS.ThrottlingException", 400)),
            ErrorKind::Throttled
        );
        assert_eq!(classify_service(None, 429), ErrorKind::Throttled);
    }

    #[test]
    fn server_errors_and_timeouts_are_transient() {
        assert_eq!(
            classify(&service_error("InternalError", 500)),
            ErrorKind::DependencyUnavailable
        );
        assert_eq!(
            classify(&service_error("RequestTimeout", 400)),
            ErrorKind::DependencyUnavailable
        );
        assert_eq!(
            classify_service(Some("Whatever"), 502),
            ErrorKind::DependencyUnavailable
        );
        let timeout: SdkError<PutObjectError, HttpResponse> =
            SdkError::timeout_error("operation timed out");
        assert_eq!(classify(&timeout), ErrorKind::DependencyUnavailable);
        let io = SdkError::<PutObjectError, HttpResponse>::dispatch_failure(
            aws_sdk_s3::error::ConnectorError::io("connection refused".into()),
        );
        assert_eq!(classify(&io), ErrorKind::DependencyUnavailable);
    }

    #[test]
    fn access_bucket_and_kms_problems_are_configuration_errors() {
        for code in [
            "AccessDenied",
            "NoSuchBucket",
            "KMS.NotFoundException",
            "KMS.DisabledException",
            "InvalidArgument",
        ] {
            assert_eq!(
                classify(&service_error(code, 400)),
                ErrorKind::Misconfigured,
                "{code}"
            );
        }
        assert_eq!(classify_service(None, 403), ErrorKind::Misconfigured);
        let user = SdkError::<PutObjectError, HttpResponse>::dispatch_failure(
            aws_sdk_s3::error::ConnectorError::user("invalid endpoint".into()),
        );
        assert_eq!(classify(&user), ErrorKind::Misconfigured);
        let built: SdkError<PutObjectError, HttpResponse> =
            SdkError::construction_failure("no region");
        assert_eq!(classify(&built), ErrorKind::Misconfigured);
    }

    #[test]
    fn an_unexpected_client_error_is_internal() {
        assert_eq!(
            classify(&service_error("MalformedXML", 400)),
            ErrorKind::Internal
        );
    }

    #[tokio::test]
    async fn an_unreachable_s3_is_a_transient_failure() {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://127.0.0.1:1") // nothing listens there
            .force_path_style(true)
            .retry_config(RetryConfig::disabled())
            .build();
        let config = ArchiveConfig {
            bucket: "archive-test".into(),
            kms_key_id: Some("alias/archive".into()),
        };
        let store = S3ArchiveStore::new(Client::from_conf(conf), config.clone());
        let key = ArchiveKey::for_chunk("s", chrono::DateTime::UNIX_EPOCH, "c");

        let e = store
            .put(&key, vec![0x1f, 0x8b])
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
