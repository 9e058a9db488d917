//! `inventory redrive-failed`: every failed execution of a time window redriven where it
//! failed (RedriveExecution: same ARN, the states that succeeded are not run again), or, past
//! Step Functions' 14-day redrive window, its input started again as a new execution under a
//! name derived from the failed one's, so a second run starts nothing twice.

use crate::executions::{DEFAULT_ACTIONS_PER_SECOND, Executions, Failure, Listed, Pacer, paced};
use crate::exit::{Outcome, usage};
use crate::send::aws_error_text;
use crate::target::{Outputs, TargetArgs, sdk_config};
use crate::window::TimeArg;
use anyhow::Result;
use aws_sdk_sfn::types::{ExecutionRedriveStatus, ExecutionStatus};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// Step Functions redrives executions that stopped at most this long ago (developer guide,
/// "Step Functions service quotas": execution redrivable period, 14 days).
pub const REDRIVE_WINDOW: TimeDelta = TimeDelta::days(14);

/// Options of `inventory redrive-failed`.
#[derive(Debug, Clone, clap::Args)]
pub struct RedriveFailedArgs {
    /// Executions that stopped at or after this time: RFC 3339, or a duration back from now
    /// (`2h`, `3d`).
    #[arg(long, value_name = "TIME")]
    pub since: TimeArg,
    /// Executions that stopped before this time (RFC 3339 or a duration back). Default: now.
    #[arg(long, value_name = "TIME")]
    pub until: Option<TimeArg>,
    /// Only executions that failed with this error (repeat for several), e.g.
    /// Inventory.DependencyUnavailable or States.Timeout.
    #[arg(long = "error", value_name = "ERROR")]
    pub errors: Vec<String>,
    /// Only executions that failed in this state (repeat for several), e.g. Persist.
    #[arg(long = "state", value_name = "STATE")]
    pub states: Vec<String>,
    /// Which stopped executions to take (repeat or comma-separate): failed, timed-out,
    /// aborted. Default: failed and timed-out. Aborted ones were stopped by someone on purpose,
    /// so they are redriven only when asked for.
    #[arg(long = "status", value_name = "STATUS", value_delimiter = ',', default_values_t = [StatusArg::Failed, StatusArg::TimedOut])]
    pub statuses: Vec<StatusArg>,
    /// Start a new execution with the same input even within the redrive window. A redrive
    /// runs the definition the execution started with; after a fix to the state machine
    /// itself, this runs the fixed one.
    #[arg(long)]
    pub new_execution: bool,
    /// RedriveExecution and StartExecution calls per second at most.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ACTIONS_PER_SECOND)]
    pub rate: f64,
    /// At most this many executions (the newest first).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only list what would be done, with each execution's error and failed state.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON (one object) on stdout.
    #[arg(long)]
    pub json: bool,
    /// The state machine. Default: StateMachineArn from --outputs.
    #[arg(long, value_name = "ARN")]
    pub state_machine_arn: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    Failed,
    TimedOut,
    Aborted,
}

impl std::fmt::Display for StatusArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StatusArg::Failed => "failed",
            StatusArg::TimedOut => "timed-out",
            StatusArg::Aborted => "aborted",
        })
    }
}

impl StatusArg {
    fn status(self) -> ExecutionStatus {
        match self {
            StatusArg::Failed => ExecutionStatus::Failed,
            StatusArg::TimedOut => ExecutionStatus::TimedOut,
            StatusArg::Aborted => ExecutionStatus::Aborted,
        }
    }
}

/// What was (or, in a dry run, would be) done with one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    Redriven,
    WouldRedrive,
    /// A new execution with the same input was started under `name`.
    Started {
        name: String,
    },
    WouldStart {
        name: String,
    },
    /// The new execution exists from an earlier run; nothing started.
    AlreadyStarted {
        name: String,
    },
    /// Nothing was done; `reason` says why.
    NotDone {
        reason: String,
    },
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Handled {
    pub execution_arn: String,
    pub status: String,
    pub stopped_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub failure: Option<Failure>,
    #[serde(flatten)]
    pub action: Action,
}

/// The name of the new execution that re-runs `name`'s input: `{name}-r1` (what docs/runbooks.md has an operator type for one execution), with the name
/// shortened and a hash of all of it when that would pass 80 characters. Deterministic, so a
/// second run finds the execution the first one started.
pub fn rerun_name(name: &str) -> String {
    const SUFFIX: &str = "-r1";
    let base = if name.len() + SUFFIX.len() <= 80 {
        name.to_owned()
    } else {
        let digest = hex::encode(Sha256::digest(name.as_bytes()));
        let head: String = name.chars().take(80 - SUFFIX.len() - 17).collect();
        format!("{head}-{}", &digest[..16])
    };
    format!("{base}{SUFFIX}")
}

/// The ARN of execution `name` of the state machine `machine_arn`.
fn execution_arn(machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// How far this machine's clock may be from Step Functions': AWS refuses a request signed
/// more than five minutes off, so any call that got an answer was within this.
const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// Whether an execution that stopped at `stopped` is past the redrive window at `now`.
fn past_window(stopped: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    stopped.is_some_and(|t| now - t >= REDRIVE_WINDOW)
}

/// Whether Step Functions' refusal at `now` to redrive an execution that stopped at `stopped`
/// (ExecutionNotRedrivable, or redriveStatus NOT_REDRIVABLE) is the redrive window's. Decided
/// by the stop date, not by the refusal's wording: by Step Functions' clock, which may be
/// [`CLOCK_SKEW`] ahead of this one, the execution stopped [`REDRIVE_WINDOW`] or more ago.
fn refused_for_age(stopped: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    past_window(stopped, now + CLOCK_SKEW)
}

/// What DescribeExecution's redriveStatus NOT_REDRIVABLE at `now` means for an execution that
/// stopped at `stopped`: `None` when the window is why (its input is started again), otherwise
/// nothing done, with Step Functions' `reason`.
fn not_redrivable(
    stopped: Option<DateTime<Utc>>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Action> {
    (!refused_for_age(stopped, now)).then(|| {
        not_done(format!(
            "not redrivable: {}",
            reason.unwrap_or("no reason given")
        ))
    })
}

pub async fn run(args: RedriveFailedArgs) -> Result<Outcome> {
    let now = Utc::now();
    let since = args.since.at(now);
    let until = args.until.as_ref().map_or(now, |u| u.at(now));
    if since >= until {
        return Err(usage(format!(
            "--since {since} is not before --until {until}"
        )));
    }
    if args.rate.is_nan() || args.rate <= 0.0 {
        return Err(usage("--rate must be above 0"));
    }
    let outputs = Outputs::read(&args.target)?;
    let machine = outputs.pick(
        &args.state_machine_arn,
        "StateMachineArn",
        "--state-machine-arn",
    )?;
    let conf = sdk_config(&args.target, &outputs).await;
    let sfn = Executions::new(aws_sdk_sfn::Client::new(&conf), machine.clone());
    let actions = Pacer::new(args.rate);

    let mut found: Vec<Listed> = Vec::new();
    for status in &args.statuses {
        found.extend(
            sfn.list(status.status(), None, usize::MAX)
                .await?
                .into_iter()
                .filter(|e| e.stopped.is_some_and(|t| t >= since && t < until)),
        );
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.stopped));
    let filtered = !args.errors.is_empty() || !args.states.is_empty();
    let mut report: Vec<Handled> = Vec::new();
    let mut left_out = 0usize;
    for e in found {
        if args.limit.is_some_and(|n| report.len() >= n) {
            break;
        }
        let failure = if filtered || args.dry_run {
            match sfn.failure(&e.arn).await {
                Ok(f) => Some(f),
                Err(err) => {
                    report.push(handled(&e, None, not_done(format!("{err:#}"))));
                    continue;
                }
            }
        } else {
            None
        };
        if let Some(f) = &failure {
            let error_ok =
                args.errors.is_empty() || f.error.as_ref().is_some_and(|x| args.errors.contains(x));
            let state_ok =
                args.states.is_empty() || f.state.as_ref().is_some_and(|x| args.states.contains(x));
            if !(error_ok && state_ok) {
                left_out += 1;
                continue;
            }
        }
        let action = act(&sfn, &actions, &e, &args, now).await;
        let line = handled(&e, failure, action);
        if !args.json {
            println!("{}", human(&line));
        }
        report.push(line);
    }

    let not_done_n = report
        .iter()
        .filter(|h| matches!(h.action, Action::NotDone { .. }))
        .count();
    let summary_line = summary(&report, since, until, left_out, args.dry_run);
    if args.json {
        let value = serde_json::json!({"since": since, "until": until, "dry_run": args.dry_run,
            "left_out": left_out, "executions": report});
        println!("{value}");
    }
    eprintln!("{summary_line}");
    Ok(if not_done_n > 0 {
        Outcome::NotSent
    } else {
        Outcome::Done
    })
}

fn not_done(reason: String) -> Action {
    Action::NotDone { reason }
}

fn handled(e: &Listed, failure: Option<Failure>, action: Action) -> Handled {
    Handled {
        execution_arn: e.arn.clone(),
        status: e.status.as_str().to_owned(),
        stopped_at: e.stopped,
        failure,
        action,
    }
}

/// The summary line on stderr. A dry run counts what it would do ("to redrive", "new
/// executions to start"), so that its summary never reads as if something had been done.
fn summary(
    report: &[Handled],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    left_out: usize,
    dry_run: bool,
) -> String {
    let count = |f: fn(&Action) -> bool| report.iter().filter(|h| f(&h.action)).count();
    let (redriven, started) = if dry_run {
        ("to redrive", "new executions to start")
    } else {
        ("redriven", "new executions started")
    };
    format!(
        "redrive-failed: {} executions stopped between {} and {}: {} {redriven}, {} {started}, {} already started earlier, {} not done{}{}",
        report.len(),
        since.format("%Y-%m-%dT%H:%M:%SZ"),
        until.format("%Y-%m-%dT%H:%M:%SZ"),
        count(|a| matches!(a, Action::Redriven | Action::WouldRedrive)),
        count(|a| matches!(a, Action::Started { .. } | Action::WouldStart { .. })),
        count(|a| matches!(a, Action::AlreadyStarted { .. })),
        count(|a| matches!(a, Action::NotDone { .. })),
        if left_out > 0 {
            format!(" ({left_out} left out by --error/--state)")
        } else {
            String::new()
        },
        if dry_run {
            "; dry run, nothing redriven or started"
        } else {
            ""
        },
    )
}

/// One execution's report line for people.
fn human(h: &Handled) -> String {
    let what = match &h.action {
        Action::Redriven => "redriven".to_owned(),
        Action::WouldRedrive => "would redrive".to_owned(),
        Action::Started { name } => format!("started new execution {name}"),
        Action::WouldStart { name } => format!("would start new execution {name}"),
        Action::AlreadyStarted { name } => format!("new execution {name} exists already"),
        Action::NotDone { reason } => format!("NOT DONE: {reason}"),
    };
    let why = h.failure.as_ref().map_or(String::new(), |f| {
        format!(
            " [{} in {}]",
            f.error.as_deref().unwrap_or("no error"),
            f.state.as_deref().unwrap_or("no state")
        )
    });
    let at = h.stopped_at.map_or(String::new(), |t| {
        t.format(" %Y-%m-%dT%H:%M:%SZ").to_string()
    });
    format!("{} {}{at}{why}: {what}", h.execution_arn, h.status)
}

/// Redrives `e`, or starts its input again past the window (or with --new-execution).
async fn act(
    sfn: &Executions,
    pace: &Pacer,
    e: &Listed,
    args: &RedriveFailedArgs,
    now: DateTime<Utc>,
) -> Action {
    let mut past = past_window(e.stopped, now);
    if args.dry_run && !past && !args.new_execution {
        // What RedriveExecution would answer: DescribeExecution's redriveStatus and its reason.
        let described = paced(&sfn.describe, || {
            sfn.client.describe_execution().execution_arn(&e.arn).send()
        })
        .await;
        match described {
            Ok(d) if d.redrive_status() == Some(&ExecutionRedriveStatus::NotRedrivable) => {
                if let Some(refused) =
                    not_redrivable(e.stopped, d.redrive_status_reason(), Utc::now())
                {
                    return refused;
                }
                past = true;
            }
            Ok(_) => return Action::WouldRedrive,
            Err(err) => return not_done(format!("DescribeExecution: {}", aws_error_text(&err))),
        }
    }
    if !(past || args.new_execution) {
        let sent = paced(pace, || {
            sfn.client
                .redrive_execution()
                .execution_arn(&e.arn)
                // The same token on a second attempt makes a retried call one redrive.
                .client_token(redrive_token(e))
                .send()
        })
        .await;
        match sent {
            Ok(_) => return Action::Redriven,
            Err(err) => {
                let window_passed = err.as_service_error().is_some_and(|s| {
                    s.is_execution_not_redrivable() && refused_for_age(e.stopped, Utc::now())
                });
                if !window_passed {
                    return not_done(format!("RedriveExecution: {}", aws_error_text(&err)));
                }
            }
        }
    }
    start_again(sfn, pace, e, args.dry_run).await
}

/// A client token for redriving `e` once per failure: the execution and the time it stopped
/// (a redriven execution that fails again stops at a new time, and may be redriven again).
fn redrive_token(e: &Listed) -> String {
    let stopped = e.stopped.map(|t| t.timestamp_millis()).unwrap_or_default();
    let digest = hex::encode(Sha256::digest(format!("{}|{stopped}", e.arn).as_bytes()));
    digest[..64].to_owned()
}

/// Starts `e`'s input as the execution [`rerun_name`] unless that exists already.
async fn start_again(sfn: &Executions, pace: &Pacer, e: &Listed, dry_run: bool) -> Action {
    let name = rerun_name(&e.name);
    let arn = execution_arn(&sfn.state_machine_arn, &name);
    let existing = paced(&sfn.describe, || {
        sfn.client.describe_execution().execution_arn(&arn).send()
    })
    .await;
    match existing {
        Ok(_) => return Action::AlreadyStarted { name },
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|s| s.is_execution_does_not_exist()) => {}
        Err(err) => return not_done(format!("DescribeExecution {arn}: {}", aws_error_text(&err))),
    }
    if dry_run {
        return Action::WouldStart { name };
    }
    let original = paced(&sfn.describe, || {
        sfn.client.describe_execution().execution_arn(&e.arn).send()
    })
    .await;
    let input = match original {
        Ok(d) => d.input().map(str::to_owned),
        Err(err) => return not_done(format!("DescribeExecution: {}", aws_error_text(&err))),
    };
    let Some(input) = input else {
        return not_done(
            "its input is no longer available (past the history retention)".to_owned(),
        );
    };
    let sent = paced(pace, || {
        sfn.client
            .start_execution()
            .state_machine_arn(&sfn.state_machine_arn)
            .name(&name)
            .input(&input)
            .send()
    })
    .await;
    match sent {
        Ok(_) => Action::Started { name },
        // Started by an earlier run between the look-up and now: done already.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|s| s.is_execution_already_exists()) =>
        {
            Action::AlreadyStarted { name }
        }
        Err(err) => not_done(format!("StartExecution: {}", aws_error_text(&err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_name_is_deterministic_valid_and_at_most_80_characters() {
        let short = "s000000000000-c00000-0123456789abcdef0123456789abcdef01234567";
        assert_eq!(rerun_name(short), format!("{short}-r1"));
        assert_eq!(rerun_name(short), rerun_name(short));
        let long = "x".repeat(80);
        let derived = rerun_name(&long);
        assert!(derived.len() <= 80, "{derived}");
        assert_eq!(derived, rerun_name(&long));
        assert_ne!(derived, rerun_name(&"x".repeat(79)));
        let again = rerun_name(&derived);
        assert!(again.len() <= 80 && again != derived, "{again}");
        assert!(
            derived
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn an_execution_arn_is_built_from_the_state_machine_arn() {
        assert_eq!(
            execution_arn(
                "arn:aws:states:us-east-1:123456789012:stateMachine:pipe",
                "n1"
            ),
            "arn:aws:states:us-east-1:123456789012:execution:pipe:n1"
        );
    }

    #[test]
    fn the_redrive_window_is_counted_from_the_stop_date() {
        let now = DateTime::from_timestamp(2_000_000_000, 0).expect("time");
        assert!(past_window(Some(now - REDRIVE_WINDOW), now));
        assert!(!past_window(
            Some(now - REDRIVE_WINDOW + TimeDelta::seconds(1)),
            now
        ));
        assert!(!past_window(None, now), "still running: not past");
    }

    /// Whatever the refusal says, its cause is read from the stop date: a refusal of a recent
    /// execution is not the window's, and one of an execution stopped the window ago (or
    /// within the clocks' possible difference of it) is.
    #[test]
    fn a_refusal_is_the_windows_by_the_stop_date_whatever_its_wording() {
        let now = DateTime::from_timestamp(2_000_000_000, 0).expect("time");
        let day_old = Some(now - TimeDelta::days(1));
        assert!(!refused_for_age(day_old, now));
        let at_the_edge = Some(now - REDRIVE_WINDOW + TimeDelta::minutes(4));
        assert!(
            refused_for_age(at_the_edge, now),
            "Step Functions' clock ahead"
        );
        let well_within = Some(now - REDRIVE_WINDOW + TimeDelta::minutes(6));
        assert!(!refused_for_age(well_within, now));
        assert!(refused_for_age(Some(now - TimeDelta::days(20)), now));
        assert!(!refused_for_age(None, now));
    }

    #[test]
    fn a_dry_run_reports_a_refusal_by_the_stop_date_and_gives_step_functions_reason() {
        let now = DateTime::from_timestamp(2_000_000_000, 0).expect("time");
        let old = Some(now - TimeDelta::days(15));
        assert_eq!(
            not_redrivable(old, Some("Execution can no longer be redriven."), now),
            None,
            "past the window: its input is started again"
        );
        assert_eq!(
            not_redrivable(
                Some(now - TimeDelta::days(1)),
                Some("Execution redrivable period exceeded."),
                now
            ),
            Some(Action::NotDone {
                reason: "not redrivable: Execution redrivable period exceeded.".into()
            })
        );
        assert_eq!(
            not_redrivable(Some(now - TimeDelta::days(1)), None, now),
            Some(Action::NotDone {
                reason: "not redrivable: no reason given".into()
            })
        );
    }

    #[test]
    fn a_dry_run_summary_counts_what_it_would_do_and_a_run_what_it_did() {
        let line = |action| Handled {
            execution_arn: "arn".into(),
            status: "FAILED".into(),
            stopped_at: None,
            failure: None,
            action,
        };
        let at = |s| DateTime::from_timestamp(s, 0).expect("time");
        let dry = [
            line(Action::WouldRedrive),
            line(Action::WouldStart {
                name: "n-r1".into(),
            }),
            line(Action::AlreadyStarted {
                name: "m-r1".into(),
            }),
        ];
        assert_eq!(
            summary(&dry, at(0), at(3_600), 2, true),
            "redrive-failed: 3 executions stopped between 1970-01-01T00:00:00Z and \
             1970-01-01T01:00:00Z: 1 to redrive, 1 new executions to start, 1 already started \
             earlier, 0 not done (2 left out by --error/--state); dry run, nothing redriven or started"
        );
        let done = [
            line(Action::Redriven),
            line(Action::NotDone {
                reason: "why".into(),
            }),
        ];
        assert_eq!(
            summary(&done, at(0), at(3_600), 0, false),
            "redrive-failed: 2 executions stopped between 1970-01-01T00:00:00Z and \
             1970-01-01T01:00:00Z: 1 redriven, 0 new executions started, 0 already started \
             earlier, 1 not done"
        );
    }
}
