//! `cargo xtask test`: every test, after set-up. This is the README's test command and what
//! CI runs, so what CI proves is what a newcomer runs.

use crate::setup::{self, root, sh, step, tool_path, venv_bin};
use anyhow::Result;
use std::process::Command;

/// A `cargo` child with the project's tools on `PATH` and the emulator's location set.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root())
        .env("PATH", tool_path())
        .env("MOTO_SERVER", venv_bin("moto_server"));
    c
}

/// `cargo xtask test [--faults] [cargo test options]`: with `--faults`, the fault suite
/// (`cargo xtask faults`, every scenario, about five more minutes) runs after everything else.
pub fn run(extra: &[String]) -> Result<()> {
    let faults = extra.iter().any(|a| a == "--faults");
    let extra: Vec<&String> = extra.iter().filter(|a| *a != "--faults").collect();
    setup::run()?;
    lint()?;
    step("cargo test --workspace (all but the end-to-end tests, which need a local stack)");
    sh(cargo()
        .args(["test", "--workspace"])
        .args(extra)
        .args(["--", "--skip", "e2e::"]))?;
    step("end-to-end tests through a local stack of their own");
    let xtask = std::env::current_exe()?;
    sh(Command::new(xtask)
        .current_dir(root())
        .env("PATH", tool_path())
        .args([
            "stack",
            "run",
            "--",
            "cargo",
            "test",
            "--package",
            "integration-tests",
            "--test",
            "integration",
            "e2e::",
        ]))?;
    step(
        "infrastructure checks: sam validate --lint, cfn-lint, asl-validator, checkov, template policy",
    );
    sh(Command::new(root().join("infra/checks/run"))
        .current_dir(root())
        .env("PATH", tool_path()))?;
    if faults {
        step("fault suite: every scenario (docs/reliability.md)");
        crate::faults::run(&["--no-build".to_owned()])?;
    }
    Ok(())
}

/// Formatting and lints, the house rules every change keeps: `cargo fmt --all --check` and
/// `cargo clippy --workspace --all-targets -- -D warnings` (a warning fails the run).
fn lint() -> Result<()> {
    step("cargo fmt --all --check");
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    step("cargo clippy --workspace --all-targets -- -D warnings");
    sh(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// The pipeline benchmark (tests/benches/pipeline.rs), optimised (`bench` profile).
pub fn bench(extra: &[String]) -> Result<()> {
    setup::run()?;
    step("cargo bench --bench pipeline (first run builds optimised binaries: several minutes)");
    let extra: Vec<&String> = extra.iter().filter(|a| a.as_str() != "--").collect();
    sh(cargo()
        .args([
            "bench",
            "--package",
            "integration-tests",
            "--bench",
            "pipeline",
            "--",
        ])
        .args(extra))
}

/// The read benchmark (tests/benches/reads.rs): Zipf-popular reads through the product-api
/// handler on the local PostgreSQL and Redis, then through the cargo-lambda emulator's
/// function URL, so the function binary is built first (dev profile, as the stack runs it).
pub fn bench_reads(extra: &[String]) -> Result<()> {
    setup::ensure_services()?;
    // Only the HTTP part needs a tool from the venv (cargo-lambda); without it, it is skipped.
    if !venv_bin("cargo-lambda").exists()
        && let Err(e) = setup::ensure_venv()
    {
        eprintln!("warning: no cargo-lambda, the benchmark skips its HTTP part: {e:#}");
    }
    step("cargo build --package product-api (the binary behind the local HTTP endpoint)");
    sh(cargo().args(["build", "--package", "product-api"]))?;
    step("cargo bench --bench reads (first run builds optimised binaries: several minutes)");
    let extra: Vec<&String> = extra.iter().filter(|a| a.as_str() != "--").collect();
    sh(cargo()
        .args([
            "bench",
            "--package",
            "integration-tests",
            "--bench",
            "reads",
            "--",
        ])
        .args(extra))
}
