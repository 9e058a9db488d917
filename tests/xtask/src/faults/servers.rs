//! Servers the fault suite owns and may stop and start at will, so the shared PostgreSQL and
//! Redis are never disturbed: a PostgreSQL 15 cluster (`initdb` into a temporary directory,
//! run as the `postgres` OS user on a port of its own) and a Redis server (append-only file in
//! its directory, so a restart keeps the cache fences, as a failed-over replica would).
//!
//! Each runs on 127.0.0.1 only, in its own process group, with a watchdog process that stops
//! it by PID when the suite's process goes away or its time to live runs out. The suite
//! stops it by PID too; the directory is removed when the server is dropped.

use crate::stack::{database, http};
use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// A watchdog stops a server after this long whatever happens.
const TTL: Duration = Duration::from_secs(1_800);

/// What kind of server, and how to launch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Redis,
}

/// A server of the suite's own.
#[derive(Debug)]
pub struct OwnServer {
    kind: Kind,
    dir: PathBuf,
    pub port: u16,
    /// The `postgres` OS user's (uid, gid), for PostgreSQL (it refuses to run as root).
    owner: Option<(u32, u32)>,
    running: Option<(Child, Child)>,
}

impl OwnServer {
    /// Creates the server's directory (and, for PostgreSQL, the cluster), then starts it.
    pub async fn start(kind: Kind) -> Result<Self> {
        let port = http::free_port()?;
        let name = match kind {
            Kind::Postgres => "pg",
            Kind::Redis => "redis",
        };
        let dir = std::env::temp_dir().join(format!(
            "inventory-faults-{name}-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            kind,
            dir,
            port,
            owner: None,
            running: None,
        };
        if kind == Kind::Postgres {
            // PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user.
            if current_uid()? == 0 {
                server.owner = Some((os_id("-u")?, os_id("-g")?));
            }
            server.initdb()?;
        }
        server.launch().await?;
        Ok(server)
    }

    /// The URL clients use: a PostgreSQL server URL (no database) or a Redis URL.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}", self.port),
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    fn initdb(&self) -> Result<()> {
        let mut cmd = Command::new(format!("{PG_BIN}/initdb"));
        cmd.args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .current_dir(&self.dir);
        if let Some((uid, gid)) = self.owner {
            chown(&self.dir, uid, gid)?;
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn command(&self) -> Result<Command> {
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            Kind::Postgres => {
                let mut c = Command::new(format!("{PG_BIN}/postgres"));
                c.arg("-D")
                    .arg(self.dir.join("data"))
                    .args(["-p", &port, "-k"])
                    .arg(&self.dir)
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                    .args(["-c", "shared_buffers=32MB", "-c", "max_connections=60"]);
                if let Some((uid, gid)) = self.owner {
                    c.uid(uid).gid(gid);
                }
                c
            }
            Kind::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "yes", "--appendfsync", "always"])
                    .args(["--protected-mode", "yes", "--dir"])
                    .arg(&self.dir);
                c
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .process_group(0);
        Ok(cmd)
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub async fn launch(&mut self) -> Result<()> {
        anyhow::ensure!(self.running.is_none(), "already running");
        let child = self.command()?.spawn().context("starting the server")?;
        let watchdog = watchdog(child.id())?;
        self.running = Some((child, watchdog));
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<()> {
        let (port, up) = (self.port, Duration::from_secs(30));
        tokio::task::spawn_blocking(move || {
            crate::shell::wait_for_port(port, "the suite's own server", up)
        })
        .await??;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match self.kind {
                Kind::Postgres => {
                    sea_orm::Database::connect(database::database_url(&self.url(), "postgres"))
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                }
                Kind::Redis => {
                    async {
                        let client = redis::Client::open(self.url())?;
                        let mut con = client.get_multiplexed_async_connection().await?;
                        let _: String = redis::cmd("PING").query_async(&mut con).await?;
                        anyhow::Ok(())
                    }
                    .await
                }
            };
            match ready {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(e).context(format!("{} did not get ready", self.url()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Stops the server by PID: `abrupt` is PostgreSQL's immediate shutdown (SIGQUIT, as a
    /// crash: no checkpoint, clients cut) and Redis's SIGKILL-free SIGTERM otherwise.
    pub async fn halt(&mut self, abrupt: bool) -> Result<()> {
        let Some((mut child, mut watchdog)) = self.running.take() else {
            return Ok(());
        };
        let signal = match (self.kind, abrupt) {
            (Kind::Postgres, true) => "QUIT",
            (Kind::Postgres, false) => "INT",
            (Kind::Redis, _) => "TERM",
        };
        kill(child.id(), signal);
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                kill(child.id(), "KILL");
                child.wait()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        kill(watchdog.id(), "TERM");
        watchdog.wait().ok();
        Ok(())
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some((mut child, mut watchdog)) = self.running.take() {
            kill(child.id(), "INT");
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if matches!(child.try_wait(), Ok(None)) {
                kill(child.id(), "KILL");
            }
            child.wait().ok();
            kill(watchdog.id(), "TERM");
            watchdog.wait().ok();
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// A shell loop that stops `pid` (SIGINT: a fast, clean shutdown for both servers' rules)
/// once this process is gone or the time to live has passed.
fn watchdog(pid: u32) -> Result<Child> {
    let script = r#"owner=$1; pid=$2; end=$(( $(date +%s) + $3 ));
while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do sleep 1; done
kill -INT "$pid" 2>/dev/null; sleep 10; kill -KILL "$pid" 2>/dev/null; exit 0"#;
    Command::new("sh")
        .args(["-c", script, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .arg(TTL.as_secs().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the watchdog")
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn current_uid() -> Result<u32> {
    let out = Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn os_id(flag: &str) -> Result<u32> {
    let out = Command::new("id").args([flag, "postgres"]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "no `postgres` OS user (PostgreSQL must not run as root)"
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    let status = Command::new("chown")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()?;
    anyhow::ensure!(status.success(), "chown {}", path.display());
    Ok(())
}
