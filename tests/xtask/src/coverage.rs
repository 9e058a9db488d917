//! `cargo xtask coverage`: line coverage of `shared` and the functions with cargo llvm-cov.
//!
//! Two figures, because the code has two kinds of tests. The unit tests (every test target of
//! `inventory` and of every function: the modules' own tests, and the in-process suites in
//! `shared/tests/`, the record contract and the parser's property tests) need no service: they
//! cover the domain and the handlers with in-memory ports, and the adapters against in-process
//! doubles of their clients (SeaORM's mock connection, loopback HTTP stubs).
//! What the adapters do with the real services is the integration suite's part: with
//! `--integration` it (real PostgreSQL, Redis and moto; the end-to-end tests excluded, they
//! need a stack) runs instrumented too and the report covers both.
//! Only `shared/` and `functions/` are counted.

use crate::setup;
use crate::shell::{function_binaries, function_package, root, sh, step, tool_path, venv_bin};
use anyhow::Result;
use std::process::Command;

/// Files that are not `shared/` or `functions/` production code: the test crates, the CLI, the
/// xtask and the migrations, and the test files inside `src/` (a module's `tests.rs` or
/// `<module>_tests.rs`, the test doubles of `inventory::testing`, the PostgreSQL mock kit), so
/// that tests do not count as code they cover. (A test module written inline in its file still
/// counts; the lines of those are few.)
const NOT_COUNTED: &str = r"(^|/)(tests|cli|migrations|xtask)/|/\.cargo/|/rustc/|(^|/|_)tests\.rs$|/src/testing/|/postgres/mock\.rs$";

/// The unit tests' floor, the brief's "unit tests for all components with 90%+ coverage":
/// below it, `cargo xtask coverage` fails.
const UNIT_FLOOR: &str = "90";

/// `cargo xtask coverage`'s options; by default, the unit tests of shared/ and functions/
/// (no services needed).
#[derive(Debug, clap::Args)]
pub struct CoverageArgs {
    /// Also the integration suite against the local PostgreSQL, Redis and moto.
    #[arg(long)]
    integration: bool,
    /// Also write an HTML report to target/llvm-cov/html.
    #[arg(long)]
    html: bool,
}

fn llvm_cov() -> Command {
    let mut c = crate::cargo_env::cargo();
    c.arg("llvm-cov")
        .current_dir(root())
        .env("PATH", tool_path())
        .env("MOTO_SERVER", venv_bin("moto_server"));
    c
}

fn ensure_tools() -> Result<()> {
    step("installing coverage tools (llvm-tools-preview, cargo-llvm-cov)");
    sh(Command::new("rustup").args(["component", "add", "llvm-tools-preview"]))?;
    let installed = Command::new("cargo")
        .args(["llvm-cov", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !installed {
        sh(Command::new("cargo").args(["install", "cargo-llvm-cov", "--locked"]))?;
    }
    Ok(())
}

/// The summary, failing below `floor` percent of lines when one is given.
fn report(title: &str, html: bool, floor: Option<&str>) -> Result<()> {
    step(title);
    let mut summary = llvm_cov();
    summary.args([
        "report",
        "--summary-only",
        "--ignore-filename-regex",
        NOT_COUNTED,
    ]);
    if let Some(floor) = floor {
        summary.args(["--fail-under-lines", floor]);
    }
    sh(&mut summary)?;
    if html {
        sh(llvm_cov().args(["report", "--html", "--ignore-filename-regex", NOT_COUNTED]))?;
    }
    Ok(())
}

pub fn run(a: CoverageArgs) -> Result<()> {
    let CoverageArgs { integration, html } = a;
    if integration {
        setup::run()?;
    }
    ensure_tools()?;
    sh(llvm_cov().args(["clean", "--workspace"]))?;

    step("unit tests of shared and the functions, instrumented");
    let mut unit = llvm_cov();
    unit.args(["--no-report", "--all-features", "--package", "inventory"]);
    for f in function_binaries()? {
        unit.args(["--package", &function_package(&f)]);
    }
    sh(unit.args(["--tests"]))?;
    report(
        "line coverage of shared/ and functions/ by their unit tests",
        html && !integration,
        Some(UNIT_FLOOR),
    )?;

    if integration {
        step("integration suite (real PostgreSQL, Redis, moto), instrumented");
        sh(llvm_cov().args([
            "--no-report",
            "--package",
            "integration-tests",
            "--test",
            "integration",
            "--",
            "--skip",
            "e2e::",
        ]))?;
        report(
            "line coverage of shared/ and functions/ by unit and integration tests together",
            html,
            None,
        )?;
    }
    Ok(())
}
