//! [`ExecutionStarter`] on Step Functions, and its errors sorted into transient and permanent.

use crate::ports::{ExecutionStarter, StartOutcome};
use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use inventory::{ErrorKind, PipelineError};

/// Starts executions of one state machine.
#[derive(Debug, Clone)]
pub struct SfnExecutionStarter {
    client: Client,
    state_machine_arn: String,
}

impl SfnExecutionStarter {
    pub fn new(client: Client, state_machine_arn: impl Into<String>) -> Self {
        Self {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }
}

#[async_trait]
impl ExecutionStarter for SfnExecutionStarter {
    #[tracing::instrument(skip(self, input), fields(input_bytes = input.len()))]
    async fn start(&self, name: &str, input: &str) -> Result<StartOutcome, PipelineError> {
        let sent = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(StartOutcome::Started),
            // Same name: this batch was delivered before. The name is derived from the
            // records, so the input is the same too.
            Err(SdkError::ServiceError(e)) if e.err().is_execution_already_exists() => {
                tracing::info!("execution exists already; redelivered batch");
                Ok(StartOutcome::AlreadyStarted)
            }
            Err(e) => Err(PipelineError::new(
                classify(&e),
                format!(
                    "could not start execution {name} of {}: {}",
                    self.state_machine_arn,
                    DisplayErrorContext(&e)
                ),
            )),
        }
    }
}

/// Sorts a `StartExecution` error into the pipeline's taxonomy.
pub fn classify(error: &SdkError<StartExecutionError, HttpResponse>) -> ErrorKind {
    match error {
        SdkError::ServiceError(s) => classify_service(s.err(), s.raw().status().as_u16()),
        // The request could not be built or signed: configuration, not bad luck.
        SdkError::ConstructionFailure(_) => ErrorKind::Misconfigured,
        SdkError::DispatchFailure(f) if f.is_user() => ErrorKind::Misconfigured,
        // Timeouts, connection failures, unreadable answers.
        _ => ErrorKind::DependencyUnavailable,
    }
}

fn classify_service(error: &StartExecutionError, status: u16) -> ErrorKind {
    match error {
        StartExecutionError::ExecutionLimitExceeded(_)
        | StartExecutionError::KmsThrottlingException(_) => ErrorKind::Throttled,
        StartExecutionError::InvalidArn(_)
        | StartExecutionError::StateMachineDoesNotExist(_)
        | StartExecutionError::StateMachineDeleting(_)
        | StartExecutionError::KmsAccessDeniedException(_)
        | StartExecutionError::KmsInvalidStateException(_) => ErrorKind::Misconfigured,
        // The fan-out built a bad name or input: a bug, retrying gives the same answer.
        StartExecutionError::InvalidExecutionInput(_)
        | StartExecutionError::InvalidName(_)
        | StartExecutionError::ValidationException(_) => ErrorKind::Internal,
        other => classify_code(other.code(), status),
    }
}

/// Sorts an error Step Functions answered with, by its code and HTTP status.
pub fn classify_code(code: Option<&str>, status: u16) -> ErrorKind {
    const THROTTLED: [&str; 4] = [
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    ];
    const TRANSIENT: [&str; 4] = [
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
    ];
    const MISCONFIGURED: [&str; 8] = [
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
    ];
    match code {
        Some(c) if THROTTLED.contains(&c) => ErrorKind::Throttled,
        Some(c) if TRANSIENT.contains(&c) => ErrorKind::DependencyUnavailable,
        Some(c) if MISCONFIGURED.contains(&c) => ErrorKind::Misconfigured,
        _ if status == 429 => ErrorKind::Throttled,
        _ if status >= 500 => ErrorKind::DependencyUnavailable,
        _ if matches!(status, 401 | 403 | 404) => ErrorKind::Misconfigured,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::primitives::SdkBody;
    use aws_sdk_sfn::error::ErrorMetadata;
    use aws_sdk_sfn::types::error::{
        ExecutionLimitExceeded, InvalidArn, InvalidExecutionInput, StateMachineDoesNotExist,
    };

    fn service_error(
        error: StartExecutionError,
        status: u16,
    ) -> SdkError<StartExecutionError, HttpResponse> {
        SdkError::service_error(
            error,
            HttpResponse::new(status.try_into().expect("valid status"), SdkBody::empty()),
        )
    }

    fn generic(code: &str, status: u16) -> SdkError<StartExecutionError, HttpResponse> {
        service_error(
            StartExecutionError::generic(ErrorMetadata::builder().code(code).build()),
            status,
        )
    }

    #[test]
    fn a_missing_or_wrong_state_machine_is_misconfiguration() {
        let missing = StateMachineDoesNotExist::builder()
            .message("no such machine")
            .build();
        assert_eq!(
            classify(&service_error(
                StartExecutionError::StateMachineDoesNotExist(missing),
                400
            )),
            ErrorKind::Misconfigured
        );
        let bad_arn = InvalidArn::builder().message("bad").build();
        assert_eq!(
            classify(&service_error(
                StartExecutionError::InvalidArn(bad_arn),
                400
            )),
            ErrorKind::Misconfigured
        );
        assert_eq!(
            classify(&generic("AccessDeniedException", 400)),
            ErrorKind::Misconfigured
        );
        assert_eq!(
            classify(&generic("Whatever", 403)),
            ErrorKind::Misconfigured
        );
    }

    #[test]
    fn throttling_and_the_execution_limit_are_throttled() {
        assert_eq!(
            classify(&generic("ThrottlingException", 400)),
            ErrorKind::Throttled
        );
        let limit = ExecutionLimitExceeded::builder().build();
        assert_eq!(
            classify(&service_error(
                StartExecutionError::ExecutionLimitExceeded(limit),
                400
            )),
            ErrorKind::Throttled
        );
        assert_eq!(classify_code(None, 429), ErrorKind::Throttled);
    }

    #[test]
    fn server_errors_timeouts_and_lost_connections_are_transient() {
        assert_eq!(
            classify(&generic("InternalFailure", 500)),
            ErrorKind::DependencyUnavailable
        );
        assert_eq!(
            classify(&generic("Unknown", 503)),
            ErrorKind::DependencyUnavailable
        );
        let timeout: SdkError<StartExecutionError, HttpResponse> =
            SdkError::timeout_error("operation timed out");
        assert_eq!(classify(&timeout), ErrorKind::DependencyUnavailable);
        let io = SdkError::<StartExecutionError, HttpResponse>::dispatch_failure(
            aws_sdk_sfn::error::ConnectorError::io("connection refused".into()),
        );
        assert_eq!(classify(&io), ErrorKind::DependencyUnavailable);
        assert!(classify(&io).is_transient());
    }

    #[test]
    fn a_bad_input_is_a_bug_not_something_to_retry() {
        let bad = InvalidExecutionInput::builder().build();
        let kind = classify(&service_error(
            StartExecutionError::InvalidExecutionInput(bad),
            400,
        ));
        assert_eq!(kind, ErrorKind::Internal);
        assert!(!kind.is_transient());
        assert_eq!(
            classify_code(Some("SomethingNew"), 400),
            ErrorKind::Internal
        );
    }

    fn client(endpoint: &str) -> Client {
        use aws_sdk_sfn::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
        let conf = aws_sdk_sfn::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "stub"))
            .retry_config(RetryConfig::disabled())
            .build();
        Client::from_conf(conf)
    }

    const MACHINE: &str =
        "arn:aws:states:us-east-1:123456789012:stateMachine:inventory-pipeline-dev";
    const JSON: (&str, &str) = ("content-type", "application/x-amz-json-1.0");

    #[tokio::test]
    async fn an_execution_is_started_with_its_name_and_input() {
        let stub = crate::stub_http::serve(200, &[JSON], r#"{"executionArn":"arn:aws:states:us-east-1:123456789012:execution:m:n","startDate":1795000000}"#).await;
        let starter = SfnExecutionStarter::new(client(&stub.endpoint), MACHINE);

        let outcome = starter
            .start("s0-c00000-abc", r#"{"chunk":{}}"#)
            .await
            .expect("started");

        assert_eq!(outcome, StartOutcome::Started);
        let sent: serde_json::Value =
            serde_json::from_slice(&stub.received()[0].body).expect("JSON request");
        assert_eq!(sent["stateMachineArn"], MACHINE);
        assert_eq!(sent["name"], "s0-c00000-abc");
        assert_eq!(sent["input"], r#"{"chunk":{}}"#);
    }

    #[tokio::test]
    async fn an_execution_that_exists_already_counts_as_started_before() {
        let body = r#"{"__type":"com.amazonaws.states#ExecutionAlreadyExists","message":"Execution Already Exists"}"#;
        let stub = crate::stub_http::serve(400, &[JSON], body).await;

        let outcome = SfnExecutionStarter::new(client(&stub.endpoint), MACHINE)
            .start("n", "{}")
            .await
            .expect("not an error");

        assert_eq!(outcome, StartOutcome::AlreadyStarted);
    }

    #[tokio::test]
    async fn throttling_is_a_transient_error_that_names_the_execution() {
        let stub = crate::stub_http::serve(
            400,
            &[JSON],
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        )
        .await;

        let e = SfnExecutionStarter::new(client(&stub.endpoint), MACHINE)
            .start("s0-c00000-abc", "{}")
            .await
            .expect_err("throttled");

        assert_eq!(e.kind, ErrorKind::Throttled);
        assert!(e.message.contains("s0-c00000-abc"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_state_machine_that_does_not_exist_is_misconfiguration() {
        let body = r#"{"__type":"com.amazonaws.states#StateMachineDoesNotExist","message":"State Machine Does Not Exist"}"#;
        let stub = crate::stub_http::serve(400, &[JSON], body).await;

        let e = SfnExecutionStarter::new(client(&stub.endpoint), MACHINE)
            .start("n", "{}")
            .await
            .expect_err("missing");

        assert_eq!(e.kind, ErrorKind::Misconfigured);
    }
}
