//! A moto server (the local AWS API emulator) on loopback, and SDK configuration pointed at it.
//!
//! moto runs under a small `sh` watchdog that kills it (by PID) as soon as its stdin closes.
//! We hold the write end of that pipe, so the server dies when the [`MotoServer`] is dropped
//! *or* when the test process exits for any reason: a server shared by a whole test binary
//! (see [`MotoServer::shared`]) never outlives it.

use anyhow::{Context as _, Result, bail};
use aws_config::SdkConfig;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Starts moto in the background, prints its PID, and kills it when stdin closes.
const WATCHDOG: &str = r#"
"$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 </dev/null &
pid=$!
echo "$pid"
read _eof
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0
"#;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server on 127.0.0.1.
#[derive(Debug)]
pub struct MotoServer {
    endpoint: String,
    moto_pid: u32,
    log: PathBuf,
    watchdog: Child,
    /// Closing it tells the watchdog to kill moto.
    lifeline: Option<ChildStdin>,
}

impl MotoServer {
    /// Starts a server of its own on a free port and waits until it answers.
    pub fn start() -> Result<Self> {
        let moto = moto_server_path()?;
        let port = crate::free_port();
        let log = std::env::temp_dir().join(format!("moto-{}-{port}.log", std::process::id()));
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&moto)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("could not run sh to start moto_server")?;
        let lifeline = watchdog.stdin.take();
        let mut pid_line = String::new();
        if let Some(out) = watchdog.stdout.take() {
            BufReader::new(out)
                .read_line(&mut pid_line)
                .context("reading moto's PID")?;
        }
        let moto_pid = pid_line
            .trim()
            .parse()
            .with_context(|| format!("moto's PID, got {pid_line:?}"))?;
        let server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            moto_pid,
            log,
            watchdog,
            lifeline,
        };
        server.wait_until_ready(port)?;
        Ok(server)
    }

    /// One server for the whole test binary, started on first use. Give each test its own
    /// bucket ([`unique_name`]) so tests stay independent.
    pub fn shared() -> Result<&'static MotoServer> {
        static SHARED: OnceLock<std::result::Result<MotoServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("the shared moto server did not start: {e}"))
    }

    /// e.g. `http://127.0.0.1:41234`; what `AWS_ENDPOINT_URL` would be.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint
    }

    pub fn pid(&self) -> u32 {
        self.moto_pid
    }

    /// SDK configuration for this server: dummy credentials, us-east-1, its endpoint, the SDK's
    /// standard retries.
    pub fn sdk_config(&self) -> SdkConfig {
        crate::aws::loopback(&self.endpoint, aws_config::retry::RetryConfig::standard())
    }

    fn wait_until_ready(&self, port: u16) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if answers_http(addr) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: String = log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "moto_server did not answer on {} within {STARTUP_TIMEOUT:?}; its log:\n{tail}",
            self.endpoint
        )
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog kill moto by PID and exit.
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.watchdog.try_wait(), Ok(Some(_))) {
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").arg(self.moto_pid.to_string()).status();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// `$MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server`.
fn moto_server_path() -> Result<PathBuf> {
    let path = match std::env::var_os("MOTO_SERVER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(".venv/bin/moto_server"),
    };
    if !path.is_file() {
        bail!(
            "moto_server not found at {} (set MOTO_SERVER, or run `cargo xtask setup` to create the project venv)",
            path.display()
        );
    }
    Ok(path)
}

fn workspace_root() -> PathBuf {
    // This crate lives in <root>/tests/support.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// A name unique to this process and call, valid as an S3 bucket name:
/// `<purpose>-<pid>-<n>-<nanos>`, lower case, at most 63 characters.
pub fn unique_name(purpose: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let purpose: String = purpose
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(30)
        .collect();
    format!("{purpose}-{}-{n}-{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_server_stops_answering_and_its_process_is_gone() -> Result<()> {
        let server = MotoServer::start()?;
        let addr: SocketAddr = server
            .endpoint_url()
            .trim_start_matches("http://")
            .parse()?;
        let pid = server.pid();
        assert!(answers_http(addr), "moto answers while held");

        drop(server); // closes the watchdog's stdin, as the test process exiting would

        assert!(!answers_http(addr), "moto still answers on {addr}");
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()?
            .success();
        assert!(!alive, "moto (pid {pid}) is still running");
        Ok(())
    }

    #[test]
    fn unique_names_are_valid_bucket_names_and_differ() {
        let (a, b) = (unique_name("Archive_Test"), unique_name("Archive_Test"));
        assert_ne!(a, b);
        assert!(a.len() <= 63 && a.starts_with("archivetest-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{a}"
        );
    }
}
