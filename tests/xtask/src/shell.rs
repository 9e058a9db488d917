//! Where things are and how commands run: the workspace root and the project venv, the
//! `PATH` child processes get, progress steps, running a command, and waiting for a port.

use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The workspace root (this crate lives in `tests/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// The Lambda functions: each directory of `functions/` is one package, `inventory-<name>`, with
/// one binary, `<name>` (the template's `BuildProperties.Binary`).
pub fn function_binaries() -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("functions"))? {
        let dir = entry?.path();
        if dir.join("Cargo.toml").is_file()
            && let Some(name) = dir.file_name().and_then(|n| n.to_str())
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    if names.is_empty() {
        bail!("no function crates found in functions/");
    }
    Ok(names)
}

/// The package of the function whose binary is `binary`.
pub fn function_package(binary: &str) -> String {
    format!("inventory-{binary}")
}

pub fn venv() -> PathBuf {
    root().join(".venv")
}

pub fn venv_bin(tool: &str) -> PathBuf {
    venv().join("bin").join(tool)
}

/// `PATH` with the venv and npm tools first, for child processes.
pub fn tool_path() -> String {
    let mut parts = vec![
        venv().join("bin").display().to_string(),
        root()
            .join(".local/node/node_modules/.bin")
            .display()
            .to_string(),
    ];
    if let Ok(p) = std::env::var("PATH") {
        parts.push(p);
    }
    parts.join(":")
}

/// A `cargo` child with the project's tools on `PATH` and the emulator's location set.
pub fn cargo() -> Command {
    let mut c = crate::cargo_env::cargo();
    c.current_dir(root())
        .env("PATH", tool_path())
        .env("MOTO_SERVER", venv_bin("moto_server"));
    c
}

/// Prints a step, the way every command reports progress.
pub fn step(what: &str) {
    eprintln!("==> {what}");
}

/// Runs a command to completion, failing with its name if it fails.
pub fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Waits until something accepts connections on 127.0.0.1:`port`. It blocks: async code
/// calls it through `tokio::task::spawn_blocking`.
pub fn wait_for_port(port: u16, what: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while !port_open(port) {
        if start.elapsed() > timeout {
            bail!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[cfg(test)]
mod function_tests {
    use super::*;

    /// `coverage` and `lambda-build` name each function's package from its directory, and the
    /// template names its binary: both must hold for every function crate.
    #[test]
    fn every_function_directory_is_package_inventory_name_with_binary_name() {
        let functions = function_binaries().expect("functions/");
        assert!(functions.len() >= 8, "{functions:?}");
        for f in functions {
            let manifest =
                std::fs::read_to_string(root().join("functions").join(&f).join("Cargo.toml"))
                    .expect("Cargo.toml");
            assert!(
                manifest.contains(&format!("name = \"{}\"", function_package(&f))),
                "functions/{f}/Cargo.toml: the package must be {}",
                function_package(&f)
            );
            assert!(
                manifest.contains(&format!("[[bin]]\nname = \"{f}\"")),
                "functions/{f}/Cargo.toml: the binary must be {f}"
            );
        }
    }
}
