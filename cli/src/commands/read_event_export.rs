//! `inventory read-event-export`: the events of a day that left the database (the event
//! store's retention), read back from the archive bucket and checked against the day's
//! manifest before a line is printed.

use super::replay_quarantine::fetch;
use crate::exit::{Outcome, WithOutcome as _};
use crate::target::{Outputs, TargetArgs, sdk_config};
use anyhow::{Context as _, Result, bail};
use chrono::NaiveDate;
use inventory::adapters::aws::s3_client;
use inventory::domain::retention::{Checksum, Manifest, manifest_key};
use std::io::Write as _;

/// Options of `inventory read-event-export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadEventExportArgs {
    /// The day (UTC, YYYY-MM-DD) whose events to read.
    #[arg(long, value_name = "DAY")]
    pub day: NaiveDate,
    /// The archive bucket. Default: ArchiveBucketName from --outputs.
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,
    /// Only check the export against its manifest and print the figures; no events.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub async fn run(args: ReadEventExportArgs) -> Result<Outcome> {
    let outputs = Outputs::read(&args.target)?;
    let bucket = outputs.pick(&args.bucket, "ArchiveBucketName", "--bucket")?;
    let conf = sdk_config(&args.target, &outputs).await;
    let s3 = s3_client(&conf);
    let key = manifest_key(args.day);
    let manifest: Manifest = serde_json::from_slice(
        &fetch(&s3, &bucket, &key)
            .await
            .with_context(|| {
                format!(
                    "reading s3://{bucket}/{key}: no export of {} (the day is still in the database, or was never retired), or it is in an archive storage class and needs `aws s3api restore-object` first",
                    args.day
                )
            })
            .or_exit(Outcome::ServiceFailed)?,
    )
    .with_context(|| format!("s3://{bucket}/{key} is not an export manifest"))?;
    manifest.check()?;
    let mut out = std::io::stdout().lock();
    for part in &manifest.parts {
        let body = fetch(&s3, &bucket, &part.key)
            .await
            .with_context(|| format!("reading s3://{bucket}/{}", part.key))
            .or_exit(Outcome::ServiceFailed)?;
        let (checksum, lines) = Checksum::of_gzip_lines(&body)?;
        if checksum != part.checksum {
            bail!(
                "s3://{bucket}/{} holds {} events (checksum {}), its manifest says {} ({}): the export is damaged; nothing printed from it",
                part.key,
                checksum.events,
                checksum.sum,
                part.checksum.events,
                part.checksum.sum
            );
        }
        if !args.check {
            for line in lines {
                writeln!(out, "{line}")?;
            }
        }
    }
    eprintln!(
        "read-event-export: {} events of {} ({} parts) in s3://{bucket}/{}, each part's count and checksum as the manifest says",
        manifest.checksum.events,
        manifest.day,
        manifest.parts.len(),
        inventory::domain::retention::day_prefix(manifest.day)
    );
    Ok(Outcome::Done)
}
