//! The error taxonomy: transient failures (retry) apart from permanent ones (don't), each
//! with a stable name that the state machine's `Retry` matches on.

use std::fmt;

/// What kind of failure happened. The names returned by [`ErrorKind::name`] are the
/// functions' `errorType`s and are part of the contract with the ASL file: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr)]
#[strum(prefix = "Inventory.")]
pub enum ErrorKind {
    /// A dependency (PostgreSQL, Redis, S3, Step Functions) could not be reached, timed out or
    /// answered with a server error. Transient.
    DependencyUnavailable,
    /// A dependency asked us to slow down. Transient.
    Throttled,
    /// A concurrent writer got in the way (serialization failure, deadlock). Transient.
    Conflict,
    /// The function's input does not have the expected shape. Permanent: retrying the same
    /// input gives the same answer.
    InvalidPayload,
    /// The function is configured wrongly (missing variable, wrong bucket, bad credentials).
    /// Permanent until someone fixes the configuration, then a redrive resumes.
    Misconfigured,
    /// A bug or an invariant broken. Permanent.
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [ErrorKind] = <Self as strum::VariantArray>::VARIANTS;

    /// The stable error name (`errorType`) the state machine sees: `Inventory.` and the
    /// variant's name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether retrying the same input may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::DependencyUnavailable | ErrorKind::Throttled | ErrorKind::Conflict
        )
    }

    /// The names the state machine retries.
    pub fn transient_names() -> impl Iterator<Item = &'static str> {
        Self::ALL
            .iter()
            .copied()
            .filter(|k| k.is_transient())
            .map(ErrorKind::name)
    }
}

/// An error from a pipeline step: its kind and what happened.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PipelineError {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl PipelineError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    pub fn invalid_payload(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidPayload, message)
    }

    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Misconfigured, message)
    }

    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The message followed by its chain of causes, for logs and the `errorMessage`.
    pub fn detailed(&self) -> String {
        let mut out = self.message.clone();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_permanent_kinds_are_told_apart() {
        let transient: Vec<_> = ErrorKind::transient_names().collect();
        assert_eq!(
            transient,
            [
                "Inventory.DependencyUnavailable",
                "Inventory.Throttled",
                "Inventory.Conflict"
            ]
        );
        assert!(!ErrorKind::InvalidPayload.is_transient());
        assert!(!ErrorKind::Misconfigured.is_transient());
    }

    #[test]
    fn every_kind_has_the_name_the_state_machine_matches_on() {
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "Inventory.DependencyUnavailable",
                "Inventory.Throttled",
                "Inventory.Conflict",
                "Inventory.InvalidPayload",
                "Inventory.Misconfigured",
                "Inventory.Internal"
            ]
        );
    }

    #[test]
    fn the_detailed_message_includes_the_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = PipelineError::with_source(
            ErrorKind::DependencyUnavailable,
            "could not reach PostgreSQL",
            io,
        );
        assert_eq!(
            e.detailed(),
            "could not reach PostgreSQL: connection refused"
        );
        assert!(e.is_transient());
    }
}
