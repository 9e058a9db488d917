//! `cargo xtask lambda-build`: the function binaries as AWS runs them, built with
//! `cargo lambda build --release --arm64` (Graviton, `provided.al2023`), the same build
//! `sam build` runs per function. It adds the arm64 Rust target and the project venv
//! (cargo-lambda and its zig) first, so it works on a fresh machine.

use crate::setup::{self, root, sh, step, tool_path, venv_bin};
use anyhow::{Result, bail};
use std::process::Command;

/// Every Lambda in `functions/`: one package and one binary each.
const FUNCTIONS: [&str; 8] = [
    "fanout",
    "validate",
    "archive",
    "persist",
    "cache-invalidate",
    "schema-migrate",
    "bucket-emptier",
    "product-api",
];

const TARGET: &str = "aarch64-unknown-linux-gnu";

pub fn run(extra: &[String]) -> Result<()> {
    if let Some(unknown) = extra.first() {
        bail!("cargo xtask lambda-build takes no arguments, got {unknown:?}");
    }
    setup::ensure_venv()?;
    step("rustup target add aarch64-unknown-linux-gnu");
    sh(Command::new("rustup").args(["target", "add", TARGET]))?;
    step("cargo lambda build --release --arm64 (cold: about 10 minutes on 2 cores)");
    let mut build = Command::new(venv_bin("cargo-lambda"));
    build.current_dir(root()).env("PATH", tool_path()).args([
        "lambda",
        "build",
        "--release",
        "--arm64",
    ]);
    for f in FUNCTIONS {
        build.args(["--package", f]);
    }
    sh(&mut build)?;
    let dir = root().join("target/lambda");
    for f in FUNCTIONS {
        let bootstrap = dir.join(f).join("bootstrap");
        if !bootstrap.is_file() {
            bail!("{} was not built", bootstrap.display());
        }
        println!("{}", bootstrap.display());
    }
    Ok(())
}
