//! Putting an in-memory feed on the stream, for tooling that holds its records already (the
//! fault suite). The sending itself is the supplier CLI's (`inventory_cli::send`): PutRecords
//! batches of at most 500 records and 5 MiB, partition key = product id, only failed entries
//! retried with backoff and jitter, and a product's records in feed order. The demo runs the
//! `inventory` binary itself, as a supplier would.

use anyhow::{Result, bail};
use inventory::feed::FeedRecord;
use inventory_cli::batch::Outgoing;
use inventory_cli::send::{Counters, SendOptions, send_all};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What pushing a feed took.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// Records accepted by the stream.
    pub sent: u64,
}

/// Pushes every record with `lanes_n` requests in flight; `sent` counts them as they are
/// accepted. Fails if any record could not be sent.
pub async fn push_lanes(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[FeedRecord],
    lanes_n: usize,
    sent: Arc<AtomicU64>,
) -> Result<PushReport> {
    let outgoing: Vec<Outgoing> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Outgoing {
            partition_key: r.partition_key.clone(),
            data: r.data.clone(),
            origin: format!("feed record {i}"),
        })
        .collect();
    let counters = Arc::new(Counters::default());
    let mirrored = Arc::new(AtomicU64::new(0));
    // Adds what was accepted since the last call to the caller's count.
    let catch_up = {
        let (counters, mirrored, sent) = (counters.clone(), mirrored.clone(), sent.clone());
        move || {
            let now = counters.sent.load(Ordering::Relaxed);
            let before = mirrored.swap(now, Ordering::Relaxed);
            sent.fetch_add(now.saturating_sub(before), Ordering::Relaxed);
        }
    };
    let mirror = {
        let catch_up = catch_up.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                catch_up();
            }
        })
    };
    // Several records of a product per request: these feeds carry occurred_at, so a copy
    // sent again to restore order after a partial failure is absorbed by idempotency.
    let opts = SendOptions {
        concurrency: lanes_n.max(1),
        per_product: inventory_cli::batch::MAX_BATCH_RECORDS,
        ..SendOptions::default()
    };
    let report = send_all(client, stream, &outgoing, &opts, &counters).await;
    mirror.abort();
    let _ = mirror.await;
    catch_up();
    if let Some(fatal) = &report.fatal {
        bail!("push stopped: {fatal}");
    }
    if let Some(first) = report.unsent.first() {
        bail!(
            "{} records were not sent, the first: {} ({})",
            report.unsent.len(),
            outgoing[first.index].origin,
            first.reason
        );
    }
    Ok(PushReport { sent: report.sent })
}
