//! The state machine's executions as the operator commands read them: listed by status, and
//! each failure's error, cause and the state that failed. Every Step Functions call is paced
//! below the account's API quota and retried with backoff when it is throttled anyway.
//!
//! Step Functions throttles its API per account and region with token buckets (developer guide,
//! "Step Functions service quotas", "Quotas related to API action throttling", Standard
//! workflows; bucket size / refill per second in us-east-1, us-west-2 and eu-west-1, then in
//! the other regions): ListExecutions 200/5, 100/2; DescribeExecution 300/15, 250/10;
//! GetExecutionHistory 400/20, 400/20; StartExecution and RedriveExecution 1,300/300, 800/150.
//! The buckets are shared with everything else in the account (the fan-out's StartExecution),
//! so the paces below stay under the smaller refill rates, and a throttled call waits and tries
//! again (the shared AWS error classifier decides what is worth another try).

use crate::send::aws_error_text;
use anyhow::{Context as _, Result};
use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::types::ExecutionStatus;
use backon::{ExponentialBuilder, Retryable as _};
use chrono::{DateTime, Utc};
use inventory::adapters::aws::{OperationError, classify};
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::{Interval, MissedTickBehavior};

/// Calls per second of the read APIs, under the smaller refill rates above.
pub const LIST_PER_SECOND: f64 = 2.0;
pub const DESCRIBE_PER_SECOND: f64 = 8.0;
pub const HISTORY_PER_SECOND: f64 = 16.0;
/// Default RedriveExecution + StartExecution calls per second: a third of the smaller refill
/// rate (150), leaving the rest to the fan-out, which starts executions meanwhile.
pub const DEFAULT_ACTIONS_PER_SECOND: f64 = 50.0;

/// Lets one call through at a time, at most `per_second` of them.
#[derive(Debug)]
pub struct Pacer(Mutex<Interval>);

impl Pacer {
    pub fn new(per_second: f64) -> Self {
        let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second.max(0.01)));
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self(Mutex::new(every))
    }

    pub async fn wait(&self) {
        self.0.lock().await.tick().await;
    }
}

/// `call`, each attempt after a tick of `pacer`, tried again while the error is transient:
/// waits from 0.5 s doubling to 20 s with jitter, 8 more attempts (a few minutes in all).
pub async fn paced<T, E, F, Fut>(pacer: &Pacer, mut call: F) -> Result<T, SdkError<E, HttpResponse>>
where
    E: OperationError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let backoff = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(20))
        .with_max_times(8);
    (|| {
        let attempt = call();
        async move {
            pacer.wait().await;
            attempt.await
        }
    })
    .retry(backoff)
    .when(|e| classify(e).is_transient())
    .await
}

/// One execution as ListExecutions gives it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub started: DateTime<Utc>,
    pub stopped: Option<DateTime<Utc>>,
}

/// Why an execution stopped, from its history.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// The state that was running when it failed (inside a Parallel branch, the branch's
    /// state), if the history names one.
    pub state: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

pub fn to_chrono(t: &aws_sdk_sfn::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}

/// The Step Functions calls of one state machine, each API at its own pace.
#[derive(Debug)]
pub struct Executions {
    pub client: Client,
    pub state_machine_arn: String,
    list: Pacer,
    pub describe: Pacer,
    history: Pacer,
}

impl Executions {
    pub fn new(client: Client, state_machine_arn: String) -> Self {
        Self {
            client,
            state_machine_arn,
            list: Pacer::new(LIST_PER_SECOND),
            describe: Pacer::new(DESCRIBE_PER_SECOND),
            history: Pacer::new(HISTORY_PER_SECOND),
        }
    }

    /// The executions with `status`, newest start first, up to the first that started before
    /// `started_since` (all of them when `None`), at most `limit`.
    pub async fn list(
        &self,
        status: ExecutionStatus,
        started_since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = paced(&self.list, || {
                self.client
                    .list_executions()
                    .state_machine_arn(&self.state_machine_arn)
                    .status_filter(status.clone())
                    .max_results(1000)
                    .set_next_token(token.clone())
                    .send()
            })
            .await
            .map_err(|e| anyhow::anyhow!(aws_error_text(&e)))
            .with_context(|| format!("listing the {status} executions"))?;
            for e in page.executions() {
                let started = to_chrono(e.start_date());
                if started_since.is_some_and(|since| started < since) || out.len() >= limit {
                    return Ok(out);
                }
                out.push(Listed {
                    arn: e.execution_arn().to_owned(),
                    name: e.name().to_owned(),
                    status: e.status().clone(),
                    started,
                    stopped: e.stop_date().map(to_chrono),
                });
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The error, cause and failed state of a stopped execution, from the newest end of its
    /// history (without the execution's data, so no input or output is decrypted).
    pub async fn failure(&self, arn: &str) -> Result<Failure> {
        let mut failure = Failure::default();
        let mut exited: HashSet<String> = HashSet::new();
        let mut token: Option<String> = None;
        for _ in 0..5 {
            let page = paced(&self.history, || {
                self.client
                    .get_execution_history()
                    .execution_arn(arn)
                    .reverse_order(true)
                    .include_execution_data(false)
                    .max_results(500)
                    .set_next_token(token.clone())
                    .send()
            })
            .await
            .map_err(|e| anyhow::anyhow!(aws_error_text(&e)))
            .with_context(|| format!("reading the history of {arn}"))?;
            // Newest first, as reverse_order asks; sorted by event id so that an endpoint that
            // ignores the flag (the local emulator does) gives the same answer.
            let mut events: Vec<_> = page.events().iter().collect();
            events.sort_by_key(|e| std::cmp::Reverse(e.id()));
            for event in events {
                if failure.error.is_none() && failure.cause.is_none() {
                    let (error, cause) = if let Some(d) = event.execution_failed_event_details() {
                        (d.error(), d.cause())
                    } else if let Some(d) = event.execution_timed_out_event_details() {
                        (d.error(), d.cause())
                    } else if let Some(d) = event.execution_aborted_event_details() {
                        (d.error(), d.cause())
                    } else {
                        (None, None)
                    };
                    failure.error = error.map(str::to_owned);
                    failure.cause = cause.map(str::to_owned);
                }
                if let Some(d) = event.state_exited_event_details() {
                    exited.insert(d.name().to_owned());
                }
                if failure.state.is_none()
                    && let Some(d) = event.state_entered_event_details()
                    && !exited.contains(d.name())
                {
                    failure.state = Some(d.name().to_owned());
                }
                if failure.state.is_some() && failure.error.is_some() {
                    return Ok(failure);
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pacer_spaces_calls_by_its_rate() {
        let pacer = Pacer::new(20.0);
        let began = std::time::Instant::now();
        for _ in 0..5 {
            pacer.wait().await;
        }
        // The first tick is immediate; four more at 50 ms each.
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(195), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
    }
}
