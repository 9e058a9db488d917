//! The Lambda Runtime API on loopback, for tests that run a function's real binary the way
//! Lambda does: the binary polls for an invocation, gets one event, and posts its answer
//! (`/response` or `/error`). The next poll is answered with an error, which ends the
//! runtime's loop, so the process exits by itself and its logs (and, under the coverage tool,
//! its coverage) are written.

use crate::stub_http::{Answer, StubServer};
use std::process::Stdio;
use std::time::Duration;

/// The request id of the one invocation.
pub const REQUEST_ID: &str = "4b7e9d1c-0000-4000-8000-000000000001";

/// What the binary did with its one invocation.
#[derive(Debug)]
pub struct Answered {
    /// `response` or `error`, from the path the binary posted to; `None` if it posted nothing
    /// (its cold start stopped before the runtime started).
    pub outcome: Option<String>,
    /// The body posted: the handler's output, or `{"errorType", "errorMessage"}`.
    pub body: serde_json::Value,
    /// Whether the process exited with status 0.
    pub exited_ok: bool,
    /// What the process wrote to stdout and stderr: its log lines.
    pub logs: String,
}

impl Answered {
    /// The posted `errorType`, if the binary answered with an error.
    pub fn error_type(&self) -> Option<&str> {
        self.body["errorType"].as_str()
    }
}

/// Runs `binary` (`env!("CARGO_BIN_EXE_<name>")`) with the variables Lambda sets plus `env`,
/// hands it `event` as its one invocation, and returns what it answered once it has exited
/// (at most a minute).
pub async fn invoke_once(
    binary: &str,
    env: &[(&str, &str)],
    event: &serde_json::Value,
) -> Answered {
    // An hour from now, in milliseconds since the epoch: the invocation's deadline.
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 3_600_000)
        .unwrap_or_default()
        .to_string();
    let api = StubServer::start(
        vec![
            Answer::new(
                200,
                &[
                    ("content-type", "application/json"),
                    ("lambda-runtime-aws-request-id", REQUEST_ID),
                    ("lambda-runtime-deadline-ms", &deadline),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:under-test",
                    ),
                ],
                &event.to_string(),
            ),
            Answer::status(202),
        ],
        // No request id: the runtime's loop stops with an error and `main` returns.
        Answer::status(500),
    )
    .await;
    let mut command = tokio::process::Command::new(binary);
    // Only what Lambda sets and what the test gives, so a variable of the machine running the
    // tests (a DATABASE_URL, a region) cannot change the outcome; the coverage tool's
    // variable passes through, so the binary's coverage is counted too.
    command.env_clear();
    for kept in ["PATH", "LLVM_PROFILE_FILE"] {
        if let Some(value) = std::env::var_os(kept) {
            command.env(kept, value);
        }
    }
    let output = command
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            api.endpoint().trim_start_matches("http://"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "under-test")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap_or_else(|_| panic!("{binary} did not exit within a minute"))
        .unwrap_or_else(|e| panic!("could not run {binary}: {e}"));
    let posted = api.received().into_iter().find(|r| r.method() == "POST");
    Answered {
        outcome: posted.as_ref().map(|r| {
            let target = r.target();
            let expected = format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/");
            assert!(target.starts_with(&expected), "posted to {target}");
            target[expected.len()..].to_owned()
        }),
        body: posted.map(|r| r.json()).unwrap_or_default(),
        exited_ok: output.status.success(),
        logs: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
