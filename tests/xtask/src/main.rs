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

mod args;
mod coverage;
mod demo;
mod faults;
mod lambda_build;
mod setup;
mod stack;
mod test;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  setup       install the project's tools (.venv, npm tools) and start PostgreSQL and Redis if down
  test        set up, check formatting and clippy (-D warnings), then run every test: unit,
              integration, end to end and infrastructure checks
  coverage    line coverage of `shared` and the functions, with cargo llvm-cov: unit tests,
              and with --integration the integration suite too
  demo        the pipeline end to end: a supplier feed through the local stack, checked (--help)
  faults      the fault suite: crashes, outages, poison and storms mid-stream, then the seven
              invariants checked per scenario (--help; docs/reliability.md)
  stack       up|down: the whole pipeline on 127.0.0.1 (moto, the functions, Postgres, Redis)
  bench-reads the read benchmark: Zipf reads through product-api (handler and local HTTP);
              arguments after -- go to it (--reads N --products N --update-rate N --http-reads N)
  bench       the pipeline benchmark on the local services; arguments after -- go to it
              (--updates N --products N --batches 100,1000 --lanes 1,2)
  lambda-build
              the functions as AWS runs them: cargo lambda build --release --arm64
              (adds the arm64 Rust target and cargo-lambda first)
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => {
            eprint!("{USAGE}");
            bail!("no command given");
        }
    };
    match command {
        "setup" => setup::run(),
        "test" => test::run(rest),
        "coverage" => coverage::run(rest),
        "bench" => test::bench(rest),
        "demo" => demo::run(rest),
        "faults" => faults::run(rest),
        "stack" => stack::cli::run(rest),
        "bench-reads" => test::bench_reads(rest),
        "lambda-build" => lambda_build::run(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command {other:?}")
        }
    }
}
