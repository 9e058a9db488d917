//! The Kinesis poller: what the event source mapping (ESM) does in AWS, done locally.
//!
//! Per shard, one batch in flight at a time (per-shard order), and:
//! - a batch closes at `batch_size` records, at the 6 MB invoke payload limit, or when the
//!   batching window has passed since its first record;
//! - the fan-out gets a `KinesisEvent` built as AWS builds it (base64 data, `eventID`,
//!   `eventSourceARN`, `approximateArrivalTimestamp` in epoch seconds, ...), through the router;
//! - `ReportBatchItemFailures`: the batch is retried from the lowest failed sequence number;
//! - a function error bisects the batch (which spends no retry) down to single records;
//! - after `max_retries` retries the records go to the on-failure destination, an SQS message
//!   in the shape AWS writes for Kinesis (`requestContext`, `responseContext`,
//!   `KinesisBatchInfo`), and the shard moves on;
//! - an invoke that never reached the function (the router or emulator down) is retried
//!   until it does, as AWS does before records expire.

use super::http::{self, HttpClient};
use super::stats::Stats;
use anyhow::{Context, Result};
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord, KinesisRecord};
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The mapping's settings (the SAM template's `Events: Kinesis` properties).
#[derive(Debug, Clone)]
pub struct EsmConfig {
    pub batch_size: usize,
    pub batching_window: Duration,
    pub max_retries: u32,
    pub bisect_on_error: bool,
    /// How long an idle shard waits before the next `GetRecords`.
    pub idle_poll: Duration,
}

impl Default for EsmConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            batching_window: Duration::from_millis(500),
            max_retries: 3,
            bisect_on_error: true,
            idle_poll: Duration::from_millis(200),
        }
    }
}

/// Synchronous invoke payloads are limited to 6 MB.
const MAX_INVOKE_PAYLOAD: usize = 6 * 1024 * 1024 - 64 * 1024;

/// One record read from a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub arrived_at: DateTime<Utc>,
}

/// What an invocation of the fan-out came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// `batchItemFailures`: retry from this index of the batch (the lowest failed sequence).
    RetryFrom(usize),
    /// The function failed (error, timeout, a malformed response): the whole batch failed.
    FunctionError(String),
}

/// Reads the fan-out's response: per AWS, an empty or absent `batchItemFailures` is a
/// success; an identifier that is empty, null or not in the batch fails the whole batch.
pub fn read_response(batch: &[StreamRecord], function_error: bool, body: &[u8]) -> Outcome {
    if function_error {
        return Outcome::FunctionError(String::from_utf8_lossy(body).chars().take(500).collect());
    }
    if body.is_empty() || body == b"null" {
        return Outcome::Success;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Outcome::FunctionError("the response is not JSON".into());
    };
    let Some(failures) = v.get("batchItemFailures").and_then(|f| f.as_array()) else {
        return Outcome::Success;
    };
    let mut lowest: Option<usize> = None;
    for f in failures {
        let id = f
            .get("itemIdentifier")
            .and_then(|i| i.as_str())
            .unwrap_or("");
        match batch.iter().position(|r| r.sequence_number == id) {
            Some(i) if !id.is_empty() => lowest = Some(lowest.map_or(i, |l| l.min(i))),
            _ => {
                return Outcome::FunctionError(format!(
                    "batchItemFailures names {id:?}, which is not in the batch"
                ));
            }
        }
    }
    lowest.map_or(Outcome::Success, Outcome::RetryFrom)
}

/// Builds the event the way the ESM does.
pub fn kinesis_event(
    records: &[StreamRecord],
    shard_id: &str,
    stream_arn: &str,
    region: &str,
) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    event.records = records
        .iter()
        .map(|r| {
            let mut k = KinesisRecord::default();
            k.approximate_arrival_timestamp.0 = r.arrived_at;
            k.data.0 = r.data.clone();
            k.partition_key = r.partition_key.clone();
            k.sequence_number = r.sequence_number.clone();
            k.kinesis_schema_version = Some("1.0".into());
            let mut e = KinesisEventRecord::default();
            e.aws_region = Some(region.into());
            e.event_id = Some(format!("{shard_id}:{}", r.sequence_number));
            e.event_name = Some("aws:kinesis:record".into());
            e.event_source = Some("aws:kinesis".into());
            e.event_source_arn = Some(stream_arn.into());
            e.event_version = Some("1.0".into());
            e.invoke_identity_arn = Some(format!(
                "arn:aws:iam::{}:role/inventory-fanout-role",
                super::moto::ACCOUNT
            ));
            e.kinesis = k;
            e
        })
        .collect();
    event
}

/// The event as JSON, with `approximateArrivalTimestamp` as the number of epoch seconds AWS
/// sends (`aws_lambda_events` may write it as a numeric string).
pub fn event_json(event: &KinesisEvent) -> serde_json::Result<serde_json::Value> {
    let mut v = serde_json::to_value(event)?;
    if let Some(records) = v.get_mut("Records").and_then(|r| r.as_array_mut()) {
        for r in records {
            let t = &mut r["kinesis"]["approximateArrivalTimestamp"];
            if let Some(n) = t
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .and_then(serde_json::Number::from_f64)
            {
                *t = serde_json::Value::Number(n);
            }
        }
    }
    Ok(v)
}

/// The on-failure destination's message for discarded records, as AWS writes it.
pub fn failure_record(
    records: &[StreamRecord],
    shard_id: &str,
    stream_arn: &str,
    function_arn: &str,
    invoke_count: u32,
    function_error: bool,
) -> serde_json::Value {
    let first = records.first();
    let last = records.last();
    let iso = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    let mut response = json!({ "statusCode": 200, "executedVersion": "$LATEST" });
    if function_error {
        response["functionError"] = json!("Unhandled");
    }
    json!({
        "requestContext": {
            "requestId": request_id(),
            "functionArn": function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first.map(|r| r.sequence_number.clone()),
            "endSequenceNumber": last.map(|r| r.sequence_number.clone()),
            "approximateArrivalOfFirstRecord": iso(first.map(|r| r.arrived_at)),
            "approximateArrivalOfLastRecord": iso(last.map(|r| r.arrived_at)),
            "batchSize": records.len(),
            "streamArn": stream_arn,
        }
    })
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    let h = format!(
        "{:016x}{:016x}",
        t,
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())
    );
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Everything a shard worker needs.
#[derive(Debug, Clone)]
pub struct Poller {
    pub kinesis: aws_sdk_kinesis::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub http: HttpClient,
    /// `{router}/2015-03-31/functions/{fanout ARN}/invocations`
    pub invoke_url: String,
    pub function_arn: String,
    pub stream_name: String,
    pub stream_arn: String,
    pub dlq_url: String,
    pub config: EsmConfig,
    pub stats: Arc<Stats>,
}

impl Poller {
    /// Starts one worker per shard; they stop when `stop` turns true.
    pub async fn start(
        self,
        stop: watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>> {
        let shards = self
            .kinesis
            .list_shards()
            .stream_name(&self.stream_name)
            .send()
            .await
            .context("listing shards")?;
        let mut handles = Vec::new();
        for shard in shards.shards() {
            let me = self.clone();
            let shard_id = shard.shard_id().to_owned();
            let stop = stop.clone();
            handles.push(tokio::spawn(
                async move { me.run_shard(shard_id, stop).await },
            ));
        }
        Ok(handles)
    }

    async fn run_shard(self, shard_id: String, mut stop: watch::Receiver<bool>) {
        let mut iterator = None;
        // The newest sequence number read: a new iterator resumes after it.
        let mut last_read: Option<String> = None;
        let mut pending: VecDeque<StreamRecord> = VecDeque::new();
        let mut window_start: Option<tokio::time::Instant> = None;
        while !*stop.borrow() {
            if iterator.is_none() {
                iterator = self.iterator(&shard_id, last_read.as_deref()).await;
                if iterator.is_none() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            let mut fetched = 0;
            if pending.len() < self.config.batch_size {
                let limit = (self.config.batch_size - pending.len()).clamp(1, 10_000);
                match self
                    .kinesis
                    .get_records()
                    .shard_iterator(iterator.clone().unwrap_or_default())
                    .limit(limit as i32)
                    .send()
                    .await
                {
                    Ok(out) => {
                        iterator = out.next_shard_iterator().map(str::to_owned);
                        if let Some(r) = out.records().last() {
                            last_read = Some(r.sequence_number().to_owned());
                        }
                        for r in out.records() {
                            pending.push_back(StreamRecord {
                                sequence_number: r.sequence_number().to_owned(),
                                partition_key: r.partition_key().to_owned(),
                                data: r.data().as_ref().to_vec(),
                                arrived_at: r
                                    .approximate_arrival_timestamp()
                                    .and_then(|t| {
                                        DateTime::from_timestamp_millis(t.to_millis().ok()?)
                                    })
                                    .unwrap_or_else(Utc::now),
                            });
                            fetched += 1;
                        }
                        self.stats.poller(|p| p.records_read += fetched as u64);
                    }
                    Err(e) => {
                        let e = aws_sdk_kinesis::error::DisplayErrorContext(&e);
                        eprintln!(
                            "stack: GetRecords on {shard_id} failed: {e}; retrying after the last record read"
                        );
                        iterator = None;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            if pending.is_empty() {
                window_start = None;
                tokio::select! { _ = tokio::time::sleep(self.config.idle_poll) => {}, _ = stop.changed() => {} }
                continue;
            }
            let started = *window_start.get_or_insert_with(tokio::time::Instant::now);
            let full = pending.len() >= self.config.batch_size;
            if !full && started.elapsed() < self.config.batching_window {
                if fetched == 0 {
                    tokio::time::sleep(self.config.idle_poll.min(self.config.batching_window))
                        .await;
                }
                continue;
            }
            let take = batch_len(pending.iter(), self.config.batch_size);
            let batch: Vec<StreamRecord> = pending.drain(..take).collect();
            window_start = if pending.is_empty() {
                None
            } else {
                Some(tokio::time::Instant::now())
            };
            self.deliver(&shard_id, batch).await;
        }
    }

    /// An iterator at the shard's start, or just after `after` (the last record read).
    async fn iterator(&self, shard_id: &str, after: Option<&str>) -> Option<String> {
        let req = self
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.stream_name)
            .shard_id(shard_id);
        let req = match after {
            Some(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        req.send()
            .await
            .ok()
            .and_then(|o| o.shard_iterator().map(str::to_owned))
    }

    /// Delivers one batch with the mapping's retry, bisect and destination rules. Returns
    /// when every record of it is either processed or sent to the destination.
    async fn deliver(&self, shard_id: &str, batch: Vec<StreamRecord>) {
        let total = batch.len() as u64;
        self.stats.poller(|p| {
            p.batches += 1;
            p.in_flight += 1;
        });
        // (records, retries spent, invocations so far)
        let mut work: VecDeque<(Vec<StreamRecord>, u32, u32)> = VecDeque::from([(batch, 0, 0)]);
        while let Some((part, retries, invokes)) = work.pop_front() {
            let outcome = self.invoke(shard_id, &part).await;
            let invokes = invokes + 1;
            match outcome {
                Outcome::Success => {}
                Outcome::RetryFrom(i) => {
                    self.stats.poller(|p| p.partial_failures += 1);
                    let rest = part[i..].to_vec();
                    if retries < self.config.max_retries {
                        self.stats.poller(|p| p.retries += 1);
                        backoff(retries).await;
                        work.push_front((rest, retries + 1, invokes));
                    } else {
                        self.to_destination(shard_id, &rest, invokes, false).await;
                    }
                }
                Outcome::FunctionError(why) => {
                    self.stats.poller(|p| p.function_errors += 1);
                    eprintln!(
                        "stack: fanout failed on a batch of {} from {shard_id}: {why}",
                        part.len()
                    );
                    if self.config.bisect_on_error && part.len() > 1 {
                        self.stats.poller(|p| p.bisections += 1);
                        let mut first = part;
                        let second = first.split_off(first.len() / 2);
                        work.push_front((second, retries, invokes));
                        work.push_front((first, retries, invokes));
                    } else if retries < self.config.max_retries {
                        self.stats.poller(|p| p.retries += 1);
                        backoff(retries).await;
                        work.push_front((part, retries + 1, invokes));
                    } else {
                        self.to_destination(shard_id, &part, invokes, true).await;
                    }
                }
            }
        }
        self.stats.poller(|p| {
            p.records_done += total;
            p.in_flight -= 1;
        });
    }

    /// Invokes the fan-out, retrying calls that never reached it.
    async fn invoke(&self, shard_id: &str, part: &[StreamRecord]) -> Outcome {
        let event = kinesis_event(part, shard_id, &self.stream_arn, super::moto::REGION);
        let payload = match event_json(&event) {
            Ok(v) => v,
            Err(e) => return Outcome::FunctionError(format!("could not encode the event: {e}")),
        };
        let mut wait = Duration::from_millis(200);
        loop {
            self.stats.poller(|p| p.invocations += 1);
            match http::post_json(&self.http, &self.invoke_url, &payload).await {
                Ok(reply) if reply.status.is_success() => {
                    let function_error = reply.headers.contains_key("x-amz-function-error");
                    return read_response(part, function_error, &reply.body);
                }
                Ok(reply) => eprintln!(
                    "stack: invoking fanout: HTTP {} {}; retrying",
                    reply.status,
                    reply.text()
                ),
                Err(e) => eprintln!("stack: invoking fanout: {e:#}; retrying"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn to_destination(
        &self,
        shard_id: &str,
        records: &[StreamRecord],
        invokes: u32,
        function_error: bool,
    ) {
        let n = records.len() as u64;
        self.stats.poller(|p| p.records_to_destination += n);
        let body = failure_record(
            records,
            shard_id,
            &self.stream_arn,
            &self.function_arn,
            invokes,
            function_error,
        );
        eprintln!(
            "stack: {n} records from {shard_id} go to the on-failure destination after {invokes} invocations"
        );
        for _ in 0..5 {
            match self
                .sqs
                .send_message()
                .queue_url(&self.dlq_url)
                .message_body(body.to_string())
                .send()
                .await
            {
                Ok(_) => return,
                Err(e) => eprintln!("stack: writing to the on-failure queue failed: {e}; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// How many of the pending records go into the next batch (count and payload limits).
pub fn batch_len<'a>(pending: impl Iterator<Item = &'a StreamRecord>, batch_size: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for r in pending.take(batch_size) {
        // base64 grows data by 4/3; the envelope adds about 400 bytes per record.
        bytes += r.data.len().div_ceil(3) * 4 + 400;
        if n > 0 && bytes > MAX_INVOKE_PAYLOAD {
            break;
        }
        n += 1;
    }
    n
}

async fn backoff(retries: u32) {
    tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(retries.min(5)))).await;
}

#[cfg(test)]
mod tests;
