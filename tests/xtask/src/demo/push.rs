//! Putting a feed on the stream: `PutRecords` batches of at most 500 records and 5 MiB,
//! partition key = product id, retrying only the entries that failed, with backoff. Records
//! are split into lanes by partition key; each lane sends its batches one after another, so a
//! product's updates reach the stream in feed order while the lanes run side by side.

use anyhow::{Context, Result, bail};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use inventory::feed::FeedRecord;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const MAX_BATCH_RECORDS: usize = 500;
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
const MAX_ATTEMPTS: u32 = 10;

/// What pushing a feed took.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    pub sent: u64,
    pub calls: u64,
    pub retried_entries: u64,
}

/// Splits records into `PutRecords` batches by count and size (data plus partition key).
pub fn batches(records: &[FeedRecord]) -> Vec<&[FeedRecord]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let size = r.data.len() + r.partition_key.len();
        if i > start && (i - start == MAX_BATCH_RECORDS || bytes + size > MAX_BATCH_BYTES) {
            out.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

/// Splits records into `n` lanes by partition key, keeping their order within each lane.
pub fn lanes(records: &[FeedRecord], n: usize) -> Vec<Vec<FeedRecord>> {
    let mut out = vec![Vec::new(); n.max(1)];
    for r in records {
        let h = r
            .partition_key
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        let lane = (h % out.len() as u64) as usize;
        out[lane].push(r.clone());
    }
    out
}

/// Pushes every record over `lanes_n` concurrent lanes; `sent` counts them as they are accepted.
pub async fn push_lanes(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[FeedRecord],
    lanes_n: usize,
    sent: Arc<AtomicU64>,
) -> Result<PushReport> {
    let mut set = tokio::task::JoinSet::new();
    for lane in lanes(records, lanes_n) {
        let (client, stream, sent) = (client.clone(), stream.to_owned(), sent.clone());
        set.spawn(async move { push(&client, &stream, &lane, sent).await });
    }
    let mut total = PushReport::default();
    while let Some(r) = set.join_next().await {
        let r = r??;
        total.sent += r.sent;
        total.calls += r.calls;
        total.retried_entries += r.retried_entries;
    }
    Ok(total)
}

/// Pushes every record in order; `sent` counts them as they are accepted.
pub async fn push(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[FeedRecord],
    sent: Arc<AtomicU64>,
) -> Result<PushReport> {
    let mut report = PushReport::default();
    for batch in batches(records) {
        let mut pending: Vec<&FeedRecord> = batch.iter().collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            if attempt > MAX_ATTEMPTS {
                bail!(
                    "{} records still failing after {MAX_ATTEMPTS} attempts",
                    pending.len()
                );
            }
            let entries: Vec<PutRecordsRequestEntry> = pending
                .iter()
                .map(|r| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(r.data.clone()))
                        .partition_key(&r.partition_key)
                        .build()
                })
                .collect::<Result<_, _>>()?;
            report.calls += 1;
            let out = match client
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if attempt < MAX_ATTEMPTS => {
                    eprintln!("\npush: PutRecords failed ({e}); retrying the batch");
                    backoff(attempt).await;
                    continue;
                }
                Err(e) => return Err(e).context("PutRecords"),
            };
            let results = out.records();
            let failed: Vec<&FeedRecord> = pending
                .iter()
                .zip(results)
                .filter(|(_, res)| res.error_code().is_some())
                .map(|(r, _)| *r)
                .collect();
            let ok = (pending.len() - failed.len()) as u64;
            report.sent += ok;
            sent.fetch_add(ok, Ordering::Relaxed);
            if !failed.is_empty() {
                report.retried_entries += failed.len() as u64;
                backoff(attempt).await;
            }
            pending = failed;
        }
    }
    Ok(report)
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt.min(7)))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::feed::RecordKind;

    fn rec(bytes: usize) -> FeedRecord {
        FeedRecord {
            partition_key: "p".into(),
            data: vec![b'x'; bytes],
            kind: RecordKind::Update,
        }
    }

    #[test]
    fn lanes_keep_each_partition_keys_records_together_and_in_order() {
        let records: Vec<FeedRecord> = (0..100)
            .map(|i| FeedRecord {
                partition_key: format!("p{}", i % 7),
                data: vec![i as u8],
                kind: RecordKind::Update,
            })
            .collect();
        let lanes = lanes(&records, 3);
        assert_eq!(lanes.iter().map(Vec::len).sum::<usize>(), 100);
        for lane in &lanes {
            for key in lane.iter().map(|r| &r.partition_key) {
                assert!(
                    lanes
                        .iter()
                        .filter(|l| l.iter().any(|r| &r.partition_key == key))
                        .count()
                        == 1,
                    "{key} in two lanes"
                );
            }
            for pair in lane
                .windows(2)
                .filter(|w| w[0].partition_key == w[1].partition_key)
            {
                assert!(pair[0].data[0] < pair[1].data[0], "order kept within a key");
            }
        }
    }

    #[test]
    fn batches_respect_the_record_and_byte_limits_and_keep_order() {
        let small: Vec<FeedRecord> = (0..1_201).map(|_| rec(100)).collect();
        let b = batches(&small);
        assert_eq!(
            b.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![500, 500, 201]
        );
        let big: Vec<FeedRecord> = (0..12).map(|_| rec(1024 * 1024)).collect();
        let b = batches(&big);
        assert!(
            b.iter()
                .all(|b| b.iter().map(|r| r.data.len() + 1).sum::<usize>() <= MAX_BATCH_BYTES)
        );
        assert_eq!(b.iter().map(|b| b.len()).sum::<usize>(), 12);
        assert!(batches(&[]).is_empty());
    }
}
