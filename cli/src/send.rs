//! Putting records on the stream: `PutRecords` requests from the [`Scheduler`], several in
//! flight, partition key = product id. Only the entries that failed are retried, with
//! exponential backoff and jitter from `backon` (longer after throttling such as
//! `ProvisionedThroughputExceededException`); whether a failed call or entry is worth
//! repeating is decided by the pipeline's one AWS error classifier ([`aws::classify`],
//! [`aws::classify_code`] for an entry's error code). A record refused in a way retrying does
//! not fix (a KMS key or a permission, say) is reported at once; one that still fails after
//! the last attempt is reported too, never dropped silently, and either way its product's
//! later records are held back with it.
//!
//! With `per_product` above 1 a request may carry several consecutive records of one product.
//! That is much faster for feeds dominated by a few products, but Kinesis may then fail an
//! entry and accept a later one of the same product in the same request. The later ones are
//! then sent again after the failed one (counted as `resent`), so the product's last records
//! on the stream are in feed order; the pipeline's idempotency keys absorb the extra copies of
//! records that carry an `update_id` or `occurred_at`.

use crate::batch::{MAX_ENTRY_BYTES, Outgoing, Scheduler};
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use inventory::ErrorKind;
use inventory::adapters::aws;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How hard to try.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Attempts per record, the first included.
    pub max_attempts: u32,
    /// Backoff cap before the second attempt (it doubles from here, up to `max_delay`); each
    /// wait is between half the cap and the cap.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive records of one product a request may carry (1: strict feed order).
    pub per_product: usize,
}

impl SendOptions {
    /// The waits between attempts, `max_attempts - 1` of them: a cap that doubles from
    /// `base_delay` (four times that after throttling) up to `max_delay`, each wait between
    /// half the cap and the cap (backon's jitter adds up to the delay again).
    pub fn backoff(&self, throttled: bool) -> ExponentialBackoff {
        let base = if throttled {
            self.base_delay.saturating_mul(4)
        } else {
            self.base_delay
        };
        ExponentialBuilder::default()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(base.min(self.max_delay) / 2)
            .with_max_delay(self.max_delay / 2)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
    }
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            per_product: 1,
            concurrency: 4,
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Live counts, for the progress display.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records accepted by the stream.
    pub sent: AtomicU64,
    /// Failed entries sent again.
    pub retried: AtomicU64,
    /// Entries the stream turned away with throttling (`ProvisionedThroughputExceededException`
    /// and the other codes [`aws::classify_code`] calls throttling).
    pub throttled: AtomicU64,
    /// `PutRecords` calls made.
    pub calls: AtomicU64,
    /// Accepted entries sent again behind a failed earlier record of their product.
    pub resent: AtomicU64,
}

/// A record that did not reach the stream, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent {
    pub index: usize,
    pub reason: String,
}

/// What sending did.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    pub sent: u64,
    pub retried: u64,
    pub throttled: u64,
    pub calls: u64,
    pub resent: u64,
    /// Records not on the stream, in feed order.
    pub unsent: Vec<Unsent>,
    /// Why the run stopped early (an error retrying cannot fix), if it did.
    pub fatal: Option<String>,
    pub elapsed: Duration,
}

/// Sends every record; returns when each is accepted or known not to be.
pub async fn send_all(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[Outgoing],
    opts: &SendOptions,
    counters: &Arc<Counters>,
) -> SendReport {
    let started = Instant::now();
    let mut report = SendReport::default();
    let mut scheduler = Scheduler::with_per_product(records, opts.per_product);
    let mut in_flight = tokio::task::JoinSet::new();
    let stream: Arc<str> = Arc::from(stream);
    loop {
        while report.fatal.is_none() && in_flight.len() < opts.concurrency.max(1) {
            let batch = scheduler.next_batch();
            if batch.is_empty() {
                break;
            }
            let (too_big, entries): (Vec<usize>, Vec<usize>) = batch
                .into_iter()
                .partition(|&i| records[i].size() > MAX_ENTRY_BYTES);
            for i in too_big {
                let reason = format!(
                    "record is {} bytes with its partition key; Kinesis takes at most {MAX_ENTRY_BYTES}",
                    records[i].size()
                );
                report.unsent.push(Unsent { index: i, reason });
                for held in scheduler.complete(&[], &[i]) {
                    report.unsent.push(held_back(held));
                }
            }
            if entries.is_empty() {
                continue;
            }
            let batch: Vec<Entry> = entries
                .into_iter()
                .map(|i| (i, records[i].partition_key.clone(), records[i].data.clone()))
                .collect();
            in_flight.spawn(send_batch(
                client.clone(),
                stream.clone(),
                batch,
                opts.clone(),
                counters.clone(),
            ));
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        let outcome = match joined {
            Ok(o) => o,
            Err(e) => {
                report.fatal = Some(format!("a send task failed: {e}"));
                continue;
            }
        };
        let failed: Vec<usize> = outcome.failed.iter().map(|u| u.index).collect();
        for held in scheduler.complete(&outcome.accepted, &failed) {
            report.unsent.push(held_back(held));
        }
        report.unsent.extend(outcome.failed);
        if report.fatal.is_none() {
            report.fatal = outcome.fatal;
        }
    }
    if report.fatal.is_some() {
        for i in scheduler.remaining() {
            report.unsent.push(Unsent {
                index: i,
                reason: "not attempted: the run stopped".into(),
            });
        }
    }
    report.unsent.sort_by_key(|u| u.index);
    report.unsent.dedup_by_key(|u| u.index);
    report.sent = counters.sent.load(Ordering::Relaxed);
    report.retried = counters.retried.load(Ordering::Relaxed);
    report.throttled = counters.throttled.load(Ordering::Relaxed);
    report.calls = counters.calls.load(Ordering::Relaxed);
    report.resent = counters.resent.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    report
}

fn held_back(index: usize) -> Unsent {
    Unsent {
        index,
        reason: "held back: an earlier update of the same product was not sent".into(),
    }
}

/// A record in flight: its index in the feed, its partition key and its data.
type Entry = (usize, String, Vec<u8>);

#[derive(Debug, Default)]
struct BatchOutcome {
    accepted: Vec<usize>,
    failed: Vec<Unsent>,
    fatal: Option<String>,
}

/// One request and its retries of the failed entries only.
async fn send_batch(
    client: aws_sdk_kinesis::Client,
    stream: Arc<str>,
    mut pending: Vec<Entry>,
    opts: SendOptions,
    counters: Arc<Counters>,
) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    // Both schedules advance with every attempt; throttling picks the higher one.
    let (mut plain, mut slower) = (opts.backoff(false), opts.backoff(true));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let entries: Result<Vec<PutRecordsRequestEntry>, _> = pending
            .iter()
            .map(|(_, key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
            })
            .collect();
        let entries = match entries {
            Ok(e) => e,
            Err(e) => return give_up(out, pending, format!("bad request entry: {e}"), true),
        };
        counters.calls.fetch_add(1, Ordering::Relaxed);
        let response = client
            .put_records()
            .stream_name(stream.as_ref())
            .set_records(Some(entries))
            .send()
            .await;
        let (retry, throttled, last_error) = match response {
            Err(e) => {
                let (retryable, throttled, message) = classify(&e);
                if !retryable {
                    return give_up(out, pending, message, true);
                }
                (std::mem::take(&mut pending), throttled, message)
            }
            Ok(resp) if resp.records().len() != pending.len() => (
                std::mem::take(&mut pending),
                false,
                format!(
                    "PutRecords answered {} results for {} records",
                    resp.records().len(),
                    pending.len()
                ),
            ),
            Ok(resp) => sort_results(
                std::mem::take(&mut pending),
                resp.records(),
                &counters,
                &mut out,
            ),
        };
        if retry.is_empty() {
            return out;
        }
        let (plain_wait, slower_wait) = (plain.next(), slower.next());
        let Some(wait) = (if throttled { slower_wait } else { plain_wait }) else {
            let reason = format!("still failing after {attempt} attempts ({last_error})");
            return give_up(out, retry, reason, false);
        };
        counters
            .retried
            .fetch_add(retry.len() as u64, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
        pending = retry;
    }
}

/// One request's entries, from what `PutRecords` answered for each: accepted ones are
/// counted; an entry refused with an error retrying may fix (throttling, a failure on the
/// stream's side) is returned to be sent again, and so are the accepted entries behind it of
/// the same product; an entry refused with an error retrying does not fix (the KMS key or a
/// permission, say, as the shared classifier sorts codes) is reported as not sent at once,
/// and its product's later entries in the request are held back (those already accepted stay
/// accepted). Returns the entries to retry, whether any was throttled, and the last error
/// worth retrying.
fn sort_results(
    pending: Vec<Entry>,
    results: &[PutRecordsResultEntry],
    counters: &Counters,
    out: &mut BatchOutcome,
) -> (Vec<Entry>, bool, String) {
    let mut retry = Vec::new();
    let (mut throttled, mut last_error) = (false, String::new());
    // Products with an entry to retry, and products with an entry that will not be sent.
    let mut retried_keys = HashSet::new();
    let mut dropped_keys = HashSet::new();
    for (entry, result) in pending.into_iter().zip(results) {
        let kind = result
            .error_code()
            .map(|code| aws::classify_code(Some(code), 200));
        if kind == Some(ErrorKind::Throttled) {
            throttled = true;
            counters.throttled.fetch_add(1, Ordering::Relaxed);
        }
        match kind {
            None if dropped_keys.contains(&entry.1) || !retried_keys.contains(&entry.1) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                out.accepted.push(entry.0);
            }
            None => {
                // Accepted, but after an earlier record of its product failed: send it again
                // behind that one.
                counters.resent.fetch_add(1, Ordering::Relaxed);
                retry.push(entry);
            }
            Some(_) if dropped_keys.contains(&entry.1) => out.failed.push(held_back(entry.0)),
            Some(kind) => {
                let reason = format!(
                    "{}: {}",
                    result.error_code().unwrap_or_default(),
                    result.error_message().unwrap_or_default()
                );
                if kind.is_transient() {
                    last_error = reason;
                    retried_keys.insert(entry.1.clone());
                    retry.push(entry);
                } else {
                    dropped_keys.insert(entry.1);
                    out.failed.push(Unsent {
                        index: entry.0,
                        reason,
                    });
                }
            }
        }
    }
    (retry, throttled, last_error)
}

fn give_up(
    mut out: BatchOutcome,
    pending: Vec<Entry>,
    reason: String,
    fatal: bool,
) -> BatchOutcome {
    out.failed
        .extend(pending.into_iter().map(|(index, _, _)| Unsent {
            index,
            reason: reason.clone(),
        }));
    if fatal {
        out.fatal = Some(reason);
    }
    out
}

/// Whether a failed call is worth repeating, whether it was throttling, and what to report.
fn classify<E: aws::OperationError>(e: &SdkError<E, HttpResponse>) -> (bool, bool, String) {
    let kind = aws::classify(e);
    let message = match e {
        SdkError::ServiceError(se) => format!(
            "{}: {}",
            ProvideErrorMetadata::code(se.err()).unwrap_or("unknown"),
            se.err().message().unwrap_or("")
        ),
        _ => aws_error_text(e),
    };
    (kind.is_transient(), kind == ErrorKind::Throttled, message)
}

/// An SDK error with its sources, on one line.
pub fn aws_error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_between_half_a_doubling_cap_and_the_cap_and_are_higher_when_throttled() {
        let opts = SendOptions {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_attempts: 12,
            ..SendOptions::default()
        };
        for _ in 0..50 {
            let waits: Vec<Duration> = opts.backoff(false).collect();
            assert_eq!(waits.len(), 11, "one wait between each two attempts");
            for (i, wait) in waits.iter().enumerate() {
                let cap = (Duration::from_millis(100) * 2u32.pow(i as u32)).min(opts.max_delay);
                assert!(
                    *wait >= cap / 2 && *wait <= cap,
                    "wait {i}: {wait:?} not in [{:?}, {cap:?}]",
                    cap / 2
                );
            }
        }
        let first: Vec<Duration> = (0..200)
            .map(|_| opts.backoff(true).next().expect("a wait"))
            .collect();
        assert!(
            first
                .iter()
                .all(|w| *w >= Duration::from_millis(200) && *w <= Duration::from_millis(400)),
            "{first:?}"
        );
        assert!(
            first.iter().any(|w| *w > Duration::from_millis(300)),
            "jittered, not a constant"
        );
        let huge = SendOptions {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(2),
            ..SendOptions::default()
        };
        assert!(
            huge.backoff(true)
                .all(|w| w <= Duration::from_secs(2) && w >= Duration::from_secs(1))
        );
    }

    fn entries(keys: &[&str]) -> Vec<Entry> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| (i, (*k).to_owned(), vec![b'x']))
            .collect()
    }

    fn result(code: Option<&str>) -> PutRecordsResultEntry {
        let r = PutRecordsResultEntry::builder();
        match code {
            Some(c) => r.error_code(c).error_message("refused by the test"),
            None => r.sequence_number("1").shard_id("shardId-000000000000"),
        }
        .build()
    }

    fn indices(entries: &[Entry]) -> Vec<usize> {
        entries.iter().map(|e| e.0).collect()
    }

    #[test]
    fn entries_refused_for_a_transient_reason_are_retried_with_their_products_later_ones() {
        let counters = Counters::default();
        let mut out = BatchOutcome::default();
        let (retry, throttled, last_error) = sort_results(
            entries(&["a", "b", "a", "c"]),
            &[
                result(Some("ProvisionedThroughputExceededException")),
                result(Some("InternalFailure")),
                result(None),
                result(None),
            ],
            &counters,
            &mut out,
        );
        assert_eq!(indices(&retry), vec![0, 1, 2]);
        assert!(throttled);
        assert!(last_error.starts_with("InternalFailure: "), "{last_error}");
        assert_eq!(out.accepted, vec![3]);
        assert!(out.failed.is_empty());
        assert_eq!(counters.throttled.load(Ordering::Relaxed), 1);
        assert_eq!(counters.resent.load(Ordering::Relaxed), 1);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn entries_refused_for_a_permanent_reason_are_reported_at_once_not_retried() {
        for code in [
            "KMSAccessDeniedException",
            "AccessDeniedException",
            "KMSDisabledException",
        ] {
            let counters = Counters::default();
            let mut out = BatchOutcome::default();
            let (retry, throttled, _) = sort_results(
                entries(&["a", "b", "a", "a", "c"]),
                &[
                    result(Some(code)),
                    result(Some("ProvisionedThroughputExceededException")),
                    result(Some("ProvisionedThroughputExceededException")),
                    result(None),
                    result(None),
                ],
                &counters,
                &mut out,
            );
            assert_eq!(indices(&retry), vec![1], "{code}: only the throttled one");
            assert!(throttled);
            let failed: Vec<(usize, &str)> = out
                .failed
                .iter()
                .map(|u| (u.index, u.reason.as_str()))
                .collect();
            assert_eq!(failed.len(), 2, "{code}: {failed:?}");
            assert_eq!(failed[0].0, 0);
            assert!(failed[0].1.starts_with(code), "{failed:?}");
            assert_eq!(failed[1], (2, held_back(2).reason.as_str()), "{code}");
            // Already on the stream: nothing to send it again behind.
            assert_eq!(out.accepted, vec![3, 4], "{code}");
            assert_eq!(counters.resent.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn one_attempt_means_no_wait() {
        let opts = SendOptions {
            max_attempts: 1,
            ..SendOptions::default()
        };
        assert_eq!(opts.backoff(false).count(), 0);
    }
}
