//! `inventory reingest-archive`: the raw records archived for a time range, back through the
//! pipeline. Objects are found by the archive's key scheme (`raw/{stream}/dt=/hour=/`).

use super::replay_quarantine::fetch;
use super::sending::{SendArgs, send_and_report};
use crate::batch::Outgoing;
use crate::exit::{Outcome, WithOutcome as _, usage};
use crate::send::aws_error_text;
use crate::target::{Outputs, TargetArgs, sdk_config};
use anyhow::{Context as _, Result};
use base64::Engine as _;
use chrono::{DateTime, Duration, DurationRound as _, Utc};
use inventory::adapters::aws::s3_client;
use inventory::domain::keys::ArchiveKey;
use inventory::domain::update::with_arrival_time;
use inventory::domain::update::{SourcePosition, parse_record};
use inventory::steps::payloads::ObjectRef;
use serde::Deserialize;
use std::io::Read as _;

/// Options of `inventory reingest-archive`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReingestArchiveArgs {
    /// Start of the range (RFC 3339): archive hours from the one holding this time.
    #[arg(long, value_name = "TIME")]
    pub from: DateTime<Utc>,
    /// End of the range (RFC 3339, exclusive): hours before the one starting at this time.
    #[arg(long, value_name = "TIME")]
    pub to: DateTime<Utc>,
    /// The archive bucket. Default: ArchiveBucketName from --outputs.
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,
    /// The stream whose archive to read (its name is in the keys). Default: --stream.
    #[arg(long, value_name = "NAME")]
    pub source_stream: Option<String>,
    /// The stream to put the records on. Default: StreamName from --outputs.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Also records the contract rejects (they are in quarantine already and would be again).
    #[arg(long)]
    pub include_invalid: bool,
    /// Only list the objects and count their records; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub send: SendArgs,
}

/// One archive line: a stream record as the fan-out passed it on.
#[derive(Debug, Deserialize)]
struct ArchiveLine {
    shard_id: String,
    sequence_number: String,
    partition_key: String,
    arrived_at: DateTime<Utc>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_ref: Option<ObjectRef>,
}

/// The hour prefixes from the hour holding `from` up to (not including) `to`.
pub fn hour_prefixes(stream: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hour = from.duration_trunc(Duration::hours(1)).unwrap_or(from);
    while hour < to {
        let key = ArchiveKey::for_chunk(stream, hour, "x");
        if let Some((prefix, _)) = key.as_str().rsplit_once('/') {
            out.push(format!("{prefix}/"));
        }
        hour += Duration::hours(1);
    }
    out
}

pub async fn run(args: ReingestArchiveArgs) -> Result<Outcome> {
    if args.to <= args.from {
        return Err(usage("--to must be after --from"));
    }
    if args.to - args.from > Duration::days(31) {
        return Err(usage("the range is longer than 31 days; run it in parts"));
    }
    let outputs = Outputs::read(&args.target)?;
    let bucket = outputs.pick(&args.bucket, "ArchiveBucketName", "--bucket")?;
    let stream = outputs.pick(&args.stream, "StreamName", "--stream");
    let source = match (&args.source_stream, &stream) {
        (Some(s), _) => s.clone(),
        (None, Ok(s)) => s.clone(),
        (None, Err(_)) => {
            return Err(usage(
                "no --source-stream, --stream or outputs file with StreamName",
            ));
        }
    };
    let conf = sdk_config(&args.target, &outputs).await;
    let s3 = s3_client(&conf);

    let mut keys = Vec::new();
    for prefix in hour_prefixes(&source, args.from, args.to) {
        let mut pages = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| anyhow::anyhow!(aws_error_text(&e)))
                .with_context(|| format!("listing s3://{bucket}/{prefix}"))
                .or_exit(Outcome::ServiceFailed)?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
    }
    eprintln!(
        "reingest-archive: {} objects in s3://{bucket} for {source} from {} to {}",
        keys.len(),
        args.from,
        args.to
    );

    let now = SourcePosition {
        shard_id: "reingest".into(),
        sequence_number: "0".into(),
        arrived_at: Utc::now(),
    };
    let mut lines: Vec<(ArchiveLine, Vec<u8>, String)> = Vec::new();
    let (mut invalid, mut unreadable) = (0usize, 0usize);
    for key in &keys {
        let gz = fetch(&s3, &bucket, key)
            .await
            .with_context(|| format!("reading s3://{bucket}/{key}"))
            .or_exit(Outcome::ServiceFailed)?;
        let mut text = String::new();
        if let Err(e) = flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text) {
            eprintln!("s3://{bucket}/{key}: not gzip JSON lines ({e}); left out");
            unreadable += 1;
            continue;
        }
        for (n, raw) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let origin = format!("s3://{bucket}/{key}:{}", n + 1);
            let line: ArchiveLine = match serde_json::from_str(raw) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{origin}: not an archive line ({e}); left out");
                    unreadable += 1;
                    continue;
                }
            };
            let data = match (&line.data, &line.data_ref) {
                (Some(b64), _) => base64::engine::general_purpose::STANDARD.decode(b64).ok(),
                (None, Some(at)) => fetch(&s3, &at.bucket, &at.key).await.ok(),
                (None, None) => None,
            };
            let Some(data) = data else {
                eprintln!("{origin}: the record's bytes are not available; left out");
                unreadable += 1;
                continue;
            };
            if !args.include_invalid && parse_record(&data, &now).is_err() {
                invalid += 1;
                continue;
            }
            lines.push((line, data, origin));
        }
    }
    // Each shard's records in sequence order (a product's records share a shard).
    lines.sort_by(|a, b| {
        a.0.shard_id.cmp(&b.0.shard_id).then_with(|| {
            super::replay_dlq::compare_sequence(&a.0.sequence_number, &b.0.sequence_number)
        })
    });
    lines.dedup_by(|a, b| {
        a.0.shard_id == b.0.shard_id && a.0.sequence_number == b.0.sequence_number
    });
    let first = lines.iter().map(|l| l.0.arrived_at).min();
    let last = lines.iter().map(|l| l.0.arrived_at).max();
    eprintln!(
        "reingest-archive: {} records to send (arrived {} to {}); left out: {invalid} the contract rejects, {unreadable} unreadable",
        lines.len(),
        first.map_or("-".into(), |t| t.to_rfc3339()),
        last.map_or("-".into(), |t| t.to_rfc3339()),
    );
    if args.dry_run {
        eprintln!("reingest-archive: dry run, nothing sent");
        return Ok(Outcome::Done);
    }
    if lines.is_empty() {
        return Ok(if unreadable > 0 {
            Outcome::NotSent
        } else {
            Outcome::Done
        });
    }
    let stream = stream?;
    let records: Vec<Outgoing> = lines
        .into_iter()
        .map(|(line, data, origin)| Outgoing {
            partition_key: line.partition_key,
            data: with_arrival_time(&data, line.arrived_at),
            origin,
        })
        .collect();
    let client = aws_sdk_kinesis::Client::new(&conf);
    let (_, outcome) =
        send_and_report("reingest-archive", &client, &stream, &records, &args.send).await?;
    Ok(if outcome == Outcome::Done && unreadable > 0 {
        Outcome::NotSent
    } else {
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn a_range_lists_every_hour_it_touches_by_the_archive_key_scheme() {
        let from = Utc
            .with_ymd_and_hms(2026, 11, 23, 22, 30, 0)
            .single()
            .expect("time");
        let to = Utc
            .with_ymd_and_hms(2026, 11, 24, 1, 0, 0)
            .single()
            .expect("time");
        assert_eq!(
            hour_prefixes("s", from, to),
            vec![
                "raw/s/dt=2026-11-23/hour=22/",
                "raw/s/dt=2026-11-23/hour=23/",
                "raw/s/dt=2026-11-24/hour=00/",
            ]
        );
    }
}
