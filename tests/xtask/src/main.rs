//! `cargo xtask`: the project's developer commands. Each one does its own set-up on a fresh
//! machine (project venv, npm tools, local services), so a newcomer needs nothing else.
//!
//! ```text
//! cargo xtask setup      install the project's tools and start PostgreSQL/Redis if down
//! cargo xtask test       set up, then run every test (the README's test command)
//! cargo xtask coverage   line coverage of `shared` and the functions (cargo llvm-cov)
//! ```

mod setup;
mod test;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  setup       install the project's tools (.venv, npm tools) and start PostgreSQL and Redis if down
  test        set up, then run every test: unit, integration, end to end and infrastructure checks
  coverage    unit-test line coverage of `shared` and the functions, with cargo llvm-cov
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
        "coverage" => test::coverage(rest),
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
