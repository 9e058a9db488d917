//! `inventory push`: a supplier's feed onto the stream, validated first.

use super::sending::{SendArgs, send_and_report};
use crate::batch::Outgoing;
use crate::exit::{Outcome, WithOutcome as _};
use crate::input::{self, Format};
use crate::target::{Outputs, TargetArgs, sdk_config};
use crate::validate::{self, Invalid};
use anyhow::Result;
use std::collections::BTreeMap;

/// Options of `inventory push`.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// Feed files (JSON lines, or CSV with a header row of the contract's field names).
    /// `-` or none reads stdin.
    #[arg(value_name = "FILE")]
    pub files: Vec<String>,
    /// How the lines are written; `auto` takes `.csv` files as CSV and everything else as
    /// JSON lines.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// The Kinesis stream. Default: StreamName from --outputs.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Only validate: report invalid lines and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Send the valid lines even when some are invalid (the invalid ones are listed and not
    /// sent; exit code 5). Default: strict, nothing is sent if any line is invalid (exit code 2).
    #[arg(long, conflicts_with = "send_invalid")]
    pub skip_invalid: bool,
    /// Send invalid lines too, so the pipeline quarantines them (for testing the pipeline).
    #[arg(long)]
    pub send_invalid: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub send: SendArgs,
}

/// Invalid lines listed one by one before only their counts are shown.
const INVALID_SHOWN: usize = 100;

pub async fn run(args: PushArgs) -> Result<Outcome> {
    let (lines, unreadable) = input::read_all(&args.files, args.format).or_exit(Outcome::Usage)?;
    let read = lines.len() + unreadable.len();
    let checked = validate::check(lines, chrono::Utc::now());
    let mut invalid: Vec<Invalid> = unreadable
        .into_iter()
        .map(|u| Invalid {
            location: format!("{}:{}", u.source, u.number),
            code: "csv_malformed".into(),
            message: u.message,
        })
        .collect();
    invalid.extend(checked.invalid.iter().cloned());
    report_invalid(&invalid, !args.send_invalid);
    let records: Vec<Outgoing> = checked.into_records(args.send_invalid);
    eprintln!(
        "push: {read} lines read, {} valid, {} invalid",
        read - invalid.len(),
        invalid.len()
    );
    let strict_failure = !invalid.is_empty() && !args.skip_invalid && !args.send_invalid;
    if strict_failure {
        eprintln!(
            "push: nothing sent: fix the invalid lines, or pass --skip-invalid to send the valid ones"
        );
        return Ok(Outcome::InvalidLines);
    }
    let skipped = if args.send_invalid { 0 } else { invalid.len() };
    if args.dry_run {
        eprintln!(
            "push: dry run, nothing sent ({} records would be)",
            records.len()
        );
        return Ok(if skipped > 0 {
            Outcome::SkippedInvalid
        } else {
            Outcome::Done
        });
    }
    let outputs = Outputs::read(&args.target)?;
    let stream = outputs.pick(&args.stream, "StreamName", "--stream")?;
    let conf = sdk_config(&args.target, &outputs).await;
    let client = aws_sdk_kinesis::Client::new(&conf);
    let (_, outcome) = send_and_report("push", &client, &stream, &records, &args.send).await?;
    if outcome == Outcome::Done && skipped > 0 {
        eprintln!("push: {skipped} invalid lines were not sent (listed above)");
        return Ok(Outcome::SkippedInvalid);
    }
    Ok(outcome)
}

fn report_invalid(invalid: &[Invalid], list: bool) {
    if invalid.is_empty() {
        return;
    }
    let shown = if list { INVALID_SHOWN } else { 0 };
    for i in invalid.iter().take(shown) {
        eprintln!("{i}");
    }
    if invalid.len() > shown {
        let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
        for i in invalid {
            *by_code.entry(i.code.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
        eprintln!(
            "{} invalid lines{}: {}",
            invalid.len(),
            if shown > 0 {
                format!(" ({} more not listed)", invalid.len() - shown)
            } else {
                String::new()
            },
            counts.join(", ")
        );
    }
}
