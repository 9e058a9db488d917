//! Running one scenario on its stack: push a third of the feed, break something once it went
//! through the fan-out, push the middle third, repair it, push the rest, drain, then recover
//! as ops would (re-run each failed execution's input, which is what a console redrive relies
//! on, and replay the fan-out's on-failure queue onto the stream), and drain again.

use super::scenarios::{Fault, Scenario};
use super::servers::OwnServer;
use crate::demo::push;
use crate::stack::LocalStack;
use anyhow::{Context, Result, bail};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_sfn::types::ExecutionStatus;
use inventory::feed::FeedRecord;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Clients on the stack.
pub struct Clients {
    pub kinesis: aws_sdk_kinesis::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
}

/// What a run did, for the accounting.
#[derive(Debug, Default)]
pub struct Run {
    /// Every record the supplier sent, in the order sent (a second push included).
    pub sent: Vec<FeedRecord>,
    /// Executions that failed before recovery.
    pub failed_before_recovery: usize,
    /// Re-runs of failed executions' inputs.
    pub reruns: u64,
    /// Records replayed from the on-failure queue; their first stream positions.
    pub replayed: HashSet<(String, String)>,
    /// Executions still failed after recovery, with no successful re-run.
    pub unrecovered: Vec<String>,
}

/// The suite's own servers, when the scenario breaks one.
#[derive(Default)]
pub struct Servers {
    pub postgres: Option<OwnServer>,
    pub redis: Option<OwnServer>,
}

const DRAIN_TIMEOUT: Duration = Duration::from_secs(900);

pub async fn run(
    stack: &LocalStack,
    c: &Clients,
    sc: &Scenario,
    servers: &mut Servers,
) -> Result<Run> {
    let o = &stack.outputs;
    let mut run = Run {
        sent: sc.feed.clone(),
        ..Run::default()
    };
    let feed = &sc.feed;
    let (first, second) = (feed.len() / 3, 2 * feed.len() / 3);
    // The feed goes in thirds, so the fault is on while the middle third flows through
    // however fast the stack drains: the first third before it, the middle third right after
    // it is switched on, the last third once it is repaired.
    push(c, &o.stream_name, &feed[..first]).await?;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while stack.stats.snapshot().poller.records_done < first as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the first third of the feed never got through"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("  {}: fault on ({})", sc.name, describe(&sc.fault));
    let middle = &feed[first..second];
    match &sc.fault {
        Fault::None => push(c, &o.stream_name, middle).await?,
        Fault::PushAgain => {
            push(c, &o.stream_name, middle).await?;
            push(c, &o.stream_name, feed).await?;
            run.sent.extend(feed.iter().cloned());
        }
        Fault::Router { specs, hold } => {
            let until = Instant::now() + *hold;
            for spec in specs {
                router(o, "POST", "/_faults", spec).await?;
            }
            push(c, &o.stream_name, middle).await?;
            tokio::time::sleep_until(until.into()).await;
            let fired = router(o, "GET", "/_faults", &serde_json::json!({})).await?;
            eprintln!(
                "  {}: fault off; it fired {} times",
                sc.name,
                fired.as_array().map_or(0, |a| a
                    .iter()
                    .filter_map(|f| f["fired"].as_u64())
                    .sum::<u64>())
            );
            router(o, "DELETE", "/_faults", &serde_json::json!({})).await?;
        }
        Fault::PostgresDown { down } => {
            let until = Instant::now() + *down;
            let pg = servers.postgres.as_mut().context("no own PostgreSQL")?;
            pg.halt(true).await?;
            push(c, &o.stream_name, middle).await?;
            tokio::time::sleep_until(until.into()).await;
            pg.launch().await?;
            eprintln!("  {}: PostgreSQL is back", sc.name);
        }
        Fault::RedisDown { down } => {
            let until = Instant::now() + *down;
            let r = servers.redis.as_mut().context("no own Redis")?;
            r.halt(false).await?;
            push(c, &o.stream_name, middle).await?;
            tokio::time::sleep_until(until.into()).await;
            r.launch().await?;
            eprintln!("  {}: Redis is back", sc.name);
        }
    }
    push(c, &o.stream_name, &feed[second..]).await?;
    let mut on_stream = run.sent.len() as u64;
    drain(stack, c, on_stream).await?;
    recover(stack, c, sc, &mut run, &mut on_stream).await?;
    Ok(run)
}

fn describe(f: &Fault) -> String {
    match f {
        Fault::None => "nothing but the feed".into(),
        Fault::PushAgain => "pushing the feed again".into(),
        Fault::Router { specs, hold } => format!("{} router faults for {hold:?}", specs.len()),
        Fault::PostgresDown { down } => format!("PostgreSQL down for {down:?}"),
        Fault::RedisDown { down } => format!("Redis down for {down:?}"),
    }
}

/// Puts `records` on the stream, all of them or an error.
async fn push(c: &Clients, stream: &str, records: &[FeedRecord]) -> Result<()> {
    let report =
        push::push_lanes(&c.kinesis, stream, records, 4, Arc::new(AtomicU64::new(0))).await?;
    anyhow::ensure!(
        report.sent == records.len() as u64,
        "pushed {} of {} records",
        report.sent,
        records.len()
    );
    Ok(())
}

/// The router's controls.
async fn router(
    o: &crate::stack::Outputs,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    let client = crate::stack::http::client();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", o.local_router_url))
        .header("content-type", "application/json")
        .body(crate::stack::http::Body::new(hyper::body::Bytes::from(
            body.to_string(),
        )))?;
    let reply = crate::stack::http::send(&client, req).await?;
    anyhow::ensure!(
        reply.status.is_success(),
        "{method} {path}: {}",
        reply.text()
    );
    reply.json()
}

/// Waits until the poller has handed every record on the stream to the fan-out (or to the
/// on-failure queue) and no execution is running.
pub async fn drain(stack: &LocalStack, c: &Clients, on_stream: u64) -> Result<()> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let p = stack.stats.snapshot().poller;
        if p.records_read >= on_stream && p.records_done >= p.records_read && p.in_flight == 0 {
            let running = executions(c, &stack.outputs.state_machine_arn)
                .await?
                .iter()
                .filter(|e| e.2 == ExecutionStatus::Running)
                .count();
            if running == 0 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "not drained after {DRAIN_TIMEOUT:?}: poller read {}, done {}, in flight {} (stream holds {on_stream})",
                p.records_read,
                p.records_done,
                p.in_flight
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Every execution: (ARN, name, status).
pub async fn executions(
    c: &Clients,
    state_machine: &str,
) -> Result<Vec<(String, String, ExecutionStatus)>> {
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .sfn
            .list_executions()
            .state_machine_arn(state_machine)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await?;
        for e in page.executions() {
            all.push((
                e.execution_arn().to_owned(),
                e.name().to_owned(),
                e.status().clone(),
            ));
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(all);
        }
    }
}

fn failed(s: &ExecutionStatus) -> bool {
    matches!(
        s,
        ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted
    )
}

/// Ops' recovery, in rounds: re-run every failed execution's input (`reruns` times, one
/// after another) and replay the on-failure queue; drain; again while anything failed.
async fn recover(
    stack: &LocalStack,
    c: &Clients,
    sc: &Scenario,
    run: &mut Run,
    on_stream: &mut u64,
) -> Result<()> {
    let o = &stack.outputs;
    let mut handled: HashSet<String> = HashSet::new();
    for round in 1..=3u32 {
        let all = executions(c, &o.state_machine_arn).await?;
        let to_rerun: Vec<(String, String)> = all
            .iter()
            .filter(|e| failed(&e.2) && !handled.contains(&e.0))
            .map(|e| (e.0.clone(), e.1.clone()))
            .collect();
        if round == 1 {
            run.failed_before_recovery = to_rerun.len();
        }
        let replayed = replay_dlq(c, o).await?;
        if to_rerun.is_empty() && replayed.is_empty() {
            return Ok(());
        }
        eprintln!(
            "  {}: recovery round {round}: re-running {} failed executions' input, {} records replayed from the on-failure queue",
            sc.name,
            to_rerun.len(),
            replayed.len()
        );
        *on_stream += replayed.len() as u64;
        run.replayed.extend(replayed);
        for k in 1..=sc.reruns {
            for (arn, name) in &to_rerun {
                let input = c
                    .sfn
                    .describe_execution()
                    .execution_arn(arn)
                    .send()
                    .await?
                    .input()
                    .context("a failed execution without input")?
                    .to_owned();
                let base: String = name.chars().take(74).collect();
                c.sfn
                    .start_execution()
                    .state_machine_arn(&o.state_machine_arn)
                    .name(format!("{base}-r{round}{k}"))
                    .input(input)
                    .send()
                    .await
                    .with_context(|| format!("re-running {name}"))?;
                run.reruns += 1;
            }
            drain(stack, c, *on_stream).await?;
        }
        handled.extend(to_rerun.into_iter().map(|e| e.0));
    }
    run.unrecovered = executions(c, &o.state_machine_arn)
        .await?
        .into_iter()
        .filter(|e| failed(&e.2) && !handled.contains(&e.0))
        .map(|e| e.1)
        .collect();
    Ok(())
}

/// Replays the fan-out's on-failure queue as the runbook's `replay-dlq` does: each message
/// names a shard and a sequence range; those records are read back from the stream and put
/// on it again with their partition keys, then the message is deleted. Returns the replayed
/// records' original positions.
async fn replay_dlq(c: &Clients, o: &crate::stack::Outputs) -> Result<Vec<(String, String)>> {
    let mut positions = Vec::new();
    loop {
        let out = c
            .sqs
            .receive_message()
            .queue_url(&o.fanout_dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        if out.messages().is_empty() {
            return Ok(positions);
        }
        for m in out.messages() {
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap_or("{}"))?;
            let info = &body["KinesisBatchInfo"];
            let (shard, start, end) = (
                info["shardId"].as_str().context("shardId")?,
                info["startSequenceNumber"]
                    .as_str()
                    .context("startSequenceNumber")?,
                info["endSequenceNumber"]
                    .as_str()
                    .context("endSequenceNumber")?,
            );
            let records = read_range(c, &o.stream_name, shard, start, end).await?;
            let entries = records
                .iter()
                .map(|r| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(r.partition_key())
                        .data(Blob::new(r.data().as_ref().to_vec()))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            for chunk in entries.chunks(500) {
                let put = c
                    .kinesis
                    .put_records()
                    .stream_name(&o.stream_name)
                    .set_records(Some(chunk.to_vec()))
                    .send()
                    .await?;
                anyhow::ensure!(
                    put.failed_record_count().unwrap_or(0) == 0,
                    "replaying: PutRecords failed some"
                );
            }
            positions.extend(
                records
                    .iter()
                    .map(|r| (shard.to_owned(), r.sequence_number().to_owned())),
            );
            if let Some(h) = m.receipt_handle() {
                c.sqs
                    .delete_message()
                    .queue_url(&o.fanout_dlq_url)
                    .receipt_handle(h)
                    .send()
                    .await?;
            }
        }
    }
}

/// Sequence numbers are decimal strings of up to 128 bits: compare by length, then text.
pub fn seq_key(s: &str) -> (usize, &str) {
    let t = s.trim_start_matches('0');
    (t.len(), t)
}

async fn read_range(
    c: &Clients,
    stream: &str,
    shard: &str,
    start: &str,
    end: &str,
) -> Result<Vec<aws_sdk_kinesis::types::Record>> {
    let mut iterator = c
        .kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(start)
        .send()
        .await?
        .shard_iterator()
        .map(str::to_owned);
    let mut out = Vec::new();
    while let Some(it) = iterator {
        let page = c
            .kinesis
            .get_records()
            .shard_iterator(it)
            .limit(1000)
            .send()
            .await?;
        if page.records().is_empty() {
            break;
        }
        for r in page.records() {
            if seq_key(r.sequence_number()) > seq_key(end) {
                return Ok(out);
            }
            out.push(r.clone());
        }
        iterator = page.next_shard_iterator().map(str::to_owned);
    }
    Ok(out)
}
