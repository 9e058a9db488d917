//! [`ExecutionStarter`] on Step Functions; its errors are sorted by [`aws::classify`].

use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::SdkError;
use inventory::PipelineError;
use inventory::adapters::aws;
use inventory::ports::{ExecutionStarter, StartOutcome};

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
            Err(e) => Err(aws::pipeline_error(
                format_args!(
                    "could not start execution {name} of {}",
                    self.state_machine_arn
                ),
                &e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::ErrorKind;
    use test_support::stub_http::StubServer;

    fn client(endpoint: &str) -> Client {
        let sdk = test_support::aws::stub_sdk_config(endpoint);
        Client::new(&sdk)
    }

    const MACHINE: &str =
        "arn:aws:states:us-east-1:123456789012:stateMachine:inventory-pipeline-dev";
    const JSON: (&str, &str) = ("content-type", "application/x-amz-json-1.0");

    #[tokio::test]
    async fn an_execution_is_started_with_its_name_and_input() {
        let stub = StubServer::always(200, &[JSON], r#"{"executionArn":"arn:aws:states:us-east-1:123456789012:execution:m:n","startDate":1795000000}"#).await;
        let starter = SfnExecutionStarter::new(client(stub.endpoint()), MACHINE);

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
        let stub = StubServer::always(400, &[JSON], body).await;

        let outcome = SfnExecutionStarter::new(client(stub.endpoint()), MACHINE)
            .start("n", "{}")
            .await
            .expect("not an error");

        assert_eq!(outcome, StartOutcome::AlreadyStarted);
    }

    #[tokio::test]
    async fn throttling_is_a_transient_error_that_names_the_execution() {
        let stub = StubServer::always(
            400,
            &[JSON],
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        )
        .await;

        let e = SfnExecutionStarter::new(client(stub.endpoint()), MACHINE)
            .start("s0-c00000-abc", "{}")
            .await
            .expect_err("throttled");

        assert_eq!(e.kind, ErrorKind::Throttled);
        assert!(e.message.contains("s0-c00000-abc"), "{}", e.message);
    }

    #[tokio::test]
    async fn the_execution_limit_is_throttling_and_a_bad_input_is_a_bug() {
        for (body, kind) in [
            (
                r#"{"__type":"com.amazonaws.states#ExecutionLimitExceeded","message":"too many"}"#,
                ErrorKind::Throttled,
            ),
            (
                r#"{"__type":"com.amazonaws.states#InvalidExecutionInput","message":"bad"}"#,
                ErrorKind::Internal,
            ),
        ] {
            let stub = StubServer::always(400, &[JSON], body).await;
            let e = SfnExecutionStarter::new(client(stub.endpoint()), MACHINE)
                .start("n", "{}")
                .await
                .expect_err("refused");
            assert_eq!(e.kind, kind, "{body}");
        }
    }

    #[tokio::test]
    async fn a_state_machine_that_does_not_exist_is_misconfiguration() {
        let body = r#"{"__type":"com.amazonaws.states#StateMachineDoesNotExist","message":"State Machine Does Not Exist"}"#;
        let stub = StubServer::always(400, &[JSON], body).await;

        let e = SfnExecutionStarter::new(client(stub.endpoint()), MACHINE)
            .start("n", "{}")
            .await
            .expect_err("missing");

        assert_eq!(e.kind, ErrorKind::Misconfigured);
    }
}
