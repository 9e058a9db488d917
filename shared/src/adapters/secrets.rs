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
}
