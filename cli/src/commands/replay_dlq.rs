//! `inventory replay-dlq`: the batches in the fan-out's on-failure queue, fetched from the
//! stream by their sequence ranges and put on it again.

use super::sending::{SendArgs, send_and_report};
use crate::batch::Outgoing;
use crate::exit::{Outcome, WithOutcome as _};
use crate::send::aws_error_text;
use crate::target::{Outputs, TargetArgs, sdk_config};
use anyhow::{Context as _, Result, bail};
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_sqs::types::Message;
use chrono::{DateTime, Utc};
use inventory::domain::update::with_arrival_time;
use serde::Deserialize;
use std::cmp::Ordering;

/// Options of `inventory replay-dlq`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayDlqArgs {
    /// The on-failure queue. Default: FanoutDlqUrl from --outputs.
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// The stream to put the records on. Default: the stream each message names.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// At most this many messages.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    pub max_messages: usize,
    /// Only fetch and count the records; send nothing and delete no message (the messages read
    /// are made visible again at the end, so the real run can follow at once).
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds a message read stays hidden from other readers while it is replayed (messages
    /// not deleted are made visible again when the run ends).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub visibility_timeout: i32,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub send: SendArgs,
}

/// Lambda's on-failure record for a stream event source (the parts used here).
#[derive(Debug, Clone, Deserialize)]
pub struct OnFailureRecord {
    #[serde(rename = "KinesisBatchInfo")]
    pub batch: KinesisBatchInfo,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisBatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub stream_arn: String,
    #[serde(default)]
    pub batch_size: Option<u64>,
}

impl KinesisBatchInfo {
    /// The stream's name, from its ARN (`arn:aws:kinesis:region:account:stream/NAME`).
    pub fn stream_name(&self) -> &str {
        self.stream_arn
            .rsplit_once("stream/")
            .map_or(self.stream_arn.as_str(), |(_, n)| n)
    }
}

/// Sequence numbers are decimal strings of up to 128 bits: compare by length, then digits.
pub fn compare_sequence(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// One record of an on-failure message's range, as the stream holds it.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// When it first reached the stream (Kinesis's approximate arrival timestamp).
    pub arrived_at: Option<DateTime<Utc>>,
}

/// The records of one on-failure message, in sequence order.
pub async fn fetch_range(
    kinesis: &aws_sdk_kinesis::Client,
    info: &KinesisBatchInfo,
) -> Result<Vec<StreamRecord>> {
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(info.stream_name())
        .shard_id(&info.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&info.start_sequence_number)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_error_text(&e)))
        .context("getting a shard iterator (the records may be past the stream's retention)")?;
    let mut next = iterator.shard_iterator().map(str::to_owned);
    let mut out = Vec::new();
    let mut empty_reads = 0;
    while let Some(it) = next.take() {
        let page = kinesis
            .get_records()
            .shard_iterator(it)
            .limit(1_000)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_error_text(&e)))
            .context("reading the shard")?;
        for r in page.records() {
            if compare_sequence(r.sequence_number(), &info.end_sequence_number) == Ordering::Greater
            {
                return Ok(out);
            }
            out.push(StreamRecord {
                sequence_number: r.sequence_number().to_owned(),
                partition_key: r.partition_key().to_owned(),
                data: r.data().as_ref().to_vec(),
                arrived_at: r
                    .approximate_arrival_timestamp()
                    .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
            });
            if r.sequence_number() == info.end_sequence_number {
                return Ok(out);
            }
        }
        if page.records().is_empty() {
            empty_reads += 1;
            if page.millis_behind_latest() == Some(0) || empty_reads > 5 {
                break;
            }
        }
        next = page.next_shard_iterator().map(str::to_owned);
    }
    if out.is_empty() {
        bail!(
            "no records from {} on, up to {}, are left on {}",
            info.start_sequence_number,
            info.end_sequence_number,
            info.shard_id
        );
    }
    Ok(out)
}

pub async fn run(args: ReplayDlqArgs) -> Result<Outcome> {
    let outputs = Outputs::read(&args.target)?;
    let queue = outputs.pick(&args.queue_url, "FanoutDlqUrl", "--queue-url")?;
    let conf = sdk_config(&args.target, &outputs).await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let kinesis = aws_sdk_kinesis::Client::new(&conf);

    // Read the messages (each stays hidden while we work on it).
    let mut messages = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while messages.len() < args.max_messages {
        let want = (args.max_messages - messages.len()).min(10) as i32;
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(want)
            .visibility_timeout(args.visibility_timeout)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_error_text(&e)))
            .context("reading the on-failure queue")
            .or_exit(Outcome::ServiceFailed)?;
        let batch = got.messages().to_vec();
        if batch.is_empty() {
            break;
        }
        let before = messages.len();
        for m in batch {
            if seen.insert(m.message_id().unwrap_or_default().to_owned()) {
                messages.push(m);
            }
        }
        if messages.len() == before {
            break;
        }
    }
    eprintln!("replay-dlq: {} messages on {queue}", messages.len());

    // Fetch each message's records.
    let mut records: Vec<Outgoing> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    let mut usable = vec![false; messages.len()];
    let mut kept = 0;
    for (m_index, m) in messages.iter().enumerate() {
        let id = m.message_id().unwrap_or("?");
        let info = match serde_json::from_str::<OnFailureRecord>(m.body().unwrap_or("")) {
            Ok(r) => r.batch,
            Err(e) => {
                eprintln!(
                    "message {id}: not an on-failure record with KinesisBatchInfo ({e}); kept"
                );
                kept += 1;
                continue;
            }
        };
        match fetch_range(&kinesis, &info).await {
            Ok(found) => {
                if let Some(n) = info.batch_size.filter(|n| *n != found.len() as u64) {
                    eprintln!(
                        "message {id}: {n} records in the batch, {} still on the stream",
                        found.len()
                    );
                }
                let target = args
                    .stream
                    .clone()
                    .unwrap_or_else(|| info.stream_name().to_owned());
                for r in found {
                    records.push(Outgoing {
                        partition_key: r.partition_key,
                        data: match r.arrived_at {
                            Some(t) => with_arrival_time(&r.data, t),
                            None => r.data,
                        },
                        origin: format!(
                            "{}/{}/{} -> {target}",
                            info.stream_name(),
                            info.shard_id,
                            r.sequence_number
                        ),
                    });
                    owner.push(m_index);
                }
                usable[m_index] = true;
            }
            Err(e) => {
                eprintln!("message {id}: {e:#}; kept");
                kept += 1;
            }
        }
    }
    eprintln!(
        "replay-dlq: {} records to put back from {} messages ({kept} messages kept on the queue)",
        records.len(),
        usable.iter().filter(|u| **u).count()
    );
    if args.dry_run {
        release(&sqs, &queue, &messages).await;
        eprintln!("replay-dlq: dry run, nothing sent or deleted");
        return Ok(if kept > 0 {
            Outcome::NotSent
        } else {
            Outcome::Done
        });
    }
    // One stream per run keeps the report simple; messages naming another stream need --stream.
    let stream = match &args.stream {
        Some(s) => s.clone(),
        None => match records.first() {
            Some(r) => r
                .origin
                .rsplit_once(" -> ")
                .map(|(_, s)| s.to_owned())
                .unwrap_or_default(),
            None => {
                release(&sqs, &queue, &messages).await;
                return Ok(if kept > 0 {
                    Outcome::NotSent
                } else {
                    Outcome::Done
                });
            }
        },
    };
    if records
        .iter()
        .any(|r| !r.origin.ends_with(&format!(" -> {stream}")))
    {
        release(&sqs, &queue, &messages).await;
        return Err(crate::exit::usage(
            "the messages name more than one stream; choose one with --stream",
        ));
    }
    let (report, mut outcome) =
        send_and_report("replay-dlq", &kinesis, &stream, &records, &args.send).await?;
    for u in &report.unsent {
        usable[owner[u.index]] = false;
    }
    let mut deleted = 0;
    let not_replayed: Vec<Message> = messages
        .iter()
        .zip(&usable)
        .filter(|(_, ok)| !**ok)
        .map(|(m, _)| m.clone())
        .collect();
    release(&sqs, &queue, &not_replayed).await;
    for (m, ok) in messages.iter().zip(&usable) {
        if !ok {
            continue;
        }
        if let Some(handle) = m.receipt_handle() {
            sqs.delete_message()
                .queue_url(&queue)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws_error_text(&e)))
                .context("deleting a replayed message (its records were sent; a re-run would send them again)")
                .or_exit(Outcome::ServiceFailed)?;
            deleted += 1;
        }
    }
    let left = messages.len() - deleted;
    eprintln!("replay-dlq: {deleted} messages replayed and deleted, {left} left on the queue");
    if outcome == Outcome::Done && left > 0 {
        outcome = Outcome::NotSent;
    }
    Ok(outcome)
}

/// Makes messages this run read but did not delete visible again at once, rather than after
/// the visibility timeout: a dry run only looks, and a message kept is there for the next run.
async fn release(sqs: &aws_sdk_sqs::Client, queue: &str, messages: &[Message]) {
    for m in messages {
        let Some(handle) = m.receipt_handle() else {
            continue;
        };
        if let Err(e) = sqs
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
        {
            eprintln!(
                "message {}: stays hidden until its visibility timeout ends ({})",
                m.message_id().unwrap_or("?"),
                aws_error_text(&e)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_on_failure_record_gives_its_shard_range_and_stream() {
        let body = r#"{"requestContext":{"condition":"RetryAttemptsExhausted"},"version":"1.0",
            "KinesisBatchInfo":{"shardId":"shardId-000000000001","startSequenceNumber":"49590",
            "endSequenceNumber":"49600","batchSize":3,
            "streamArn":"arn:aws:kinesis:eu-west-1:123456789012:stream/inventory-updates-dev"}}"#;
        let info = serde_json::from_str::<OnFailureRecord>(body)
            .expect("parses")
            .batch;
        assert_eq!(info.shard_id, "shardId-000000000001");
        assert_eq!(info.stream_name(), "inventory-updates-dev");
        assert_eq!(info.batch_size, Some(3));
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(compare_sequence("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence("123", "122"), Ordering::Greater);
        assert_eq!(compare_sequence("5", "5"), Ordering::Equal);
    }
}
