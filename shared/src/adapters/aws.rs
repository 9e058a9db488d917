//! AWS SDK errors sorted into the pipeline's taxonomy, once for every AWS adapter (S3, Step
//! Functions, Secrets Manager, Kinesis in the CLI). The state machine retries the transient
//! kinds, so this decides what a redrive is needed for. The SDK's configuration, which every
//! function builds the same way ([`sdk_config`]), is here too.
//!
//! What the SDK already knows comes first: the retry kind a modelled error carries
//! ([`ProvideErrorKind::retryable_error_kind`]) and the SDK's own lists of throttling and
//! transient error codes (`aws_runtime::retries::classifiers`, the lists its standard retry
//! strategy uses). Then this project's additions (KMS errors passed through by S3, Kinesis and
//! Step Functions, server-side failures, credentials and missing resources), then the HTTP
//! status.

mod sdk;

#[cfg(feature = "s3-client")]
pub use sdk::s3_client;
pub use sdk::{
    ATTEMPT_TIMEOUT, BULK_ATTEMPT_TIMEOUT, BULK_OPERATION_TIMEOUT, OPERATION_TIMEOUT,
    bulk_sdk_config, config_loader, sdk_config, timeouts,
};

use crate::error::{ErrorKind, PipelineError};
use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::{self, ProvideErrorKind};
use std::fmt::Display;

/// What the SDK's operation errors (`PutObjectError`, `StartExecutionError`, ...) all are;
/// generic code over SDK errors names this one bound.
pub trait OperationError:
    ProvideErrorMetadata + ProvideErrorKind + std::error::Error + Send + Sync + 'static
{
}

impl<E> OperationError for E where
    E: ProvideErrorMetadata + ProvideErrorKind + std::error::Error + Send + Sync + 'static
{
}

/// Codes that mean "slow down", besides the SDK's [`THROTTLING_ERRORS`].
pub const MORE_THROTTLING_ERRORS: &[&str] = &[
    "TooManyRequests",
    // KMS throttling, as S3, Kinesis and Step Functions pass it on.
    "KMS.ThrottlingException",
    "KMSThrottlingException",
    "KmsThrottlingException",
    // Step Functions: too many open executions.
    "ExecutionLimitExceeded",
];

/// Codes of failures on the service's side, besides the SDK's [`TRANSIENT_ERRORS`].
pub const MORE_TRANSIENT_ERRORS: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServiceError",
    "ServiceUnavailable",
    "KMS.KMSInternalException",
];

/// Codes that stay the same until someone fixes the configuration: credentials, permissions,
/// a missing or wrong bucket, stream, state machine, secret or KMS key. Any `KMS.` code
/// that is not throttling or an internal error counts too.
pub const MISCONFIGURED_ERRORS: &[&str] = &[
    // Credentials and signing.
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "InvalidToken",
    "MissingAuthenticationToken",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    // S3 buckets.
    "InvalidArgument",
    "InvalidBucketName",
    "NoSuchBucket",
    "PermanentRedirect",
    // Streams, secrets, state machines.
    "ResourceNotFoundException",
    "DecryptionFailure",
    "InvalidArn",
    "StateMachineDeleting",
    "StateMachineDoesNotExist",
    // KMS keys, as the services name them.
    "KMSKeyNotFound",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
    "KMSOptInRequired",
    "KmsAccessDeniedException",
    "KmsInvalidStateException",
];

/// Sorts an SDK error: what the request, the connection or the service said.
pub fn classify<E>(error: &SdkError<E, Response>) -> ErrorKind
where
    E: ProvideErrorMetadata + ProvideErrorKind,
{
    match error {
        // The request could not be built or signed: configuration, not bad luck.
        SdkError::ConstructionFailure(_) => ErrorKind::Misconfigured,
        // A bad endpoint or TLS set-up: retrying gives the same answer.
        SdkError::DispatchFailure(f) if f.is_user() => ErrorKind::Misconfigured,
        SdkError::ServiceError(s) => classify_service(s.err(), s.raw().status().as_u16()),
        // Timeouts, lost connections, answers that could not be read.
        _ => ErrorKind::DependencyUnavailable,
    }
}

/// Sorts an error the service answered with, by its modelled retry kind, its code and the
/// HTTP status.
pub fn classify_service<E>(error: &E, status: u16) -> ErrorKind
where
    E: ProvideErrorMetadata + ProvideErrorKind,
{
    match error.retryable_error_kind() {
        Some(retry::ErrorKind::ThrottlingError) => return ErrorKind::Throttled,
        Some(retry::ErrorKind::TransientError | retry::ErrorKind::ServerError) => {
            return ErrorKind::DependencyUnavailable;
        }
        _ => {}
    }
    classify_code(ProvideErrorMetadata::code(error), status)
}

/// Sorts an error by its code and HTTP status alone (also for per-entry error codes, such as
/// those `PutRecords` and `DeleteObjects` answer inside a successful response).
pub fn classify_code(code: Option<&str>, status: u16) -> ErrorKind {
    let among = |lists: &[&[&str]], c: &str| lists.iter().any(|l| l.contains(&c));
    match code {
        Some(c) if among(&[THROTTLING_ERRORS, MORE_THROTTLING_ERRORS], c) => ErrorKind::Throttled,
        Some(c) if among(&[TRANSIENT_ERRORS, MORE_TRANSIENT_ERRORS], c) => {
            ErrorKind::DependencyUnavailable
        }
        Some(c) if MISCONFIGURED_ERRORS.contains(&c) || c.starts_with("KMS.") => {
            ErrorKind::Misconfigured
        }
        _ if status == 429 => ErrorKind::Throttled,
        _ if status >= 500 => ErrorKind::DependencyUnavailable,
        _ if matches!(status, 301 | 401 | 403 | 404) => ErrorKind::Misconfigured,
        // Any other 4xx: this code asked for something the service does not do (a bad
        // name or input, say). A bug; retrying gives the same answer.
        _ => ErrorKind::Internal,
    }
}

/// The pipeline error for a failed call: its kind from [`classify`], and `what` failed
/// followed by the SDK's whole chain (code, message, cause) on one line.
pub fn pipeline_error<E: OperationError>(
    what: impl Display,
    error: &SdkError<E, Response>,
) -> PipelineError {
    PipelineError::new(
        classify(error),
        format!("{what}: {}", DisplayErrorContext(error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    /// An operation error as the SDK generates them: metadata plus an optional modelled
    /// retry kind.
    #[derive(Debug)]
    struct OpError {
        meta: ErrorMetadata,
        retry: Option<retry::ErrorKind>,
    }

    impl Display for OpError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.meta.code().unwrap_or("unknown"))
        }
    }
    impl std::error::Error for OpError {}
    impl ProvideErrorMetadata for OpError {
        fn meta(&self) -> &ErrorMetadata {
            &self.meta
        }
    }
    impl ProvideErrorKind for OpError {
        fn code(&self) -> Option<&str> {
            self.meta.code()
        }
        fn retryable_error_kind(&self) -> Option<retry::ErrorKind> {
            self.retry
        }
    }

    fn answered(
        code: Option<&str>,
        retry: Option<retry::ErrorKind>,
        status: u16,
    ) -> SdkError<OpError, Response> {
        let mut meta = ErrorMetadata::builder().message("from the service");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        SdkError::service_error(
            OpError {
                meta: meta.build(),
                retry,
            },
            Response::new(status.try_into().expect("valid status"), SdkBody::empty()),
        )
    }

    fn code(code: &str, status: u16) -> ErrorKind {
        classify(&answered(Some(code), None, status))
    }

    #[test]
    fn the_sdks_throttling_codes_and_ours_are_throttled() {
        for c in [
            "SlowDown",
            "Throttling",
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "LimitExceededException",
            "RequestLimitExceeded",
            "TooManyRequestsException",
            "KMS.ThrottlingException",
            "KMSThrottlingException",
            "KmsThrottlingException",
            "ExecutionLimitExceeded",
        ] {
            assert_eq!(code(c, 400), ErrorKind::Throttled, "{c}");
        }
        assert_eq!(classify_code(None, 429), ErrorKind::Throttled);
        assert_eq!(
            classify(&answered(
                Some("Whatever"),
                Some(retry::ErrorKind::ThrottlingError),
                400
            )),
            ErrorKind::Throttled,
            "the modelled retry kind wins over an unknown code"
        );
    }

    #[test]
    fn server_side_failures_timeouts_and_lost_connections_are_transient() {
        for c in [
            "RequestTimeout",
            "RequestTimeoutException",
            "InternalError",
            "InternalFailure",
            "InternalServerError",
            "InternalServiceError",
            "ServiceUnavailable",
            "KMS.KMSInternalException",
        ] {
            assert_eq!(code(c, 400), ErrorKind::DependencyUnavailable, "{c}");
        }
        assert_eq!(code("Whatever", 502), ErrorKind::DependencyUnavailable);
        assert_eq!(
            classify(&answered(None, Some(retry::ErrorKind::ServerError), 400)),
            ErrorKind::DependencyUnavailable
        );
        assert_eq!(
            classify(&answered(None, Some(retry::ErrorKind::TransientError), 400)),
            ErrorKind::DependencyUnavailable
        );
        let timeout = SdkError::<OpError, Response>::timeout_error("operation timed out");
        assert_eq!(classify(&timeout), ErrorKind::DependencyUnavailable);
        let io = SdkError::<OpError, Response>::dispatch_failure(ConnectorError::io(
            "connection refused".into(),
        ));
        assert_eq!(classify(&io), ErrorKind::DependencyUnavailable);
        assert!(classify(&io).is_transient());
        let garbled = SdkError::<OpError, Response>::response_error(
            "unreadable",
            Response::new(200.try_into().expect("valid"), SdkBody::empty()),
        );
        assert_eq!(classify(&garbled), ErrorKind::DependencyUnavailable);
    }

    #[test]
    fn credentials_permissions_and_missing_resources_are_misconfiguration() {
        for c in [
            "AccessDenied",
            "AccessDeniedException",
            "NoSuchBucket",
            "InvalidArgument",
            "UnrecognizedClientException",
            "ExpiredTokenException",
            "ResourceNotFoundException",
            "StateMachineDoesNotExist",
            "InvalidArn",
            "KmsAccessDeniedException",
            "KMSDisabledException",
            "KMS.NotFoundException",
            "KMS.DisabledException",
        ] {
            assert_eq!(code(c, 400), ErrorKind::Misconfigured, "{c}");
        }
        for status in [301, 401, 403, 404] {
            assert_eq!(classify_code(None, status), ErrorKind::Misconfigured);
        }
        let user = SdkError::<OpError, Response>::dispatch_failure(ConnectorError::user(
            "invalid endpoint".into(),
        ));
        assert_eq!(classify(&user), ErrorKind::Misconfigured);
        let built = SdkError::<OpError, Response>::construction_failure("no region");
        assert_eq!(classify(&built), ErrorKind::Misconfigured);
    }

    #[test]
    fn any_other_client_error_is_a_bug_not_something_to_retry() {
        for c in [
            "MalformedXML",
            "InvalidExecutionInput",
            "InvalidName",
            "ValidationException",
        ] {
            let kind = code(c, 400);
            assert_eq!(kind, ErrorKind::Internal, "{c}");
            assert!(!kind.is_transient());
        }
        assert_eq!(
            classify(&answered(None, Some(retry::ErrorKind::ClientError), 400)),
            ErrorKind::Internal
        );
    }

    #[test]
    fn the_pipeline_error_names_what_failed_and_carries_the_sdks_detail() {
        let e = pipeline_error(
            "could not write s3://b/k",
            &answered(Some("SlowDown"), None, 503),
        );
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert!(
            e.message.starts_with("could not write s3://b/k: "),
            "{}",
            e.message
        );
        assert!(e.message.contains("SlowDown"), "{}", e.message);
    }
}
