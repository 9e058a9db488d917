//! `cargo xtask faults`: the fault suite. Each scenario gets a local stack of its own, pushes a
//! feed, breaks something mid-stream (a PostgreSQL crash, a Redis outage, S3 errors, crashing
//! or timing-out functions, poison records, duplicate and out-of-order storms), repairs it,
//! drains, recovers as ops would (redriving failed executions with `RedriveExecution`, which
//! resumes each at its failed state on the same ARN, and replaying the fan-out's on-failure
//! queue), and then checks the seven SPEC invariants against PostgreSQL, Redis and
//! the S3 emulator. It prints, per scenario: updates sent, applied, quarantined, lost and
//! double-applied (both must be 0), and fails if any invariant does not hold.

mod account;
mod drive;
mod scenarios;
mod servers;

use crate::stack::{self, LocalStack, StackOptions};
use anyhow::{Result, bail};
use scenarios::{Fault, Scenario};
use servers::{Kind, OwnServer};
use std::time::Instant;

/// Records in each scenario's feed unless `--updates` says otherwise.
const DEFAULT_UPDATES: usize = 1_500;

/// `cargo xtask faults`'s options.
#[derive(Debug, clap::Args)]
pub struct FaultsArgs {
    /// Only these scenarios (default: all): poison, duplicate-storm, out-of-order-storm,
    /// s3-errors, function-crash, redrive-after-partial, redis-outage, postgres-restart.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub scenarios: Vec<String>,
    /// Records in each scenario's feed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_UPDATES)]
    pub updates: usize,
    /// Use the function binaries as they are in target/debug.
    #[arg(long)]
    pub no_build: bool,
}

impl Default for FaultsArgs {
    fn default() -> Self {
        Self {
            scenarios: Vec::new(),
            updates: DEFAULT_UPDATES,
            no_build: false,
        }
    }
}

/// One scenario's outcome, as the summary prints it.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub tally: account::Tally,
    pub failed_before_recovery: usize,
    pub redrives: u64,
    pub reruns: u64,
    pub replayed: usize,
    pub secs: f64,
    pub error: Option<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.tally.problems.is_empty()
    }
}

pub fn run(a: FaultsArgs) -> Result<()> {
    let names: Vec<String> = a.scenarios.iter().map(|n| n.trim().to_owned()).collect();
    let selected = scenarios::select(&names, a.updates)?;
    crate::setup::ensure_services()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcomes = rt.block_on(run_all(selected, !a.no_build))?;
    print_table(&outcomes);
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| o.name)
        .collect();
    if failed.is_empty() {
        println!("\nFAULT SUITE PASSED: every invariant held in every scenario");
        Ok(())
    } else {
        bail!("fault scenarios failed: {}", failed.join(", "))
    }
}

async fn run_all(selected: Vec<Scenario>, mut build: bool) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for (i, sc) in selected.iter().enumerate() {
        crate::shell::step(&format!("fault scenario {}: {}", sc.name, sc.what));
        let started = Instant::now();
        let result = one(sc, i, build).await;
        build = false;
        let secs = started.elapsed().as_secs_f64();
        let outcome = match result {
            Ok((tally, run)) => Outcome {
                name: sc.name,
                tally,
                failed_before_recovery: run.failed_before_recovery,
                redrives: run.redrives,
                reruns: run.reruns,
                replayed: run.replayed.len(),
                secs,
                error: recovery_error(sc, &run),
            },
            Err(e) => Outcome {
                name: sc.name,
                tally: account::Tally::default(),
                failed_before_recovery: 0,
                redrives: 0,
                reruns: 0,
                replayed: 0,
                secs,
                error: Some(format!("{e:#}")),
            },
        };
        for (n, p) in &outcome.tally.problems {
            eprintln!("  {}: invariant {n}: {p}", sc.name);
        }
        if let Some(e) = &outcome.error {
            eprintln!("  {}: {e}", sc.name);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// What the recovery did wrong, if anything: executions failed with no infrastructure fault;
/// a redrive that ran a state before the failed one again; a second redrive of a redriven
/// execution that SUCCEEDED that was not refused.
fn recovery_error(sc: &Scenario, run: &drive::Run) -> Option<String> {
    if !sc.failures_allowed && run.failed_before_recovery > 0 {
        return Some(format!(
            "{} executions failed, with no infrastructure fault",
            run.failed_before_recovery
        ));
    }
    if let Some(allowed) = sc.redrive_invokes_only {
        if run.failed_before_recovery > 0 && run.redrives == 0 {
            return Some("executions failed, and none was redriven".into());
        }
        let others: Vec<String> = run
            .redrive_invokes_only_outside(allowed)
            .map(|(f, n)| format!("{f} ({n} invocations)"))
            .collect();
        if !others.is_empty() {
            return Some(format!(
                "the redrives ran {} again: a redrive resumes at the failed state",
                others.join(", ")
            ));
        }
    }
    let (second, refused) = run.second_redrives;
    (second != refused).then(|| {
        format!(
            "{} of {second} second redrives of a SUCCEEDED execution were accepted",
            second - refused
        )
    })
}

/// Runs one scenario on a stack of its own (and servers of its own, if it breaks one).
async fn one(sc: &Scenario, index: usize, build: bool) -> Result<(account::Tally, drive::Run)> {
    let mut servers = drive::Servers::default();
    let mut opts = StackOptions {
        id: format!("faults{}x{index}", std::process::id()),
        build,
        ..StackOptions::default()
    };
    opts.outputs = stack::start::stacks_dir()
        .join(&opts.id)
        .join("flat-outputs.json");
    match sc.fault {
        Fault::PostgresDown { .. } => {
            let pg = OwnServer::start(Kind::Postgres).await?;
            opts.postgres_server = pg.url();
            // The cluster and its databases go with its directory.
            opts.keep_data = true;
            servers.postgres = Some(pg);
        }
        Fault::RedisDown { .. } => {
            let r = OwnServer::start(Kind::Redis).await?;
            opts.redis_url = r.url();
            opts.keep_data = true;
            servers.redis = Some(r);
        }
        _ => {}
    }
    let stack = LocalStack::start(opts).await?;
    let result = drive_and_count(&stack, sc, &mut servers).await;
    let stopped = stack.stop().await;
    let value = result?;
    stopped?;
    Ok(value)
}

async fn drive_and_count(
    stack: &LocalStack,
    sc: &Scenario,
    servers: &mut drive::Servers,
) -> Result<(account::Tally, drive::Run)> {
    let conf = stack::moto::sdk_config(&stack.outputs.local_endpoint_url).await;
    let clients = drive::Clients {
        kinesis: aws_sdk_kinesis::Client::new(&conf),
        sfn: aws_sdk_sfn::Client::new(&conf),
        sqs: aws_sdk_sqs::Client::new(&conf),
        s3: stack::moto::s3_client(&conf),
    };
    let run = drive::run(stack, &clients, sc, servers).await?;
    let tally = account::tally(&stack.outputs, &clients, &run).await?;
    Ok((tally, run))
}

fn print_table(outcomes: &[Outcome]) {
    println!("\n== Fault suite");
    println!(
        "| scenario | sent | applied | quarantined | lost | double-applied | failed executions | redrives | re-runs | replayed from DLQ | seconds | result |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for o in outcomes {
        let t = &o.tally;
        let result = if o.passed() {
            "PASS".to_owned()
        } else {
            let mut why: Vec<String> = t
                .problems
                .iter()
                .map(|(n, _)| format!("invariant {n}"))
                .collect();
            why.dedup();
            if o.error.is_some() {
                why.push("error".into());
            }
            format!("FAIL ({})", why.join(", "))
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {result} |",
            o.name,
            t.sent,
            t.applied,
            t.quarantined,
            t.lost,
            t.double_applied,
            o.failed_before_recovery,
            o.redrives,
            o.reruns,
            o.replayed,
            o.secs
        );
    }
}
