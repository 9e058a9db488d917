//! The Lambda side of the stack: `cargo lambda watch --only-lambda-apis` emulates the Lambda
//! invoke and runtime APIs, and the stack runs the real function binaries (built once, dev
//! profile) against it, several instances per function, restarting any that exits.
//!
//! Why not let `cargo lambda watch` start the functions itself: it would `cargo run` each one
//! on first invoke, which takes the workspace's build lock (shared with everyone compiling on
//! the machine) and recompiles when anyone edits a file. Running the binaries ourselves gives
//! known PIDs, explicit environment variables, and concurrency per function.

use super::procs::{self, Managed, Recorded};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The functions the pipeline runs, by binary name (= crate name in `functions/`).
pub const PIPELINE_FUNCTIONS: &[&str] = &[
    "fanout",
    "validate",
    "archive",
    "persist",
    "cache-invalidate",
];

/// Processes started by the stack, kept in `pids.json` as they come and go.
#[derive(Debug, Clone)]
pub struct Registry {
    state_dir: PathBuf,
    records: Arc<Mutex<Vec<Recorded>>>,
}

impl Registry {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_owned(),
            records: Arc::default(),
        }
    }

    pub fn add(&self, r: Recorded) {
        let mut g = self.records.lock().unwrap_or_else(|e| e.into_inner());
        g.push(r);
        let _ = procs::write_records(&self.state_dir, &g);
    }

    pub fn remove(&self, pid: u32) {
        let mut g = self.records.lock().unwrap_or_else(|e| e.into_inner());
        g.retain(|r| r.pid != pid);
        let _ = procs::write_records(&self.state_dir, &g);
    }

    pub fn all(&self) -> Vec<Recorded> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Builds every binary of the workspace in the dev profile. `tests/workspace-hack` gives this
/// build, the xtask's own and the test runs one feature set, so it compiles only the
/// workspace's own crates that the xtask does not link (`unify`'s test holds that).
pub fn build_functions(root: &Path) -> Result<()> {
    crate::shell::step("cargo build --workspace --bins (the function binaries, dev profile)");
    let status = crate::cargo_env::cargo()
        .current_dir(root)
        .args(["build", "--workspace", "--bins"])
        .status()
        .context("could not run cargo build")?;
    if !status.success() {
        bail!("building the function binaries failed ({status})");
    }
    Ok(())
}

/// Where a function's binary is.
pub fn binary_path(root: &Path, binary: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug").join(binary)
}

/// Starts the emulator of the Lambda APIs (invoke and runtime) on 127.0.0.1:`port`.
pub fn start_emulator(
    root: &Path,
    cargo_lambda: &Path,
    port: u16,
    timeout: Duration,
    log: &Path,
) -> Result<Managed> {
    let mut cmd = std::process::Command::new(cargo_lambda);
    cmd.current_dir(root).args([
        "lambda",
        "watch",
        "--only-lambda-apis",
        "--ignore-changes",
        "-A",
        "127.0.0.1",
        "-P",
    ]);
    cmd.arg(port.to_string())
        .arg("--timeout")
        .arg(format!("{}", timeout.as_secs()));
    procs::spawn("cargo-lambda-watch", cmd, log)
}

/// What every instance of one function gets.
#[derive(Debug, Clone)]
pub struct FunctionLaunch {
    pub binary: String,
    pub path: PathBuf,
    pub env: Vec<(String, String)>,
    pub runtime_port: u16,
    pub log: PathBuf,
}

impl FunctionLaunch {
    fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.path);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{}", self.runtime_port, self.binary),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.binary)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.binary),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }
}

/// Keeps `instances` copies of a function running until `stop` turns true; an instance that
/// exits is started again after a short pause (a new "cold start", as Lambda would).
pub fn supervise(
    launch: FunctionLaunch,
    instances: usize,
    registry: Registry,
    stop: watch::Receiver<bool>,
) {
    if !launch.path.exists() {
        tracing_free_warn(&format!(
            "{} is missing; build the functions first",
            launch.path.display()
        ));
    }
    for _ in 0..instances {
        let launch = launch.clone();
        let registry = registry.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                match procs::spawn(&launch.binary, launch.command(), &launch.log) {
                    Ok(mut m) => {
                        let pid = m.record.pid;
                        registry.add(m.record.clone());
                        tokio::select! {
                            status = m.child.wait() => {
                                registry.remove(pid);
                                if !*stop.borrow() {
                                    tracing_free_warn(&format!("{} (pid {pid}) exited ({status:?}); starting another", launch.binary));
                                }
                            }
                            _ = stop.changed() => {
                                // The stack stops the process group; reap it here.
                                let _ = tokio::time::timeout(Duration::from_secs(5), m.child.wait()).await;
                                registry.remove(pid);
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing_free_warn(&format!("could not start {}: {e:#}", launch.binary))
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
}

/// The stack prints to stderr; its children log to files.
fn tracing_free_warn(msg: &str) {
    eprintln!("stack: {msg}");
}
