//! What every command that puts records back on the stream shares: the send options, the
//! progress display, the summary and the exit code.

use crate::batch::Outgoing;
use crate::exit::Outcome;
use crate::progress::{Progress, ProgressMode};
use crate::send::{Counters, SendOptions, SendReport, send_all};
use anyhow::{Context as _, Result};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options for sending, shared by `push` and the replays.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// PutRecords requests in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Attempts per record, the first included, before it is reported as not sent.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_attempts: u32,
    /// First backoff cap in milliseconds; it doubles per attempt (x4 after throttling errors),
    /// and each wait is random between half the cap and the cap.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub base_delay_ms: u64,
    /// Largest backoff in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub max_delay_ms: u64,
    /// Consecutive records of one product a request may carry. 1 (the default) keeps each
    /// product's updates in strict feed order on the stream. Higher is much faster for feeds
    /// dominated by a few products; if Kinesis then fails one record and accepts a later one
    /// of the same product in the same request, the later one is sent again behind it (so the
    /// product's last records are in feed order, and the extra copy is absorbed by the
    /// pipeline's idempotency for records with update_id or occurred_at).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub per_product: usize,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Write the records that could not be sent to this file (as JSON lines), to push
    /// again later with `inventory push`.
    #[arg(long, value_name = "FILE")]
    pub unsent_out: Option<PathBuf>,
}

impl SendArgs {
    pub fn options(&self) -> SendOptions {
        SendOptions {
            concurrency: self.concurrency.max(1),
            max_attempts: self.max_attempts.max(1),
            base_delay: Duration::from_millis(self.base_delay_ms),
            max_delay: Duration::from_millis(self.max_delay_ms.max(self.base_delay_ms)),
            per_product: self.per_product.max(1),
        }
    }
}

/// Sends `records` with a progress display, prints what happened, and says how it ended.
pub async fn send_and_report(
    command: &str,
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[Outgoing],
    args: &SendArgs,
) -> Result<(SendReport, Outcome)> {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(args.progress, records.len() as u64, counters.clone());
    let report = send_all(client, stream, records, &args.options(), &counters).await;
    progress.finish();
    let mut err = std::io::stderr().lock();
    const SHOWN: usize = 50;
    for u in report.unsent.iter().take(SHOWN) {
        writeln!(err, "{}: not sent: {}", records[u.index].origin, u.reason)?;
    }
    if report.unsent.len() > SHOWN {
        writeln!(err, "... and {} more not sent", report.unsent.len() - SHOWN)?;
    }
    let secs = report.elapsed.as_secs_f64();
    writeln!(
        err,
        "{command}: {} sent to {stream}, {} not sent; {} entries retried ({} throttled); {} PutRecords calls in {secs:.1} s ({:.0} records/s)",
        report.sent,
        report.unsent.len(),
        report.retried,
        report.throttled,
        report.calls,
        report.sent as f64 / secs.max(0.001),
    )?;
    if report.resent > 0 {
        writeln!(
            err,
            "{command}: {} accepted records were sent again behind a failed earlier record of their product",
            report.resent
        )?;
    }
    if let Some(f) = &report.fatal {
        writeln!(err, "{command}: stopped: {f}")?;
    }
    drop(err);
    if let Some(path) = &args.unsent_out {
        let mut text = Vec::new();
        for u in &report.unsent {
            text.extend_from_slice(&records[u.index].data);
            text.push(b'\n');
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        if !report.unsent.is_empty() {
            eprintln!(
                "{command}: the {} records not sent are in {}",
                report.unsent.len(),
                path.display()
            );
        }
    }
    let outcome = if report.fatal.is_some() {
        Outcome::ServiceFailed
    } else if !report.unsent.is_empty() {
        Outcome::NotSent
    } else {
        Outcome::Done
    };
    Ok((report, outcome))
}
