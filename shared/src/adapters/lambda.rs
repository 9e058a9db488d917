//! Lambda plumbing shared by every function: JSON tracing, the cold start's report of a bad
//! configuration, and errors as `Diagnostic`s with the stable names the state machine matches
//! on.
//!
//! Every function crate has the same shape. Its `main.rs` calls [`init_tracing`], reads its
//! `Config` through [`config_or_report`], builds its clients once, and runs the runtime with a
//! closure that calls the handler. Its `handler.rs` parses the payload, calls one use case and
//! returns `Result<_, PipelineError>`; the runtime turns the error into a [`Diagnostic`]
//! through the `From` below, so an error of a given kind has the same `errorType` in every
//! function.

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

/// The configuration read at cold start, or the error `main` returns instead of starting the
/// runtime: a function cannot do anything useful with a configuration it cannot read, and a
/// failed init is what Lambda reports and retries. The error is logged first (see
/// [`report_bad_configuration`]), so the reason is in the function's logs.
pub fn config_or_report<T>(config: Result<T, PipelineError>) -> Result<T, lambda_runtime::Error> {
    config.map_err(|e| {
        report_bad_configuration(&e);
        lambda_runtime::Error::from(e)
    })
}

/// Logs a configuration the function cannot work with: one ERROR line, "bad configuration",
/// with the error's stable name (`error_type`) and what is wrong (`error`), the same line in
/// every function. A function that must keep answering requests (a custom resource, which
/// CloudFormation waits on) logs it and goes on; the others stop through
/// [`config_or_report`].
pub fn report_bad_configuration(e: &PipelineError) {
    tracing::error!(error_type = e.kind.name(), error = %e.detailed(), "bad configuration");
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

    #[test]
    fn a_permanent_failure_is_logged_as_an_error_and_a_transient_one_as_a_warning() {
        let lines = logged_by(|| {
            let _: Diagnostic = PipelineError::new(ErrorKind::Internal, "no such column").into();
            let _: Diagnostic = PipelineError::new(ErrorKind::Conflict, "deadlock").into();
        });

        let seen: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    l["level"].as_str().unwrap_or_default(),
                    l["fields"]["message"].as_str().unwrap_or_default(),
                    l["fields"]["error_type"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("ERROR", "permanent failure", "Inventory.Internal"),
                (
                    "WARN",
                    "transient failure; the state machine retries",
                    "Inventory.Conflict"
                )
            ]
        );
    }

    /// Set in the process that [`init_tracing_logs_json_lines_on_stdout_at_the_level_rust_log_asks`]
    /// starts: there, the test installs the subscriber and logs.
    const CHILD: &str = "INVENTORY_INIT_TRACING_CHILD";

    /// `init_tracing` installs a process-wide subscriber, so it runs in a process of its own:
    /// this test binary again, running only this test.
    #[test]
    fn init_tracing_logs_json_lines_on_stdout_at_the_level_rust_log_asks() {
        if std::env::var_os(CHILD).is_some() {
            init_tracing();
            init_tracing(); // a second call keeps the first subscriber
            let span = tracing::warn_span!("invocation", request_id = "r-1");
            let _entered = span.enter();
            tracing::info!("below the level");
            tracing::warn!(chunk = 3, "kept");
            return;
        }
        let out = test_support::rerun_alone(
            "adapters::lambda::tests::init_tracing_logs_json_lines_on_stdout_at_the_level_rust_log_asks",
            &[(CHILD, "1"), ("RUST_LOG", "warn")],
        );
        assert!(out.status.success(), "{out:?}");

        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            // The harness prints the test's name without a newline before the test's output.
            .filter_map(|l| l.find('{').map(|start| &l[start..]))
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        let line = &lines[0];
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["fields"]["message"], "kept", "{line}");
        assert_eq!(line["fields"]["chunk"], 3, "{line}");
        assert_eq!(
            line["span"]["request_id"], "r-1",
            "the current span: {line}"
        );
        for absent in ["timestamp", "target", "spans"] {
            assert!(line.get(absent).is_none(), "{absent} in {line}");
        }
    }

    /// The JSON lines `f` logs, as `init_tracing`'s formatter writes them.
    fn logged_by(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = test_support::logs::CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        captured.json_lines()
    }

    #[test]
    fn a_readable_configuration_passes_through_and_logs_nothing() {
        let lines = logged_by(|| {
            let config = config_or_report(Ok::<_, PipelineError>(7)).expect("read");
            assert_eq!(config, 7);
        });
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn a_bad_configuration_is_logged_with_its_stable_name_and_stops_the_cold_start() {
        let cause = std::io::Error::other("no such file");
        let bad = PipelineError::with_source(
            ErrorKind::Misconfigured,
            "DB_TLS_CA_FILE is unreadable",
            cause,
        );
        let mut stopped = None;
        let lines = logged_by(|| stopped = config_or_report::<()>(Err(bad)).err());

        let stopped = stopped.expect("the cold start stops");
        let e = stopped
            .downcast_ref::<PipelineError>()
            .expect("the configuration's own error");
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["fields"]["message"], "bad configuration", "{line}");
        assert_eq!(
            line["fields"]["error_type"], "Inventory.Misconfigured",
            "{line}"
        );
        assert_eq!(
            line["fields"]["error"], "DB_TLS_CA_FILE is unreadable: no such file",
            "{line}"
        );
    }
}
