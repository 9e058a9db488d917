//! Running one scenario on its stack: push a third of the feed, break something once it went
//! through the fan-out, push the middle third, repair it, push the rest, drain, then recover
//! as ops would (redrive each failed execution with `RedriveExecution`, which resumes it at
//! the state that failed on the same ARN, and replay the fan-out's on-failure queue onto the
//! stream), and drain again.

use super::scenarios::{Fault, Scenario};
use super::servers::OwnServer;
use crate::demo::push;
use crate::stack::LocalStack;
use anyhow::{Context, Result, bail};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_sfn::types::ExecutionStatus;
use inventory::feed::FeedRecord;
use std::collections::{BTreeMap, HashSet};
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
    /// `RedriveExecution` calls that the emulator accepted.
    pub redrives: u64,
    /// New executions started with a failed execution's input (the path for executions past
    /// the redrive window, and the scenario's extra re-runs).
    pub reruns: u64,
    /// Lambda invocations per function while the redriven executions ran (before anything
    /// else was replayed), summed over the recovery rounds.
    pub redrive_invocations: BTreeMap<String, u64>,
    /// Second `RedriveExecution` calls on a redriven execution that SUCCEEDED, and how many of
    /// them were refused with ExecutionNotRedrivable (all of them, as in AWS).
    pub second_redrives: (u64, u64),
    /// Records replayed from the on-failure queue; their first stream positions.
    pub replayed: HashSet<(String, String)>,
    /// Executions still failed after recovery, with no successful re-run.
    pub unrecovered: Vec<String>,
}

impl Run {
    /// The functions outside `allowed` that ran while redriven executions ran, with counts.
    pub fn redrive_invokes_only_outside<'a>(
        &'a self,
        allowed: &'a [&str],
    ) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        self.redrive_invocations
            .iter()
            .filter(move |(f, n)| **n > 0 && !allowed.contains(&f.as_str()))
            .map(|(f, n)| (f.as_str(), *n))
    }
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

/// Ops' recovery, in rounds: redrive every failed execution (`RedriveExecution`: it resumes
/// at the state that failed, on the same ARN) and wait for those to finish, noting which
/// functions they invoked; replay the on-failure queue; drain. An execution the emulator
/// refuses to redrive (past the window) gets a new execution with its input instead, as
/// `inventory redrive-failed` does. Then the scenario's extra re-runs: each redriven
/// execution's input started again under a new name (the past-the-window path, which must
/// change nothing), and a second redrive of each, which must be refused. Again while
/// anything failed.
async fn recover(
    stack: &LocalStack,
    c: &Clients,
    sc: &Scenario,
    run: &mut Run,
    on_stream: &mut u64,
) -> Result<()> {
    let o = &stack.outputs;
    // Failed executions recovered by a new execution: they stay FAILED, and are done with.
    let mut replaced: HashSet<String> = HashSet::new();
    for round in 1..=3u32 {
        let all = executions(c, &o.state_machine_arn).await?;
        let to_recover: Vec<(String, String)> = all
            .iter()
            .filter(|e| failed(&e.2) && !replaced.contains(&e.0))
            .map(|e| (e.0.clone(), e.1.clone()))
            .collect();
        if round == 1 {
            run.failed_before_recovery = to_recover.len();
        }
        let before = stack.stats.snapshot().functions;
        let mut redriven = Vec::new();
        for (arn, name) in &to_recover {
            match c.sfn.redrive_execution().execution_arn(arn).send().await {
                Ok(_) => {
                    run.redrives += 1;
                    redriven.push((arn.clone(), name.clone()));
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_execution_not_redrivable()) =>
                {
                    rerun(c, &o.state_machine_arn, arn, name, &format!("r{round}0")).await?;
                    run.reruns += 1;
                    replaced.insert(arn.clone());
                }
                Err(e) => return Err(e).with_context(|| format!("redriving {name}")),
            }
        }
        wait_finished(c, redriven.iter().map(|e| e.0.as_str())).await?;
        for (function, timing) in stack.stats.snapshot().functions {
            let earlier = before.get(&function).map_or(0, |t| t.calls);
            if timing.calls > earlier {
                *run.redrive_invocations.entry(function).or_default() += timing.calls - earlier;
            }
        }
        let replayed = replay_dlq(c, o).await?;
        if to_recover.is_empty() && replayed.is_empty() {
            return Ok(());
        }
        eprintln!(
            "  {}: recovery round {round}: redrove {} of {} failed executions, {} records replayed from the on-failure queue",
            sc.name,
            redriven.len(),
            to_recover.len(),
            replayed.len()
        );
        *on_stream += replayed.len() as u64;
        run.replayed.extend(replayed);
        drain(stack, c, *on_stream).await?;
        for k in 1..=sc.reruns {
            for (arn, name) in &redriven {
                rerun(c, &o.state_machine_arn, arn, name, &format!("r{round}{k}")).await?;
                run.reruns += 1;
            }
            drain(stack, c, *on_stream).await?;
        }
        if sc.reruns > 0 {
            for (arn, name) in &redriven {
                let status = c
                    .sfn
                    .describe_execution()
                    .execution_arn(arn)
                    .send()
                    .await?
                    .status()
                    .clone();
                if status != ExecutionStatus::Succeeded {
                    continue;
                }
                run.second_redrives.0 += 1;
                match c.sfn.redrive_execution().execution_arn(arn).send().await {
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_execution_not_redrivable()) =>
                    {
                        run.second_redrives.1 += 1;
                    }
                    Err(e) => return Err(e).with_context(|| format!("redriving {name} again")),
                    Ok(_) => wait_finished(c, [arn.as_str()]).await?,
                }
            }
        }
    }
    run.unrecovered = executions(c, &o.state_machine_arn)
        .await?
        .into_iter()
        .filter(|e| failed(&e.2) && !replaced.contains(&e.0))
        .map(|e| e.1)
        .collect();
    Ok(())
}

/// Starts a new execution with the input of the execution `arn` (named `name`), named
/// `{name}-{suffix}` with `name` cut to 74 characters (Step Functions allows 80).
async fn rerun(
    c: &Clients,
    state_machine: &str,
    arn: &str,
    name: &str,
    suffix: &str,
) -> Result<()> {
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
        .state_machine_arn(state_machine)
        .name(format!("{base}-{suffix}"))
        .input(input)
        .send()
        .await
        .with_context(|| format!("re-running {name}"))?;
    Ok(())
}

/// Waits until none of the executions `arns` is RUNNING.
async fn wait_finished<'a>(c: &Clients, arns: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    for arn in arns {
        loop {
            let status = c
                .sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await?
                .status()
                .clone();
            if status != ExecutionStatus::Running {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{arn} still running after {DRAIN_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
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
