//! `inventory replay-quarantine`: quarantined records back onto the stream after a fix, with
//! filters, each sent row marked so a re-run does not send it again.

use super::sending::{SendArgs, send_and_report};
use crate::batch::Outgoing;
use crate::exit::{Outcome, WithOutcome as _, usage};
use crate::target::{Outputs, TargetArgs, connect_database, sdk_config};
use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use inventory::adapters::aws::s3_client;
use inventory::adapters::postgres::entity::quarantined_record::{Column, Entity};
use inventory::adapters::postgres::{QuarantineEntry, list_quarantine};
use inventory::domain::rejection::RejectionCode;
use inventory::domain::update::with_arrival_time;
use inventory::domain::update::{SourcePosition, parse_record};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, DatabaseConnection, EntityTrait as _, QueryFilter as _};
use std::collections::BTreeMap;

/// Options of `inventory replay-quarantine`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayQuarantineArgs {
    /// Only records quarantined for this reason code (repeat for several), e.g. currency_unknown.
    #[arg(long = "reason", value_name = "CODE")]
    pub reasons: Vec<String>,
    /// Only records of this supplier (repeat for several); `unspecified` for records without one.
    #[arg(long = "supplier", value_name = "ID")]
    pub suppliers: Vec<String>,
    /// Only records that arrived on the stream at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<DateTime<Utc>>,
    /// Only records that arrived on the stream before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<DateTime<Utc>>,
    /// Also records already replayed by an earlier run.
    #[arg(long)]
    pub include_replayed: bool,
    /// Also records this build's contract still rejects (they will be quarantined again).
    #[arg(long)]
    pub include_invalid: bool,
    /// At most this many records.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only list what would be replayed; send and mark nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The Kinesis stream. Default: StreamName from --outputs.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// PostgreSQL URL. Default: LocalDatabaseUrl from --outputs, else the functions' variables.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub send: SendArgs,
}

const PAGE: u64 = 1_000;

/// The supplier a raw record names (`unspecified` when it names none).
pub(crate) fn supplier_of(raw: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v.get("supplier_id")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            inventory::domain::ids::SupplierId::unspecified()
                .as_str()
                .to_owned()
        })
}

pub async fn run(args: ReplayQuarantineArgs) -> Result<Outcome> {
    let reasons: Vec<RejectionCode> = args
        .reasons
        .iter()
        .map(|r| {
            serde_json::from_value(serde_json::Value::String(r.clone()))
                .map_err(|_| usage(format!("--reason {r}: not a rejection code")))
        })
        .collect::<Result<_>>()?;
    let outputs = Outputs::read(&args.target)?;
    let conf = sdk_config(&args.target, &outputs).await;
    let db = connect_database(&args.database_url, &outputs, &conf).await?;

    let mut chosen: Vec<(QuarantineEntry, Vec<u8>)> = Vec::new();
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    let mut after = 0;
    let s3 = s3_client(&conf);
    let now = SourcePosition {
        shard_id: "replay".into(),
        sequence_number: "0".into(),
        arrived_at: Utc::now(),
    };
    'pages: loop {
        let page = list_quarantine(&db, after, PAGE)
            .await
            .context("reading the quarantine")
            .or_exit(Outcome::ServiceFailed)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for entry in page {
            let r = &entry.record;
            if !reasons.is_empty() && !reasons.contains(&r.reason.code)
                || args.since.is_some_and(|t| r.arrived_at < t)
                || args.until.is_some_and(|t| r.arrived_at >= t)
            {
                continue;
            }
            if entry.replayed_at.is_some() && !args.include_replayed {
                *skipped.entry("already replayed").or_default() += 1;
                continue;
            }
            let raw = match (&r.raw, &r.payload_ref) {
                (Some(raw), _) => raw.clone(),
                (None, Some(at)) => match fetch(&s3, &at.bucket, &at.key).await {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        eprintln!(
                            "quarantine {}: payload at s3://{}/{} unavailable: {e:#}",
                            entry.id, at.bucket, at.key
                        );
                        *skipped.entry("payload unavailable").or_default() += 1;
                        continue;
                    }
                },
                (None, None) => {
                    *skipped.entry("no payload kept").or_default() += 1;
                    continue;
                }
            };
            if !args.suppliers.is_empty() && !args.suppliers.contains(&supplier_of(&raw)) {
                continue;
            }
            if !args.include_invalid
                && let Err(rejection) = parse_record(&raw, &now)
            {
                eprintln!(
                    "quarantine {}: still invalid: {}: {}",
                    entry.id, rejection.code, rejection.message
                );
                *skipped.entry("still invalid").or_default() += 1;
                continue;
            }
            chosen.push((entry, raw));
            if args.limit.is_some_and(|n| chosen.len() >= n) {
                break 'pages;
            }
        }
    }
    let skipped_text: Vec<String> = skipped.iter().map(|(k, n)| format!("{n} {k}")).collect();
    eprintln!(
        "replay-quarantine: {} records to replay{}",
        chosen.len(),
        if skipped_text.is_empty() {
            String::new()
        } else {
            format!(" (left out: {})", skipped_text.join(", "))
        }
    );
    if args.dry_run {
        for (entry, _) in chosen.iter().take(50) {
            let r = &entry.record;
            eprintln!(
                "  quarantine {}: {} {}/{} arrived {} ({})",
                entry.id, r.stream, r.shard_id, r.sequence_number, r.arrived_at, r.reason.code
            );
        }
        eprintln!("replay-quarantine: dry run, nothing sent or marked");
        return Ok(Outcome::Done);
    }
    if chosen.is_empty() {
        return Ok(Outcome::Done);
    }
    let stream = outputs.pick(&args.stream, "StreamName", "--stream")?;
    let records: Vec<Outgoing> = chosen
        .iter()
        .map(|(e, raw)| Outgoing {
            partition_key: e.record.partition_key.clone(),
            data: with_arrival_time(raw, e.record.arrived_at),
            origin: format!("quarantine {}", e.id),
        })
        .collect();
    let client = aws_sdk_kinesis::Client::new(&conf);
    let (report, outcome) =
        send_and_report("replay-quarantine", &client, &stream, &records, &args.send).await?;
    let unsent: std::collections::HashSet<usize> = report.unsent.iter().map(|u| u.index).collect();
    let sent_ids: Vec<i64> = chosen
        .iter()
        .enumerate()
        .filter(|(i, _)| !unsent.contains(i))
        .map(|(_, (e, _))| e.id)
        .collect();
    mark_replayed(&db, &sent_ids)
        .await
        .context("marking the replayed records (they were sent; a re-run would send them again)")
        .or_exit(Outcome::ServiceFailed)?;
    eprintln!("replay-quarantine: {} rows marked replayed", sent_ids.len());
    Ok(outcome)
}

/// Sets `replayed_at` on the rows sent.
async fn mark_replayed(db: &DatabaseConnection, ids: &[i64]) -> Result<()> {
    for chunk in ids.chunks(1_000) {
        Entity::update_many()
            .col_expr(Column::ReplayedAt, Expr::value(Utc::now()))
            .filter(Column::Id.is_in(chunk.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// An S3 object's bytes.
pub async fn fetch(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(crate::send::aws_error_text(&e)))?;
    Ok(object
        .body
        .collect()
        .await
        .context("reading the object")?
        .into_bytes()
        .to_vec())
}
