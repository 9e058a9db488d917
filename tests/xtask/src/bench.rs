//! `cargo xtask bench` and `cargo xtask bench-reads`: the pipeline and read benchmarks
//! (`tests/benches`), after the set-up each needs.

use crate::setup;
use crate::shell::{cargo, sh, step, venv_bin};
use anyhow::Result;

/// A benchmark's own arguments, passed on to it.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// The pipeline benchmark (tests/benches/pipeline.rs), optimised (`bench` profile).
pub fn bench(a: BenchArgs) -> Result<()> {
    setup::run()?;
    run_bench("pipeline", &a)
}

/// `cargo bench --bench <name>` of the integration tests, with the benchmark's own arguments.
fn run_bench(name: &str, a: &BenchArgs) -> Result<()> {
    step(&format!(
        "cargo bench --bench {name} (first run builds optimised binaries: several minutes)"
    ));
    sh(cargo()
        .args([
            "bench",
            "--package",
            "integration-tests",
            "--bench",
            name,
            "--",
        ])
        .args(&a.args))
}

/// The read benchmark (tests/benches/reads.rs): Zipf-popular reads through the product-api
/// handler on the local PostgreSQL and Redis, then through the cargo-lambda emulator's
/// function URL, so the function binary is built first (dev profile, as the stack runs it).
pub fn bench_reads(a: BenchArgs) -> Result<()> {
    setup::ensure_services()?;
    // Only the HTTP part needs a tool from the venv (cargo-lambda); without it, it is skipped.
    if !venv_bin("cargo-lambda").exists()
        && let Err(e) = setup::ensure_venv(setup::Tools::Stack)
    {
        eprintln!("warning: no cargo-lambda, the benchmark skips its HTTP part: {e:#}");
    }
    // The whole workspace rather than `--package inventory-product-api`, whose dependencies would get
    // other features and compile again (see `unify`).
    step(
        "cargo build --workspace --bins (product-api is the binary behind the local HTTP endpoint)",
    );
    sh(cargo().args(["build", "--workspace", "--bins"]))?;
    run_bench("reads", &a)
}
