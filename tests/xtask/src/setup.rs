//! Set-up on a fresh machine: the project venv with the Python tools, the npm tools, and the
//! local PostgreSQL and Redis services. Every step is skipped when already done.

use crate::shell::{port_open, root, sh, step, venv, venv_bin, wait_for_port};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// npm tools, installed without a lockfile into `.local/node`.
const NPM_TOOLS: &[&str] = &["asl-validator@4.0.0"];

pub fn run() -> Result<()> {
    ensure_services()?;
    ensure_venv(Tools::All)?;
    ensure_npm_tools()?;
    Ok(())
}

/// PostgreSQL on 5432 with the pg_partman extension, and Redis on 6379, started with the
/// machine's own service commands when they are down (LOCAL.md).
pub fn ensure_services() -> Result<()> {
    let version = postgres_version()?;
    ensure_partman(&version)?;
    if !port_open(5432) {
        step("starting PostgreSQL");
        sh(Command::new("pg_ctlcluster").args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "start",
        ]))?;
        wait_for_port(5432, "PostgreSQL", Duration::from_secs(30))?;
    }
    if !port_open(6379) {
        step("starting Redis");
        sh(Command::new("redis-server").args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ]))?;
        wait_for_port(6379, "Redis", Duration::from_secs(30))?;
    }
    Ok(())
}

/// The local PostgreSQL's major version, from its cluster directory (LOCAL.md).
fn postgres_version() -> Result<String> {
    let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .context("PostgreSQL is not installed (/etc/postgresql is missing)")?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    versions
        .into_iter()
        .next()
        .context("no PostgreSQL cluster under /etc/postgresql")
}

/// pg_partman, which the event store's migration creates (RDS for PostgreSQL ships it; Debian
/// packages it per major version). Installed with apt when its control file is missing; the
/// package lists are refreshed only if the first try fails.
fn ensure_partman(version: &str) -> Result<()> {
    let control = format!("/usr/share/postgresql/{version}/extension/pg_partman.control");
    if Path::new(&control).exists() {
        return Ok(());
    }
    let package = format!("postgresql-{version}-partman");
    step(&format!("installing {package} (the pg_partman extension)"));
    let install = || {
        sh(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", &package])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        sh(Command::new("apt-get").args(["update"]))?;
        install().with_context(|| {
            format!("could not install {package}; install it as root, then run this again")
        })?;
    }
    if !Path::new(&control).exists() {
        bail!("{package} is installed but {control} is missing");
    }
    Ok(())
}

/// Hash of the files an install depends on, so a changed pin reinstalls.
fn fingerprint(files: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(std::fs::read(f).unwrap_or_default());
    }
    hex::encode(h.finalize())
}

fn up_to_date(stamp: &Path, print: &str) -> bool {
    std::fs::read_to_string(stamp).is_ok_and(|s| s == print)
}

/// Which Python tools a command needs: the local stack's, or every tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tools {
    /// The emulator and the Lambda runner (`tests/requirements.txt`): the demo, the stack and
    /// the fault suite. Seconds to install, where SAM and the linters take minutes.
    Stack,
    /// Also the infrastructure tools (`infra/requirements.txt`: SAM CLI, cfn-lint, checkov):
    /// the test command and `lambda-build`.
    All,
}

impl Tools {
    fn requirements(self) -> &'static [&'static str] {
        match self {
            Tools::Stack => &["tests/requirements.txt"],
            // One pip run over both files, so pip resolves them together.
            Tools::All => &["tests/requirements.txt", "infra/requirements.txt"],
        }
    }

    fn stamp(self) -> PathBuf {
        venv().join(match self {
            Tools::Stack => ".installed-stack",
            Tools::All => ".installed-all",
        })
    }

    fn fingerprint(self) -> String {
        let files: Vec<PathBuf> = self.requirements().iter().map(|p| root().join(p)).collect();
        fingerprint(&files)
    }

    fn installed(self) -> bool {
        up_to_date(&self.stamp(), &self.fingerprint())
    }
}

/// The project venv with the pinned Python tools `tools` names (pinned so every machine gets
/// the same emulator). Installed once; a changed pin installs again.
pub fn ensure_venv(tools: Tools) -> Result<()> {
    // Every tool includes the stack's.
    if tools.installed() || Tools::All.installed() {
        return Ok(());
    }
    if !venv_bin("python").exists() {
        step("creating the project venv (.venv)");
        sh(Command::new("python3").args(["-m", "venv"]).arg(venv()))?;
    }
    step(match tools {
        Tools::Stack => "installing the local stack's Python tools into .venv (moto, cargo-lambda)",
        Tools::All => {
            "installing the Python tools into .venv (moto, cargo-lambda, SAM CLI, cfn-lint, checkov; first time: a few minutes)"
        }
    });
    let mut pip = Command::new(venv_bin("pip"));
    pip.args(["install", "--quiet", "--disable-pip-version-check"]);
    for r in tools.requirements() {
        pip.arg("-r").arg(root().join(r));
    }
    sh(&mut pip)?;
    std::fs::write(tools.stamp(), tools.fingerprint())?;
    if tools == Tools::All {
        std::fs::write(Tools::Stack.stamp(), Tools::Stack.fingerprint())?;
    }
    Ok(())
}

/// npm tools (asl-validator) in `.local/node`, with no lockfile, so nothing records where
/// packages were downloaded from.
pub fn ensure_npm_tools() -> Result<()> {
    let dir = root().join(".local/node");
    let stamp = dir.join(".installed");
    let print = NPM_TOOLS.join(" ");
    if up_to_date(&stamp, &print) {
        return Ok(());
    }
    step("installing npm tools into .local/node");
    std::fs::create_dir_all(&dir)?;
    sh(Command::new("npm")
        .args([
            "install",
            "--silent",
            "--no-save",
            "--no-package-lock",
            "--no-audit",
            "--no-fund",
            "--prefix",
        ])
        .arg(&dir)
        .args(NPM_TOOLS))?;
    std::fs::write(&stamp, print)?;
    Ok(())
}
