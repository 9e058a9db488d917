//! The stack's child processes: each runs in its own process group with its output in a log
//! file, and is recorded (PID, program) in the stack's state directory, so the stack, `stack
//! down` or the reaper can stop exactly the processes the stack started, and nothing else.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A started process, as recorded in `pids.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    /// Also its process group id: every child leads its own group.
    pub pid: u32,
    /// The program path, checked against `/proc/<pid>/cmdline` before any signal, so a
    /// recycled PID is never signalled.
    pub program: String,
}

/// A running child of the stack.
#[derive(Debug)]
pub struct Managed {
    pub record: Recorded,
    pub child: Child,
}

/// Starts `cmd` in a new process group, with stdout and stderr appended to `log`.
pub fn spawn(name: &str, mut cmd: std::process::Command, log: &Path) -> Result<Managed> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("could not open {}", log.display()))?;
    let err = file.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .process_group(0);
    let mut cmd = Command::from(cmd);
    cmd.kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("could not start {name} ({program})"))?;
    let pid = child.id().context("child exited at once")?;
    Ok(Managed {
        record: Recorded {
            name: name.to_owned(),
            pid,
            program,
        },
        child,
    })
}

/// Whether `pid` is alive and still runs `program` (not a recycled PID).
pub fn is_ours(r: &Recorded) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", r.pid)) else {
        return false;
    };
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let base = Path::new(&r.program)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Python entry points show as `python3 /path/to/moto_server`, so look at the first two.
    args.iter().take(2).any(|a| {
        a == &r.program
            || Path::new(a)
                .file_name()
                .is_some_and(|f| f.to_string_lossy() == base)
    })
}

fn signal_group(pid: u32, signal: &str) {
    // `kill` the command: the workspace forbids unsafe code, and this is not a hot path.
    let _ = std::process::Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

fn group_alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops recorded process groups: SIGTERM, then SIGKILL after `grace`. Only groups whose
/// leader is still the recorded program are signalled.
pub fn stop_recorded(records: &[Recorded], grace: Duration) {
    let ours: Vec<&Recorded> = records.iter().filter(|r| is_ours(r)).collect();
    for r in &ours {
        signal_group(r.pid, "TERM");
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && ours.iter().any(|r| group_alive(r.pid)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in ours.iter().filter(|r| group_alive(r.pid)) {
        signal_group(r.pid, "KILL");
    }
}

/// Stops running children (and their process groups), then reaps them.
pub async fn stop_all(children: &mut Vec<Managed>, grace: Duration) {
    let records: Vec<Recorded> = children.iter().map(|c| c.record.clone()).collect();
    tokio::task::spawn_blocking(move || stop_recorded(&records, grace))
        .await
        .ok();
    for c in children.iter_mut() {
        let _ = c.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), c.child.wait()).await;
    }
    children.clear();
}

/// The file listing a stack's children.
pub fn pids_file(state_dir: &Path) -> PathBuf {
    state_dir.join("pids.json")
}

pub fn write_records(state_dir: &Path, records: &[Recorded]) -> Result<()> {
    let path = pids_file(state_dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(records)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

pub fn read_records(state_dir: &Path) -> Vec<Recorded> {
    std::fs::read(pids_file(state_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Whether a process (by PID) still exists.
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spawned_child_is_recognised_and_stopped_with_its_group() {
        let dir = std::env::temp_dir().join(format!("xtask-procs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        let child = spawn("sleeper", cmd, &dir.join("sleeper.log")).expect("spawn");
        // Right after fork the child still shows the parent's command line until it execs.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_ours(&child.record) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(is_ours(&child.record));
        let pid = child.record.pid;
        let mut children = vec![child];
        stop_all(&mut children, Duration::from_secs(2)).await;
        assert!(
            !pid_alive(pid) || !group_alive(pid),
            "the child must be gone"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_recycled_pid_running_another_program_is_not_ours() {
        let me = Recorded {
            name: "x".into(),
            pid: std::process::id(),
            program: "/surely/not/this/program".into(),
        };
        assert!(!is_ours(&me));
    }
}
