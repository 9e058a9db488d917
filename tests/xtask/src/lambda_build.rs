//! `cargo xtask lambda-build`: the function binaries as AWS runs them, built with
//! `cargo lambda build --release --arm64` (Graviton, `provided.al2023`), the same build
//! `sam build` runs per function. It adds the arm64 Rust target and the project venv
//! (cargo-lambda and its zig) first, so it works on a fresh machine.

use crate::setup;
use crate::shell::{function_binaries, function_package, root, sh, step, tool_path, venv_bin};
use anyhow::{Result, bail};
use std::process::Command;

const TARGET: &str = "aarch64-unknown-linux-gnu";

pub fn run() -> Result<()> {
    let functions = function_binaries()?;
    setup::ensure_venv(setup::Tools::All)?;
    step("rustup target add aarch64-unknown-linux-gnu");
    sh(Command::new("rustup").args(["target", "add", TARGET]))?;
    step("cargo lambda build --release --arm64 (cold: about 10 minutes on 2 cores)");
    let mut build = Command::new(venv_bin("cargo-lambda"));
    crate::cargo_env::as_started_by_a_developer(&mut build);
    build.current_dir(root()).env("PATH", tool_path()).args([
        "lambda",
        "build",
        "--release",
        "--arm64",
    ]);
    for f in &functions {
        build.args(["--package", &function_package(f)]);
    }
    sh(&mut build)?;
    let dir = root().join("target/lambda");
    for f in &functions {
        let bootstrap = dir.join(f).join("bootstrap");
        if !bootstrap.is_file() {
            bail!("{} was not built", bootstrap.display());
        }
        println!("{}", bootstrap.display());
    }
    Ok(())
}
