//! `cargo xtask test`: every test, after set-up. This is the README's test command and what
//! CI runs, so what CI proves is what a newcomer runs.

use crate::setup;
use crate::shell::{cargo, root, sh, step, tool_path};
use anyhow::Result;
use std::process::Command;

/// `cargo xtask test`'s options.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Then run the fault suite too (`cargo xtask faults`, every scenario, about five more
    /// minutes).
    #[arg(long)]
    faults: bool,
    /// Passed on to `cargo test --workspace`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CARGO TEST OPTIONS"
    )]
    cargo_test: Vec<String>,
}

/// Every test; with `--faults`, the fault suite after everything else.
pub fn run(a: TestArgs) -> Result<()> {
    setup::run()?;
    lint()?;
    step("cargo test --workspace (all but the end-to-end tests, which need a local stack)");
    sh(cargo()
        .args(["test", "--workspace"])
        .args(&a.cargo_test)
        .args(["--", "--skip", "e2e::"]))?;
    step("end-to-end tests through a local stack of their own");
    let xtask = std::env::current_exe()?;
    sh(Command::new(&xtask)
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
        "a projection rebuild under a flowing feed: cargo xtask demo --rebuild-during, on a smaller feed",
    );
    sh(Command::new(&xtask)
        .current_dir(root())
        .env("PATH", tool_path())
        .args(["demo", "--no-build", "--rebuild-during"])
        .args(["--updates", "5000", "--products", "500"]))?;
    step(
        "infrastructure checks: sam validate --lint, cfn-lint, asl-validator, checkov, template policy",
    );
    sh(Command::new(root().join("infra/checks/run"))
        .current_dir(root())
        .env("PATH", tool_path()))?;
    if a.faults {
        step("fault suite: every scenario (docs/reliability.md)");
        crate::faults::run(crate::faults::FaultsArgs {
            no_build: true,
            ..Default::default()
        })?;
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
