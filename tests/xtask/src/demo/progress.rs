//! Waiting for the pipeline to drain, with a live progress line on stderr.

use crate::stack::stats::Stats;
use anyhow::{Result, bail};
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Executions of the state machine, by status.
#[derive(Debug, Clone, Default)]
pub struct Executions {
    pub by_status: BTreeMap<String, u64>,
    pub first_start: Option<DateTime<Utc>>,
    pub last_stop: Option<DateTime<Utc>>,
    /// Sum of (stop - start) over finished executions, in seconds.
    pub total_secs: f64,
    pub finished: u64,
    pub failed_arns: Vec<String>,
}

impl Executions {
    pub fn count(&self, status: &str) -> u64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.by_status.values().sum()
    }
}

fn to_chrono(t: &aws_sdk_sfn::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.to_millis().ok()?)
}

/// Lists every execution of the state machine.
pub async fn executions(sfn: &aws_sdk_sfn::Client, state_machine: &str) -> Result<Executions> {
    let mut e = Executions::default();
    let mut token = None;
    loop {
        let page = sfn
            .list_executions()
            .state_machine_arn(state_machine)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await?;
        for x in page.executions() {
            *e.by_status
                .entry(x.status().as_str().to_owned())
                .or_default() += 1;
            let start = to_chrono(x.start_date());
            if let Some(s) = start {
                e.first_start = Some(e.first_start.map_or(s, |f| f.min(s)));
            }
            if let (Some(start), Some(stop)) = (start, x.stop_date().and_then(to_chrono)) {
                e.last_stop = e.last_stop.max(Some(stop));
                e.total_secs += (stop - start).num_milliseconds() as f64 / 1000.0;
                e.finished += 1;
            }
            if matches!(
                x.status(),
                ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted
            ) {
                e.failed_arns.push(x.execution_arn().to_owned());
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(e);
        }
    }
}

/// How far the push has got.
#[derive(Debug)]
pub struct Push {
    /// Records in the feed.
    pub total: u64,
    /// Records the CLI has put on the stream so far.
    pub sent: Arc<AtomicU64>,
    /// Whether the CLI has finished.
    pub done: Arc<AtomicBool>,
}

/// Waits until every pushed record went through the fan-out and no execution is running.
pub async fn wait_until_drained(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    stats: &Arc<Stats>,
    push: &Push,
    started: Instant,
    timeout: Duration,
) -> Result<Executions> {
    let Push {
        total,
        sent,
        done: push_done,
    } = push;
    let total = *total;
    // indicatif redraws the line on a terminal; in a log (CI), a plain line every 10 s instead.
    let live = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    live.set_style(
        ProgressStyle::with_template("  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let plain = live.is_hidden();
    let mut stable = 0;
    let mut ex = Executions::default();
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        tick += 1;
        let snap = stats.snapshot();
        let poller = &snap.poller;
        // Listing every execution costs moto time the pipeline needs: do it only every 10 s
        // and once the stream is drained; in between, count finished executions by their
        // last task's calls on the router.
        let fed = push_done.load(Ordering::Relaxed)
            && poller.records_done >= total
            && poller.in_flight == 0;
        if fed || tick.is_multiple_of(10) {
            ex = executions(sfn, state_machine).await?;
        }
        let finished = snap
            .functions
            .get("cache-invalidate")
            .map_or(0, |t| t.calls - t.errors);
        let line = format!(
            "{:>6.1}s | pushed {}/{total} | through fan-out {}/{total} | executions finished {finished} ({} failed at the last listing) | {:.0} updates/s  ",
            started.elapsed().as_secs_f64(),
            sent.load(Ordering::Relaxed),
            poller.records_done,
            ex.count("FAILED") + ex.count("TIMED_OUT") + ex.count("ABORTED"),
            poller.records_done as f64 / started.elapsed().as_secs_f64().max(0.001),
        );
        let drained = fed && ex.count("RUNNING") == 0;
        stable = if drained { stable + 1 } else { 0 };
        let last = stable >= 2 || started.elapsed() > timeout;
        if !plain {
            live.set_message(line);
        } else if last || tick.is_multiple_of(10) {
            eprintln!("  {line}");
        }
        if last {
            live.finish();
        }
        if stable >= 2 {
            return Ok(ex);
        }
        if started.elapsed() > timeout {
            bail!("the pipeline did not drain within {timeout:?}");
        }
    }
}
