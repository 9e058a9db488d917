//! Lambda plumbing shared by every function: JSON tracing, and errors as `Diagnostic`s with
//! the stable names the state machine matches on.

use crate::error::PipelineError;
use lambda_runtime::Diagnostic;

/// Structured JSON logs on stdout (CloudWatch picks them up), filtered by `RUST_LOG`
/// (default `info`). Call once, first thing in `main`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // CloudWatch stamps every line
        .with_ansi(false)
        .try_init();
}

impl From<PipelineError> for Diagnostic {
    fn from(e: PipelineError) -> Self {
        let message = e.detailed();
        if e.is_transient() {
            tracing::warn!(error_type = e.kind.name(), error = %message, "transient failure; the state machine retries");
        } else {
            tracing::error!(error_type = e.kind.name(), error = %message, "permanent failure");
        }
        Diagnostic {
            error_type: e.kind.name().to_owned(),
            error_message: message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn an_error_becomes_a_diagnostic_with_its_stable_name() {
        let d: Diagnostic = PipelineError::new(ErrorKind::Conflict, "deadlock detected").into();
        assert_eq!(d.error_type, "Inventory.Conflict");
        assert_eq!(d.error_message, "deadlock detected");
    }
}
