//! `inventory rejections`: one supplier's rejected records since a time, read from the
//! rejections bucket exactly as that supplier's own AWS account reads them
//! (`rejections/{account}/{supplier}/`, see `inventory::steps::supplier_rejections`).

use super::replay_quarantine::fetch;
use crate::exit::{Outcome, WithOutcome as _, usage};
use crate::send::aws_error_text;
use crate::target::{Outputs, TargetArgs, sdk_config};
use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use inventory::RejectionKey;
use inventory::SupplierId;
use inventory::adapters::aws::s3_client;
use inventory::steps::supplier_rejections::{AccountId, RejectionNotice};
use std::collections::BTreeSet;
use std::io::Write as _;

/// Options of `inventory rejections`.
#[derive(Debug, Clone, clap::Args)]
pub struct RejectionsArgs {
    /// The supplier_id whose rejections to list.
    #[arg(long, value_name = "SUPPLIER_ID")]
    pub supplier: String,
    /// Records that reached the stream at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: DateTime<Utc>,
    /// The AWS account the supplier is mapped to (a supplier: its own account id). Default:
    /// found by listing rejections/, which only the platform's operators may do.
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub account: Option<String>,
    /// The rejections bucket. Default: RejectionsBucketName from --outputs.
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,
    /// One JSON object per rejection on stdout (the lines the supplier's objects hold).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// What was found for one supplier.
#[derive(Debug, Default)]
pub struct Found {
    /// Every rejection once, oldest first.
    pub notices: Vec<RejectionNotice>,
    pub objects: usize,
}

pub async fn run(args: RejectionsArgs) -> Result<Outcome> {
    let supplier = SupplierId::parse(&args.supplier)
        .map_err(|e| usage(format!("--supplier: {}", e.message)))?;
    let account = args
        .account
        .as_deref()
        .map(AccountId::parse)
        .transpose()
        .map_err(|e| usage(format!("--account: {e}")))?;
    let outputs = Outputs::read(&args.target)?;
    let bucket = outputs.pick(&args.bucket, "RejectionsBucketName", "--bucket")?;
    let conf = sdk_config(&args.target, &outputs).await;
    let s3 = s3_client(&conf);

    let accounts = match account {
        Some(a) => vec![a.as_str().to_owned()],
        None => account_prefixes(&s3, &bucket).await?,
    };
    let mut found = Found::default();
    for account in &accounts {
        let more = read(&s3, &bucket, account, &supplier, args.since).await?;
        found.objects += more.objects;
        found.notices.extend(more.notices);
    }
    let found = Found {
        notices: once_each_oldest_first(found.notices),
        objects: found.objects,
    };

    let mut out = std::io::stdout().lock();
    for n in &found.notices {
        if args.json {
            serde_json::to_writer(&mut out, n)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{} {}/{}/{}: {}: {}",
                n.arrived_at.to_rfc3339(),
                n.stream,
                n.shard_id,
                n.sequence_number,
                n.code.as_str(),
                n.message
            )?;
            match (&n.raw, &n.raw_base64) {
                (Some(raw), _) => writeln!(out, "    {}", on_one_line(raw))?,
                (None, Some(b64)) => writeln!(out, "    base64: {b64}")?,
                (None, None) => writeln!(out, "    (the record's bytes were not kept inline)")?,
            }
        }
    }
    out.flush()?;
    eprintln!(
        "rejections: {} of supplier {} since {} in s3://{bucket}/{} ({} objects read)",
        found.notices.len(),
        supplier.as_str(),
        args.since.to_rfc3339(),
        match accounts.as_slice() {
            [one] => RejectionKey::supplier_prefix(one, supplier.as_str()),
            _ => format!("{}*/{}/", RejectionKey::PREFIX, supplier.as_str()),
        },
        found.objects,
    );
    Ok(Outcome::Done)
}

/// The accounts that have a prefix under `rejections/` (an operator's listing; a supplier's
/// account may not list there and must give --account).
async fn account_prefixes(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Vec<String>> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(RejectionKey::PREFIX)
        .delimiter("/")
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|e| anyhow::anyhow!(aws_error_text(&e)))
            .with_context(|| {
                format!(
                    "listing s3://{bucket}/{} (a supplier gives its own account id with --account)",
                    RejectionKey::PREFIX
                )
            })
            .or_exit(Outcome::ServiceFailed)?;
        out.extend(page.common_prefixes().iter().filter_map(|p| {
            let p = p.prefix()?.strip_prefix(RejectionKey::PREFIX)?;
            Some(p.trim_end_matches('/').to_owned())
        }));
    }
    Ok(out)
}

/// The supplier's rejections under one account's prefix that arrived at or after `since`.
pub async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    account: &str,
    supplier: &SupplierId,
    since: DateTime<Utc>,
) -> Result<Found> {
    let prefix = RejectionKey::supplier_prefix(account, supplier.as_str());
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .start_after(RejectionKey::since(account, supplier.as_str(), since))
        .into_paginator()
        .send();
    let mut keys = Vec::new();
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
    let mut found = Found::default();
    for key in &keys {
        let body = fetch(s3, bucket, key)
            .await
            .with_context(|| format!("reading s3://{bucket}/{key}"))
            .or_exit(Outcome::ServiceFailed)?;
        found.objects += 1;
        for (n, line) in body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        {
            let notice: RejectionNotice = serde_json::from_slice(line)
                .with_context(|| format!("s3://{bucket}/{key}:{} is not a rejection", n + 1))
                .or_exit(Outcome::ServiceFailed)?;
            if notice.arrived_at >= since && notice.supplier_id == supplier.as_str() {
                found.notices.push(notice);
            }
        }
    }
    Ok(found)
}

/// Each stream position once (a retried chunk may have written a record twice), oldest first.
pub fn once_each_oldest_first(mut notices: Vec<RejectionNotice>) -> Vec<RejectionNotice> {
    let mut seen = BTreeSet::new();
    notices.retain(|n| {
        seen.insert((
            n.stream.clone(),
            n.shard_id.clone(),
            n.sequence_number.clone(),
        ))
    });
    notices.sort_by(|a, b| {
        a.arrived_at
            .cmp(&b.arrived_at)
            .then_with(|| a.shard_id.cmp(&b.shard_id))
            .then_with(|| {
                super::replay_dlq::compare_sequence(&a.sequence_number, &b.sequence_number)
            })
    });
    notices
}

/// The record as the supplier sent it, on one line: control characters (a newline, a
/// terminal escape) are written as escapes; everything else, quotes included, as it is.
fn on_one_line(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::RejectionCode;

    fn notice(seq: &str, second: i64) -> RejectionNotice {
        RejectionNotice {
            supplier_id: "acme".into(),
            stream: "s".into(),
            shard_id: "shardId-000000000000".into(),
            sequence_number: seq.into(),
            partition_key: "p".into(),
            arrived_at: DateTime::from_timestamp(second, 0).expect("time"),
            code: RejectionCode::NotJson,
            message: "m".into(),
            raw: Some("x".into()),
            raw_base64: None,
        }
    }

    #[test]
    fn a_record_written_twice_is_listed_once_and_the_oldest_comes_first() {
        let listed = once_each_oldest_first(vec![
            notice("30", 3),
            notice("9", 1),
            notice("30", 3),
            notice("10", 1),
        ]);
        let seqs: Vec<&str> = listed.iter().map(|n| n.sequence_number.as_str()).collect();
        assert_eq!(seqs, ["9", "10", "30"]);
    }

    #[test]
    fn a_record_is_shown_as_sent_with_only_its_control_characters_escaped() {
        assert_eq!(
            on_one_line(r#"{"product_id":"SKU-1","quantity":-1,"note":"café"}"#),
            r#"{"product_id":"SKU-1","quantity":-1,"note":"café"}"#
        );
        assert_eq!(on_one_line("a\nb\u{1b}[2Jc"), r"a\nb\u{1b}[2Jc");
    }
}
