//! CloudFormation custom resources: the request CloudFormation sends, the response it waits
//! for at the request's presigned `ResponseURL`, and [`respond`], which always answers — when
//! the work fails, panics or runs out of time too — so a stack never hangs for an hour
//! waiting for a function that already gave up.

mod transport;

pub use transport::ResponseSender;

use crate::error::{ErrorKind, PipelineError};
use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest as Request;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// The longest reason we send: CloudFormation rejects response bodies over 4 KiB.
pub const MAX_REASON_BYTES: usize = 1024;

/// What CloudFormation asks the resource to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Create,
    Update,
    Delete,
}

/// One custom-resource request, whatever its type.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomResourceEvent {
    pub kind: RequestKind,
    pub request_id: String,
    /// Presigned: treat as a secret, never log it.
    pub response_url: String,
    pub stack_id: String,
    pub logical_resource_id: String,
    /// What we answered on Create; absent on Create itself.
    pub physical_resource_id: Option<String>,
    pub properties: Value,
    /// The previous properties, on Update only.
    pub old_properties: Option<Value>,
}

impl CustomResourceEvent {
    /// Reads a request from the Lambda payload.
    pub fn from_value(value: Value) -> Result<Self, PipelineError> {
        let request: Request = serde_json::from_value(value).map_err(|e| {
            PipelineError::invalid_payload(format!(
                "not a CloudFormation custom-resource request: {e}"
            ))
        })?;
        Ok(match request {
            Request::Create(r) => Self {
                kind: RequestKind::Create,
                request_id: r.request_id,
                response_url: r.response_url,
                stack_id: r.stack_id,
                logical_resource_id: r.logical_resource_id,
                physical_resource_id: None,
                properties: r.resource_properties,
                old_properties: None,
            },
            Request::Update(r) => Self {
                kind: RequestKind::Update,
                request_id: r.request_id,
                response_url: r.response_url,
                stack_id: r.stack_id,
                logical_resource_id: r.logical_resource_id,
                physical_resource_id: Some(r.physical_resource_id),
                properties: r.resource_properties,
                old_properties: Some(r.old_resource_properties),
            },
            Request::Delete(r) => Self {
                kind: RequestKind::Delete,
                request_id: r.request_id,
                response_url: r.response_url,
                stack_id: r.stack_id,
                logical_resource_id: r.logical_resource_id,
                physical_resource_id: Some(r.physical_resource_id),
                properties: r.resource_properties,
                old_properties: None,
            },
            _ => {
                return Err(PipelineError::invalid_payload(
                    "unknown custom-resource RequestType",
                ));
            }
        })
    }

    /// The fields we can still answer with when the payload is not a well-formed request
    /// (so CloudFormation hears FAILED instead of waiting). `None` without a `ResponseURL`.
    pub fn salvage(value: &Value) -> Option<Self> {
        let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            kind: match value.get("RequestType").and_then(Value::as_str) {
                Some("Delete") => RequestKind::Delete,
                Some("Update") => RequestKind::Update,
                _ => RequestKind::Create,
            },
            request_id: text("RequestId").unwrap_or_default(),
            response_url: text("ResponseURL")?,
            stack_id: text("StackId").unwrap_or_default(),
            logical_resource_id: text("LogicalResourceId").unwrap_or_default(),
            physical_resource_id: text("PhysicalResourceId"),
            properties: value
                .get("ResourceProperties")
                .cloned()
                .unwrap_or(Value::Null),
            old_properties: value.get("OldResourceProperties").cloned(),
        })
    }

    /// A required string property; the error names it.
    pub fn property(&self, name: &str) -> Result<&str, PipelineError> {
        self.properties
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                PipelineError::invalid_payload(format!("resource property {name} is required"))
            })
    }

    /// The id we answer with when the work names none: the one CloudFormation already has,
    /// or, on Create, one made from the logical id and the request id.
    pub fn default_physical_id(&self) -> String {
        self.physical_resource_id.clone().unwrap_or_else(|| {
            let short: String = self
                .request_id
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(12)
                .collect();
            format!("{}-{}", self.logical_resource_id, short)
        })
    }
}

/// What successful work reports back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// `None` keeps the default (see [`CustomResourceEvent::default_physical_id`]). A new id
    /// on Update makes CloudFormation delete the old one afterwards.
    pub physical_resource_id: Option<String>,
    /// Readable with `!GetAtt Resource.Name`.
    pub data: BTreeMap<String, String>,
}

/// The body CloudFormation expects at the `ResponseURL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Success,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub no_echo: bool,
    pub data: BTreeMap<String, String>,
}

impl Response {
    pub fn success(event: &CustomResourceEvent, outcome: Outcome) -> Self {
        Self {
            status: Status::Success,
            reason: "OK".to_owned(),
            physical_resource_id: outcome
                .physical_resource_id
                .unwrap_or_else(|| event.default_physical_id()),
            stack_id: event.stack_id.clone(),
            request_id: event.request_id.clone(),
            logical_resource_id: event.logical_resource_id.clone(),
            no_echo: false,
            data: outcome.data,
        }
    }

    /// A failure keeps the physical id CloudFormation knows, so a rollback's Delete targets it.
    pub fn failure(event: &CustomResourceEvent, reason: &str) -> Self {
        Self {
            status: Status::Failed,
            reason: truncate(reason, MAX_REASON_BYTES),
            physical_resource_id: event.default_physical_id(),
            stack_id: event.stack_id.clone(),
            request_id: event.request_id.clone(),
            logical_resource_id: event.logical_resource_id.clone(),
            no_echo: false,
            data: BTreeMap::new(),
        }
    }
}

/// How long the work may run, and where its logs are (named in a failure's reason).
#[derive(Debug, Clone)]
pub struct Budget {
    pub time_left: Duration,
    pub log_stream: String,
}

impl Budget {
    /// Time kept back from the invocation's deadline to send the response.
    pub const RESPONSE_MARGIN: Duration = Duration::from_secs(10);

    /// From the Lambda context's deadline (milliseconds since the epoch).
    pub fn from_deadline_ms(deadline_ms: u64, log_stream: impl Into<String>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            time_left: Duration::from_millis(deadline_ms).saturating_sub(now),
            log_stream: log_stream.into(),
        }
    }

    fn for_work(&self) -> Duration {
        self.time_left.saturating_sub(Self::RESPONSE_MARGIN)
    }
}

/// Runs `work` for a raw custom-resource payload and answers CloudFormation whatever happens:
/// SUCCESS with the outcome, or FAILED with the error, a panic or a timeout as the reason.
/// Returns the response sent; an error only when no response could be sent.
pub async fn respond<F, Fut>(
    payload: Value,
    budget: &Budget,
    sender: &ResponseSender,
    work: F,
) -> Result<Response, PipelineError>
where
    F: FnOnce(CustomResourceEvent) -> Fut,
    Fut: Future<Output = Result<Outcome, PipelineError>> + Send + 'static,
{
    let response = match CustomResourceEvent::from_value(payload.clone()) {
        Ok(event) => {
            tracing::info!(kind = ?event.kind, logical_resource_id = %event.logical_resource_id, request_id = %event.request_id, "custom-resource request");
            let result = run_guarded(work(event.clone()), budget.for_work()).await;
            match result {
                Ok(outcome) => Response::success(&event, outcome),
                Err(e) => {
                    tracing::error!(error_type = e.kind.name(), error = %e.detailed(), "custom-resource work failed");
                    Response::failure(&event, &failure_reason(&e, &budget.log_stream))
                }
            }
        }
        Err(e) => {
            let event = CustomResourceEvent::salvage(&payload).ok_or_else(|| {
                PipelineError::invalid_payload(
                    "custom-resource payload has no ResponseURL; nothing to answer",
                )
            })?;
            // Counted with "custom-resource work failed" by the stack's metric filters: both
            // are a FAILED answer.
            tracing::error!(error_type = e.kind.name(), error = %e.detailed(), "custom-resource request unreadable");
            Response::failure(&event, &failure_reason(&e, &budget.log_stream))
        }
    };
    let url = payload
        .get("ResponseURL")
        .and_then(Value::as_str)
        .unwrap_or_default();
    sender.send(url, &response).await?;
    Ok(response)
}

/// Runs the work on its own task, so a panic comes back as an error, within `limit`.
async fn run_guarded<Fut>(work: Fut, limit: Duration) -> Result<Outcome, PipelineError>
where
    Fut: Future<Output = Result<Outcome, PipelineError>> + Send + 'static,
{
    let task = tokio::spawn(work);
    let abort = task.abort_handle();
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(PipelineError::new(
            ErrorKind::Internal,
            format!("the work panicked: {join}"),
        )),
        Err(_) => {
            abort.abort();
            Err(PipelineError::new(
                ErrorKind::DependencyUnavailable,
                format!("the work did not finish within {}s", limit.as_secs()),
            ))
        }
    }
}

fn failure_reason(e: &PipelineError, log_stream: &str) -> String {
    let reason = format!("{}: {}", e.kind.name(), e.detailed());
    if log_stream.is_empty() {
        reason
    } else {
        format!("{reason} (log stream {log_stream})")
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests;
