//! `cargo xtask stack up|down`, and the reaper that cleans up after a stack that died.

use super::procs::{self, Recorded};
use super::start::{self, LocalStack, StackOptions, stacks_dir};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `cargo xtask stack`.
#[derive(Debug, clap::Args)]
pub struct StackCommand {
    #[command(subcommand)]
    command: Stack,
}

#[derive(Debug, clap::Subcommand)]
enum Stack {
    /// Start the local stack and keep it running until Ctrl-C, SIGTERM, `stack down` or --ttl.
    Up {
        /// Where to write the outputs [default: cfn-outputs/flat-outputs.json in the checkout].
        #[arg(long, value_name = "PATH")]
        outputs: Option<PathBuf>,
        /// Stop by itself after this many seconds.
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        #[command(flatten)]
        stack: StackArgs,
        /// Keep the database and cache keys afterwards.
        #[arg(long)]
        keep_data: bool,
    },
    /// Stop every local stack of this checkout, and clean up after any that died.
    Down,
    /// Run COMMAND with a stack up (its outputs in .local/stack/<id>/flat-outputs.json, named
    /// by INVENTORY_OUTPUTS, with INVENTORY_E2E_REQUIRED=1), then stop the stack; e.g.
    /// `cargo xtask stack run -- cargo test -p integration-tests e2e`.
    Run {
        #[command(flatten)]
        stack: StackArgs,
        /// Keep the database and cache keys afterwards.
        #[arg(long)]
        keep_data: bool,
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Watch a stack's process and clean up after it if it dies (started by the stack itself).
    #[command(hide = true)]
    Reap {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        watch: u32,
    },
}

/// The stack's options that `stack up`, `stack run` and `demo` share.
#[derive(Debug, clap::Args)]
pub struct StackArgs {
    /// Stream shards.
    #[arg(long, value_name = "N", default_value_t = StackOptions::default().shards)]
    shards: i32,
    /// Instances per function.
    #[arg(long, value_name = "N", default_value_t = StackOptions::default().instances)]
    instances: usize,
    /// Event source mapping batch size.
    #[arg(long, value_name = "N", default_value_t = StackOptions::default().esm.batch_size)]
    batch_size: usize,
    /// Event source mapping batching window, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = default_window_ms())]
    window_ms: u64,
    /// Use the function binaries as they are in target/debug.
    #[arg(long)]
    no_build: bool,
}

fn default_window_ms() -> u64 {
    u64::try_from(StackOptions::default().esm.batching_window.as_millis()).unwrap_or(u64::MAX)
}

impl StackArgs {
    /// The stack options these arguments ask for.
    pub fn options(&self) -> StackOptions {
        let mut o = StackOptions {
            shards: self.shards,
            instances: self.instances,
            build: !self.no_build,
            ..StackOptions::default()
        };
        o.esm.batch_size = self.batch_size;
        o.esm.batching_window = Duration::from_millis(self.window_ms);
        o
    }
}

pub fn run(a: StackCommand) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match a.command {
        Stack::Up {
            outputs,
            ttl,
            stack,
            keep_data,
        } => {
            let mut opts = StackOptions {
                keep_data,
                ..stack.options()
            };
            if let Some(outputs) = outputs {
                opts.outputs = outputs;
            }
            rt.block_on(up(opts, ttl))
        }
        Stack::Down => rt.block_on(down()),
        Stack::Run {
            stack,
            keep_data,
            command,
        } => run_with_stack(
            StackOptions {
                keep_data,
                ..stack.options()
            },
            &command,
        ),
        Stack::Reap { state_dir, watch } => rt.block_on(reap(&state_dir, watch)),
    }
}

/// `stack run [options] -- COMMAND...`: COMMAND with a stack of its own up.
fn run_with_stack(mut o: StackOptions, command: &[String]) -> Result<()> {
    let Some((program, program_args)) = command.split_first() else {
        bail!("stack run needs a command after --")
    };
    o.outputs = stacks_dir().join(&o.id).join("flat-outputs.json");
    super::with_stack(o, |_, env| {
        // Usually cargo (`stack run -- cargo test ...`): started as a developer would.
        let status = crate::cargo_env::as_started_by_a_developer(&mut Command::new(program))
            .args(program_args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()?;
        anyhow::ensure!(
            status.success(),
            "{program} {} failed ({status})",
            program_args.join(" ")
        );
        Ok(())
    })
}

async fn up(opts: StackOptions, ttl: Option<u64>) -> Result<()> {
    let stack = LocalStack::start(opts).await?;
    eprintln!(
        "stack: up. Outputs in {} (endpoint {}, logs in {}/logs). Ctrl-C or `cargo xtask stack down` stops it.",
        stack.outputs_path.display(),
        stack.outputs.local_endpoint_url,
        stack.state_dir.display()
    );
    wait_for_stop(ttl).await;
    eprintln!("stack: stopping");
    stack.stop().await
}

/// Waits for Ctrl-C, SIGTERM or the time to live.
pub async fn wait_for_stop(ttl: Option<u64>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ttl = async {
        match ttl {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        _ = ttl => {}
    }
}

fn xtask_record(pid: u32) -> Option<Recorded> {
    let exe = std::env::current_exe().ok()?;
    Some(Recorded {
        name: "xtask".into(),
        pid,
        program: exe.display().to_string(),
    })
}

async fn down() -> Result<()> {
    let Ok(entries) = std::fs::read_dir(stacks_dir()) else {
        eprintln!("stack: no local stack");
        return Ok(());
    };
    for dir in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let Some(state) = start::read_state(&dir) else {
            continue;
        };
        let supervisor = xtask_record(state.supervisor_pid).filter(procs::is_ours);
        if let Some(s) = &supervisor {
            eprintln!(
                "stack: asking stack {} (pid {}) to stop",
                dir.display(),
                s.pid
            );
            let _ = Command::new("kill")
                .args(["-TERM", &s.pid.to_string()])
                .status();
            for _ in 0..300 {
                if !dir.join("state.json").exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if dir.join("state.json").exists() {
            eprintln!("stack: cleaning up after {}", dir.display());
            clean_up(&dir).await?;
        }
    }
    Ok(())
}

/// Stops a dead stack's leftovers and drops its data.
async fn clean_up(dir: &Path) -> Result<()> {
    let records = procs::read_records(dir);
    tokio::task::spawn_blocking(move || procs::stop_recorded(&records, Duration::from_secs(3)))
        .await
        .ok();
    if let Some(state) = start::read_state(dir) {
        start::cleanup_data(&state).await?;
    }
    std::fs::remove_file(dir.join("state.json")).ok();
    Ok(())
}

/// Starts the reaper: a copy of this program that waits for the stack's process to go away
/// and then cleans up after it. Runs in its own process group, so Ctrl-C does not reach it.
pub fn spawn_reaper(state_dir: &Path, logs: &Path) -> Result<Recorded> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["stack", "reap", "--state-dir"])
        .arg(state_dir)
        .args(["--watch", &std::process::id().to_string()]);
    let m = procs::spawn("reaper", cmd, &logs.join("reaper.log"))?;
    let record = m.record.clone();
    // Detach: the reaper outlives this handle on purpose.
    let mut child = m.child;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(record)
}

async fn reap(dir: &Path, watch: u32) -> Result<()> {
    loop {
        if !dir.join("state.json").exists() {
            return Ok(()); // stopped normally
        }
        if !procs::pid_alive(watch) {
            eprintln!(
                "reaper: stack process {watch} is gone; cleaning up {}",
                dir.display()
            );
            return clean_up(dir).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// At start-up: cleans up after stacks whose process and reaper both died, and forgets old
/// stopped stacks (their logs), keeping the five most recent.
pub fn clean_dead_stacks() {
    let Ok(entries) = std::fs::read_dir(stacks_dir()) else {
        return;
    };
    let mut stopped = Vec::new();
    for dir in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        match start::read_state(&dir) {
            Some(state) => {
                let alive = procs::pid_alive(state.supervisor_pid)
                    || state.reaper.as_ref().is_some_and(procs::is_ours);
                if !alive {
                    let d = dir.clone();
                    let _ = std::thread::spawn(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map(|rt| rt.block_on(clean_up(&d)))
                    })
                    .join();
                }
            }
            None => stopped.push(dir),
        }
    }
    stopped.sort_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok());
    let excess = stopped.len().saturating_sub(5);
    for d in stopped.into_iter().take(excess) {
        std::fs::remove_dir_all(d).ok();
    }
}
