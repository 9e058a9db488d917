//! The S3 archive against moto: one object per chunk at its deterministic key, a retry
//! overwrites it, every record (valid or not) is a JSON line in it (SPEC invariant 1), and
//! SSE-KMS is requested when a key is configured.

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use aws_sdk_s3::types::ServerSideEncryption;
use integration_tests::moto::{MotoS3 as _, MotoServer};
use inventory::adapters::s3::{ArchiveConfig, S3ObjectStore};
use inventory::ports::{Quarantine, QuarantinedRecord};
use inventory::{ChunkInput, ErrorKind, PipelineError, SourceRecord, steps};
use std::io::Read as _;

const FIXTURE: &str = include_str!("../fixtures/archive-chunk-input.json");

pub(crate) fn chunk() -> ChunkInput {
    serde_json::from_str(FIXTURE).expect("the fixture is a chunk")
}

fn store(moto: &MotoServer, bucket: &str, kms_key_id: Option<&str>) -> S3ObjectStore {
    let config = ArchiveConfig {
        bucket: bucket.to_owned(),
        kms_key_id: kms_key_id.map(str::to_owned),
    };
    S3ObjectStore::new(moto.s3_client(), config)
}

/// Every key in the bucket.
pub(crate) async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Vec<String>> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .context("listing the bucket")?;
    Ok(out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect())
}

/// The object's body, decompressed, one JSON value per line.
pub(crate) async fn lines(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Vec<serde_json::Value>> {
    let body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .context("the object is gzip")?;
    text.lines()
        .map(|l| serde_json::from_str(l).context("each line is JSON"))
        .collect()
}

#[tokio::test]
async fn a_chunk_is_one_object_at_its_deterministic_key_and_a_retry_overwrites_it() -> Result<()> {
    let moto = MotoServer::shared()?;
    let bucket = moto.create_bucket("archive-retry").await?;
    let store = store(moto, &bucket, None);
    let s3 = moto.s3_client();

    let first = steps::archive_chunk(&chunk(), &store).await?;
    let after_first = keys(&s3, &bucket).await?;
    let second = steps::archive_chunk(&chunk(), &store).await?;
    let after_retry = keys(&s3, &bucket).await?;

    assert_eq!(after_first, std::slice::from_ref(&first.key));
    assert_eq!(
        second, first,
        "a retry writes the same object at the same key"
    );
    assert_eq!(after_retry, after_first, "a retry adds no object");
    assert!(
        first
            .key
            .starts_with("raw/inventory-updates-dev/dt=2026-11-24/hour=07/"),
        "{}",
        first.key
    );
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(&first.key)
        .send()
        .await?;
    assert_eq!(head.content_type(), Some("application/x-ndjson"));
    assert_eq!(head.content_encoding(), Some("gzip"));
    assert_eq!(head.content_length(), Some(i64::try_from(first.bytes)?));
    assert_eq!(head.ssekms_key_id(), None);
    Ok(())
}

/// Quarantine that only counts, to tell the fixture's valid records from its invalid ones.
#[derive(Default)]
struct CountingQuarantine(std::sync::Mutex<usize>);

#[async_trait]
impl Quarantine for CountingQuarantine {
    async fn quarantine(&self, records: &[QuarantinedRecord]) -> Result<usize, PipelineError> {
        *self.0.lock().expect("not poisoned") += records.len();
        Ok(records.len())
    }
}

#[tokio::test]
async fn the_object_holds_every_record_valid_or_not_as_one_json_line() -> Result<()> {
    let moto = MotoServer::shared()?;
    let bucket = moto.create_bucket("archive-lines").await?;
    let input = chunk();
    let validated = steps::validate_chunk(
        &input,
        &CountingQuarantine::default(),
        crate::quarantine::soon_after(&input),
    )
    .await?;
    assert!(
        !validated.valid.is_empty() && !validated.rejected.is_empty(),
        "the fixture has both kinds"
    );

    let out = steps::archive_chunk(&input, &store(moto, &bucket, None)).await?;

    let lines = lines(&moto.s3_client(), &bucket, &out.key).await?;
    assert_eq!(lines.len(), input.records.len());
    assert_eq!(out.records, input.records.len());
    for (line, record) in lines.iter().zip(&input.records) {
        let archived: SourceRecord = serde_json::from_value(line.clone())?;
        assert_eq!(&archived, record, "the record exactly as delivered");
        assert_eq!(line["stream"], "inventory-updates-dev");
        assert_eq!(line["shard_id"], "shardId-000000000003");
    }
    Ok(())
}

#[tokio::test]
async fn sse_kms_with_a_bucket_key_is_requested_when_a_key_is_configured() -> Result<()> {
    // moto records the SSE-KMS settings and answers them back on HEAD; it does not check that
    // the key exists, so this shows what we ask S3 for, not that KMS accepted it.
    let moto = MotoServer::shared()?;
    let bucket = moto.create_bucket("archive-kms").await?;
    let key_id = "arn:aws:kms:us-east-1:123456789012:key/0b6a5c2e-4f1d-4c1b-9a57-3d9e0c1f2a7b";

    let out = steps::archive_chunk(&chunk(), &store(moto, &bucket, Some(key_id))).await?;

    let head = moto
        .s3_client()
        .head_object()
        .bucket(&bucket)
        .key(&out.key)
        .send()
        .await?;
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(head.ssekms_key_id(), Some(key_id));
    assert_eq!(head.bucket_key_enabled(), Some(true));
    Ok(())
}

#[tokio::test]
async fn a_missing_bucket_is_a_configuration_error() -> Result<()> {
    let moto = MotoServer::shared()?;
    let never_created = integration_tests::moto::unique_name("archive-missing");

    let e = steps::archive_chunk(&chunk(), &store(moto, &never_created, None))
        .await
        .expect_err("no bucket");

    assert_eq!(e.kind, ErrorKind::Misconfigured, "{}", e.detailed());
    assert!(e.message.contains("NoSuchBucket"), "{}", e.message);
    Ok(())
}
