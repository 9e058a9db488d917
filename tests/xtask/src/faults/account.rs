//! The accounting after a scenario: every record on the stream followed into the archive,
//! the event store or the quarantine, and the seven SPEC invariants checked against
//! PostgreSQL, Redis and the S3 emulator. The projection, quarantine counts and cache fences
//! are compared by the demo's own checker ([`crate::demo::check`]).

use super::drive::{Clients, Run, executions};
use crate::demo::check;
use crate::stack::Outputs;
use anyhow::{Context, Result};
use aws_sdk_kinesis::types::ShardIteratorType;
use inventory::SourcePosition;
use inventory::domain::update::parse_record;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A scenario's figures and what went wrong (nothing, if it passed).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    /// Distinct valid updates on the stream that are in the event store.
    pub applied: u64,
    /// Stream records rejected and kept in quarantine.
    pub quarantined: u64,
    /// Records sent but not archived, or valid and not in the event store, or bad and not
    /// quarantined.
    pub lost: u64,
    /// Effects found twice: an event or quarantine row per key or position, an archive line
    /// per position, an event for no update on the stream.
    pub double_applied: u64,
    /// `(invariant number, what is wrong)`.
    pub problems: Vec<(u8, String)>,
}

/// 256 KiB, Step Functions' payload limit.
const PAYLOAD_LIMIT: usize = 256 * 1024;

pub async fn tally(o: &Outputs, c: &Clients, run: &Run) -> Result<Tally> {
    let mut t = Tally {
        sent: run.sent.len() as u64,
        ..Tally::default()
    };
    let stream = read_stream(c, &o.stream_name).await?;
    let archived = archive_positions(&c.s3, &o.archive_bucket_name).await?;
    let db = Database::connect(&o.local_database_url)
        .await
        .context("connecting to the stack's database")?;
    let q = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_owned());
    let mut events: HashMap<String, i64> = HashMap::new();
    for row in db
        .query_all_raw(q(
            "SELECT update_key, count(*) AS n FROM inventory_events GROUP BY update_key",
        ))
        .await?
    {
        events.insert(row.try_get("", "update_key")?, row.try_get("", "n")?);
    }
    let mut quarantine: HashMap<(String, String), (String, i64)> = HashMap::new();
    for row in db
        .query_all_raw(q("SELECT shard_id, sequence_number, min(reason_code) AS code, count(*) AS n FROM quarantined_records GROUP BY shard_id, sequence_number"))
        .await?
    {
        quarantine.insert(
            (row.try_get("", "shard_id")?, row.try_get("", "sequence_number")?),
            (row.try_get("", "code")?, row.try_get("", "n")?),
        );
    }

    // 1. Nothing lost, record by record; 5. every rejection with the parser's reason.
    let mut valid_keys = HashSet::new();
    let mut on_stream: HashMap<&[u8], u64> = HashMap::new();
    let mut wrong_reason = Vec::new();
    let mut lost_examples = Vec::new();
    for r in &stream {
        *on_stream.entry(r.data.as_slice()).or_default() += 1;
        let pos = (r.shard.clone(), r.seq.clone());
        let source = SourcePosition {
            shard_id: r.shard.clone(),
            sequence_number: r.seq.clone(),
            arrived_at: r.arrived_at,
        };
        let replayed = run.replayed.contains(&pos);
        let parsed = parse_record(&r.data, &source);
        let kept = match &parsed {
            Ok(u) => {
                valid_keys.insert(u.update_key.to_string());
                events.contains_key(u.update_key.as_str())
            }
            Err(_) if replayed => true, // its copy is the one that counts
            Err(rejection) => match quarantine.get(&pos) {
                Some((code, _)) => {
                    t.quarantined += 1;
                    if code != rejection.code.as_str() {
                        wrong_reason.push(format!(
                            "{pos:?} quarantined as {code}, the parser says {}",
                            rejection.code.as_str()
                        ));
                    }
                    true
                }
                None => false,
            },
        };
        let archived_ok = replayed || archived.contains_key(&pos);
        if !(kept && archived_ok) {
            t.lost += 1;
            let store = if parsed.is_ok() {
                "valid, in the event store"
            } else {
                "rejected, in quarantine"
            };
            lost_examples.push(format!(
                "{pos:?} (key {}): archived {archived_ok}, {store} {kept}",
                r.partition_key
            ));
        }
    }
    let mut sent_by_data: HashMap<&[u8], u64> = HashMap::new();
    for r in &run.sent {
        *sent_by_data.entry(r.data.as_slice()).or_default() += 1;
    }
    for (data, n) in sent_by_data {
        let got = on_stream.get(data).copied().unwrap_or(0);
        if got < n {
            t.lost += n - got;
            lost_examples.push(format!("{} sent records never reached the stream", n - got));
        }
    }
    t.applied = valid_keys
        .iter()
        .filter(|k| events.contains_key(*k))
        .count() as u64;
    if t.lost > 0 {
        t.problems.push((
            1,
            format!(
                "{} records lost, e.g. {:?}",
                t.lost,
                &lost_examples[..lost_examples.len().min(3)]
            ),
        ));
    }

    // 2. Exactly-once effect.
    let dup_events: i64 = events.values().map(|n| n - 1).sum();
    let phantom = events.keys().filter(|k| !valid_keys.contains(*k)).count() as u64;
    let positions: HashSet<(String, String)> = stream
        .iter()
        .map(|r| (r.shard.clone(), r.seq.clone()))
        .collect();
    let dup_quarantine: i64 = quarantine.values().map(|(_, n)| n - 1).sum();
    let stray_quarantine = quarantine
        .keys()
        .filter(|p| !positions.contains(*p))
        .count() as u64;
    let dup_archive: u64 = archived.values().map(|n| n - 1).sum();
    t.double_applied = dup_events.max(0) as u64
        + phantom
        + dup_quarantine.max(0) as u64
        + stray_quarantine
        + dup_archive;
    if t.double_applied > 0 {
        t.problems.push((2, format!(
            "effects twice: {dup_events} duplicate events, {phantom} events for no update on the stream, {dup_quarantine} duplicate quarantine rows, {stray_quarantine} quarantine rows for no stream record, {dup_archive} records archived twice"
        )));
    }

    // 3, 4 (and counts for 1): the demo's checker, against the domain's projection of
    // everything sent. Records replayed from the on-failure queue are on the stream twice
    // but archived once.
    let exp = inventory::feed::expected_state(&run.sent, chrono::Utc::now());
    let end = check::read(o, &c.s3).await?;
    let delivered = (stream.len() - run.replayed.len()) as u64;
    for p in check::compare(&exp, &end, t.sent, delivered) {
        let n = match p {
            check::Problem::Projection(_) => 3,
            check::Problem::CacheFence { .. } => 4,
            check::Problem::Count(_) => 1,
        };
        t.problems.push((n, p.to_string()));
    }

    // 5. Bad input never stops good input.
    for w in wrong_reason.iter().take(3) {
        t.problems.push((5, w.clone()));
    }
    if !run.unrecovered.is_empty() {
        t.problems.push((
            5,
            format!(
                "executions still failed after recovery: {:?}",
                run.unrecovered
            ),
        ));
    }
    let panics = panics(Path::new(&o.local_state_dir).join("logs").as_path());
    if panics > 0 {
        t.problems
            .push((5, format!("{panics} panics in the functions' logs")));
    }

    // 6. No state-machine payload reaches 256 KiB.
    for (arn, name, _) in executions(c, &o.state_machine_arn).await? {
        let d = c
            .sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await?;
        let (input, output) = (
            d.input().map_or(0, str::len),
            d.output().map_or(0, str::len),
        );
        if input.max(output) >= PAYLOAD_LIMIT {
            t.problems
                .push((6, format!("{name}: input {input} B, output {output} B")));
        }
    }

    // 7. Events are the truth: a rebuild from the event store alone (every event, no snapshot)
    // gives the same projection.
    inventory::adapters::postgres::rebuild_projection_from(
        &db,
        inventory::adapters::postgres::RebuildFrom::FirstEvent,
        |_| async {},
    )
    .await
    .context("rebuilding the projection")?;
    db.close().await.ok();
    let rebuilt = check::read(o, &c.s3).await?;
    if rebuilt.offers != end.offers || rebuilt.summaries != end.summaries {
        let differ = end
            .summaries
            .iter()
            .filter(|(p, s)| rebuilt.summaries.get(*p) != Some(*s))
            .count();
        t.problems.push((
            7,
            format!(
                "the rebuilt projection differs: {} offers before, {} after; {differ} summaries differ",
                end.offers.len(),
                rebuilt.offers.len()
            ),
        ));
    }
    Ok(t)
}

/// Lines in the functions' logs that report a panic.
fn panics(logs: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(logs) else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "cargo-lambda.log" && e.file_name() != "moto.log")
        .filter_map(|e| std::fs::read(e.path()).ok())
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| l.contains("panicked at"))
                .count()
        })
        .sum()
}

/// One record as the stream holds it.
pub struct StreamRecord {
    pub shard: String,
    pub seq: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub arrived_at: chrono::DateTime<chrono::Utc>,
}

/// Every record on every shard, from the start.
async fn read_stream(c: &Clients, stream: &str) -> Result<Vec<StreamRecord>> {
    let shards = c.kinesis.list_shards().stream_name(stream).send().await?;
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut iterator = c
            .kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?
            .shard_iterator()
            .map(str::to_owned);
        while let Some(it) = iterator {
            let page = c
                .kinesis
                .get_records()
                .shard_iterator(it)
                .limit(5000)
                .send()
                .await?;
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                out.push(StreamRecord {
                    shard: shard.shard_id().to_owned(),
                    seq: r.sequence_number().to_owned(),
                    partition_key: r.partition_key().to_owned(),
                    data: r.data().as_ref().to_vec(),
                    arrived_at: r
                        .approximate_arrival_timestamp()
                        .and_then(|t| t.to_millis().ok())
                        .and_then(chrono::DateTime::from_timestamp_millis)
                        .unwrap_or_else(chrono::Utc::now),
                });
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    Ok(out)
}

/// How many archive lines hold each stream position.
async fn archive_positions(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<HashMap<(String, String), u64>> {
    let mut out = HashMap::new();
    for (key, text) in check::archive_texts(s3, bucket).await? {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("a line of {key}"))?;
            let pos = (
                v["shard_id"].as_str().unwrap_or_default().to_owned(),
                v["sequence_number"].as_str().unwrap_or_default().to_owned(),
            );
            *out.entry(pos).or_default() += 1;
        }
    }
    Ok(out)
}
