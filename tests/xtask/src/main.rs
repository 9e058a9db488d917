//! `cargo xtask`: the project's developer commands. Each one does its own set-up on a fresh
//! machine (project venv, npm tools, local services), so a newcomer needs nothing else.
//!
//! ```text
//! cargo xtask setup      install the project's tools and start PostgreSQL/Redis if down
//! cargo xtask test       set up, fmt and clippy, then every test (the README's test command)
//! cargo xtask coverage   line coverage of `shared` and the functions (cargo llvm-cov)
//! cargo xtask demo       the pipeline end to end on this machine, checked
//! cargo xtask faults     the fault suite: every SPEC invariant under failure, scenario by scenario
//! cargo xtask stack up   the local stack (`stack down` stops it)
//! cargo xtask bench-reads  the read benchmark (product-api handler and local HTTP endpoint)
//! cargo xtask bench      the pipeline benchmark (validate -> archive ∥ persist -> cache)
//! cargo xtask lambda-build  the functions for AWS: cargo lambda build --release --arm64
//! ```

mod bench;
mod cargo_env;
mod coverage;
mod demo;
mod faults;
mod lambda_build;
mod setup;
mod shell;
mod stack;
mod test;
#[cfg(test)]
mod unify;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The project's developer commands. Each does its own set-up on a fresh machine.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the project's tools (.venv, npm tools) and start PostgreSQL and Redis if down.
    Setup,
    /// Set up, check formatting and clippy (-D warnings), then run every test: unit,
    /// integration, end to end and infrastructure checks.
    Test(test::TestArgs),
    /// Line coverage of `shared` and the functions, with cargo llvm-cov: unit tests, and with
    /// --integration the integration suite too.
    Coverage(coverage::CoverageArgs),
    /// The pipeline end to end: a supplier feed through the local stack, checked.
    Demo(demo::DemoArgs),
    /// The fault suite: crashes, outages, poison and storms mid-stream, then the seven
    /// invariants checked per scenario (docs/reliability.md).
    Faults(faults::FaultsArgs),
    /// The whole pipeline on 127.0.0.1 (moto, the functions, Postgres, Redis).
    Stack(stack::cli::StackCommand),
    /// The read benchmark: Zipf reads through product-api (handler and local HTTP); arguments
    /// go to it (--reads N --products N --update-rate N --http-reads N).
    BenchReads(bench::BenchArgs),
    /// The pipeline benchmark on the local services; arguments go to it (--updates N
    /// --products N --batches 100,1000 --lanes 1,2).
    Bench(bench::BenchArgs),
    /// The functions as AWS runs them: cargo lambda build --release --arm64 (adds the arm64
    /// Rust target and cargo-lambda first).
    LambdaBuild,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test(a) => test::run(a),
        Command::Coverage(a) => coverage::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Faults(a) => faults::run(a),
        Command::Stack(a) => stack::cli::run(a),
        Command::BenchReads(a) => bench::bench_reads(a),
        Command::Bench(a) => bench::bench(a),
        Command::LambdaBuild => lambda_build::run(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn parse(line: &str) -> Result<Command, clap::Error> {
        Cli::try_parse_from(line.split_whitespace()).map(|c| c.command)
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_the_commands_pass_on_reach_them_unchanged() {
        let Ok(Command::Test(t)) = parse("xtask test --faults --release -p inventory") else {
            panic!("test parses")
        };
        assert_eq!(
            format!("{t:?}"),
            r#"TestArgs { faults: true, cargo_test: ["--release", "-p", "inventory"] }"#
        );
        let Ok(Command::Bench(b)) = parse("xtask bench -- --updates 500 --lanes 1,2") else {
            panic!("bench parses")
        };
        assert_eq!(
            format!("{b:?}"),
            r#"BenchArgs { args: ["--updates", "500", "--lanes", "1,2"] }"#
        );
        let Ok(Command::Stack(s)) = parse("xtask stack run --shards 2 -- cargo test e2e::") else {
            panic!("stack run parses")
        };
        let s = format!("{s:?}");
        assert!(
            s.contains("shards: 2") && s.contains(r#"command: ["cargo", "test", "e2e::"]"#),
            "{s}"
        );
    }

    #[test]
    fn values_are_typed_and_unknown_options_are_refused() {
        let Ok(Command::Faults(f)) = parse("xtask faults --scenarios poison,s3-errors --no-build")
        else {
            panic!("faults parses")
        };
        assert_eq!(f.scenarios, ["poison", "s3-errors"]);
        assert_eq!(f.updates, 1_500);
        assert!(f.no_build);
        for bad in [
            "xtask demo --updates many",
            "xtask demo --colour red",
            "xtask stack run --shards 2",
            "xtask stack up --ttl",
            "xtask lambda-build --arm64",
            "xtask frobnicate",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
