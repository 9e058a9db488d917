//! Reading an existing Secrets Manager secret (a JSON object) at cold start. Values are
//! returned to the caller and never logged.

use crate::error::PipelineError;
use crate::redact::{ExposeSecret as _, SecretString};
use aws_sdk_secretsmanager::Client;
use std::collections::HashMap;

/// A secret's JSON fields. `Debug` shows the field names only.
#[derive(Clone, Debug)]
pub struct SecretFields(HashMap<String, SecretString>);

impl SecretFields {
    /// Parses a secret string: a JSON object whose values are strings or numbers.
    pub fn parse(arn: &str, text: &str) -> Result<Self, PipelineError> {
        let map: HashMap<String, serde_json::Value> = serde_json::from_str(text).map_err(|_| {
            PipelineError::misconfigured(format!("secret {arn} is not a JSON object"))
        })?;
        Ok(Self(
            map.into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, s.into())),
                    serde_json::Value::Number(n) => Some((k, n.to_string().into())),
                    _ => None,
                })
                .collect(),
        ))
    }

    /// A required field; the error names the secret and the field, never a value.
    pub fn field(&self, arn: &str, name: &str) -> Result<&str, PipelineError> {
        self.0.get(name).map(|v| v.expose_secret()).ok_or_else(|| {
            PipelineError::misconfigured(format!("secret {arn} has no field {name:?}"))
        })
    }
}

/// Fetches a secret's current value.
#[tracing::instrument(skip(client))]
pub async fn fetch(client: &Client, arn: &str) -> Result<SecretFields, PipelineError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| super::aws::pipeline_error(format_args!("could not read secret {arn}"), &e))?;
    let text = out
        .secret_string()
        .ok_or_else(|| PipelineError::misconfigured(format!("secret {arn} has no string value")))?;
    SecretFields::parse(arn, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn fields_are_read_and_debug_never_shows_values() {
        let s = SecretFields::parse(
            "arn:x",
            r#"{"username":"app","password":"hunter2","port":5432}"#,
        )
        .expect("json");
        assert_eq!(s.field("arn:x", "username").expect("present"), "app");
        assert_eq!(s.field("arn:x", "port").expect("present"), "5432");
        assert!(!format!("{s:?}").contains("hunter2"));
        let e = s.field("arn:x", "token").expect_err("absent");
        assert!(e.message.contains("\"token\"") && !e.message.contains("hunter2"));
    }

    #[test]
    fn a_secret_that_is_not_json_is_a_configuration_error() {
        let e = SecretFields::parse("arn:x", "plain-text-password").expect_err("not json");
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(!e.message.contains("plain-text-password"));
    }

    #[test]
    fn fields_that_are_neither_strings_nor_numbers_are_left_out() {
        let s = SecretFields::parse(
            "arn:x",
            r#"{"username":"app","tags":["a"],"nested":{"k":"v"},"enabled":true,"none":null}"#,
        )
        .expect("json");
        assert_eq!(s.field("arn:x", "username").expect("present"), "app");
        for name in ["tags", "nested", "enabled", "none"] {
            let e = s.field("arn:x", name).expect_err(name);
            assert_eq!(e.kind, ErrorKind::Misconfigured);
        }
    }

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf";

    fn client(endpoint: &str) -> Client {
        let sdk = test_support::aws::stub_sdk_config(endpoint);
        Client::new(&sdk)
    }

    async fn answering(
        status: u16,
        body: serde_json::Value,
    ) -> test_support::stub_http::StubServer {
        test_support::stub_http::StubServer::always(
            status,
            &[("content-type", "application/x-amz-json-1.1")],
            &body.to_string(),
        )
        .await
    }

    #[tokio::test]
    async fn the_secret_is_asked_for_by_its_arn_and_its_fields_are_read() {
        let stub = answering(
            200,
            serde_json::json!({
                "ARN": ARN,
                "Name": "db",
                "SecretString": r#"{"username":"app","password":"hunter2"}"#,
            }),
        )
        .await;

        let fields = fetch(&client(stub.endpoint()), ARN).await.expect("read");

        assert_eq!(fields.field(ARN, "username").expect("present"), "app");
        assert_eq!(fields.field(ARN, "password").expect("present"), "hunter2");
        let request = &stub.received()[0];
        assert_eq!(
            request.header("x-amz-target"),
            Some("secretsmanager.GetSecretValue")
        );
        assert_eq!(request.json()["SecretId"], ARN);
    }

    #[tokio::test]
    async fn a_secret_without_a_string_value_is_a_configuration_error() {
        let stub = answering(
            200,
            serde_json::json!({ "ARN": ARN, "Name": "db", "SecretBinary": "aGVsbG8=" }),
        )
        .await;

        let e = fetch(&client(stub.endpoint()), ARN)
            .await
            .expect_err("binary only");

        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert_eq!(e.message, format!("secret {ARN} has no string value"));
    }

    #[tokio::test]
    async fn a_secret_that_is_not_json_is_refused_without_showing_it() {
        let stub = answering(
            200,
            serde_json::json!({ "ARN": ARN, "Name": "db", "SecretString": "hunter2" }),
        )
        .await;

        let e = fetch(&client(stub.endpoint()), ARN)
            .await
            .expect_err("not json");

        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_missing_secret_is_misconfiguration_and_an_unavailable_service_is_transient() {
        let missing = answering(
            400,
            serde_json::json!({
                "__type": "ResourceNotFoundException",
                "Message": "Secrets Manager can't find the specified secret.",
            }),
        )
        .await;
        let e = fetch(&client(missing.endpoint()), ARN)
            .await
            .expect_err("missing");
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(
            e.message
                .starts_with(&format!("could not read secret {ARN}")),
            "{}",
            e.message
        );

        let down = answering(
            500,
            serde_json::json!({ "__type": "InternalServiceError", "Message": "try later" }),
        )
        .await;
        let e = fetch(&client(down.endpoint()), ARN)
            .await
            .expect_err("down");
        assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
        assert!(e.is_transient());
    }
}
