//! Measures what docs/cost.md's model needs, with the pipeline's own code: the bytes of a
//! supplier record, of the same record inside a chunk's execution input, how many records a
//! chunk holds, how many chunks (executions) one fan-out batch becomes, and the gzip archive
//! bytes per record.
//!
//! ```sh
//! cargo run -p inventory --example chunk_sizes            # batches of 500 (FanoutBatchSize)
//! cargo run -p inventory --example chunk_sizes -- 1000    # another batch size
//! cargo run -p inventory --example chunk_sizes -- 500 events.tsv
//! ```
//!
//! With a file name it also writes, for the generator's feed, the `inventory_events` rows that
//! persist would insert (tab-separated, as `COPY` reads them: update_key, product_id,
//! supplier_id, occurred_at, quantity, price, currency, occurred_at_from_supplier, update_id,
//! source_shard_id, source_sequence_number, source_arrived_at), for loading into a scratch database with the event store's schema and measuring
//! the bytes per event there (docs/cost.md says how).
//!
//! Two feeds: the generator's (`inventory generate`, no bad records or duplicates: the full
//! form with supplier, update id and time, 10% in the brief's short form) and records of the
//! brief's example form only (`{"product_id": .., "inventory": .., "price": ..}`). Stream
//! positions look like Kinesis's: 56-digit sequence numbers and millisecond arrival times,
//! 417 records a second on the shard (100x the brief's rate over 4 shards).

use chrono::{Duration, SubsecRound as _, Utc};
use inventory::InventoryUpdateReceived;
use inventory::domain::update::{SourcePosition, parse_record};
use inventory::feed::{FeedSpec, generate};
use inventory::steps::encode_archive;
use inventory::steps::fanout::{StreamRecord, plan_chunks};
use inventory::steps::payloads::MAX_CHUNK_PAYLOAD_BYTES;
use std::io::Write as _;

const STREAM: &str = "inventory-updates-prod";
const SHARD: &str = "shardId-000000000003";

fn stream_records(feed: &[(String, Vec<u8>)]) -> Vec<StreamRecord> {
    // From now, to the second: the generator's times are recent, and an update whose time is
    // after its arrival is rejected (so none would be written out as an event row).
    let start = Utc::now().trunc_subsecs(0);
    feed.iter()
        .enumerate()
        .map(|(i, (key, data))| StreamRecord {
            stream: STREAM.into(),
            shard_id: SHARD.into(),
            // Kinesis sequence numbers: 56 digits, rising within a shard.
            sequence_number: format!("4965812733026431797829018446398163459157{:016}", i * 7919),
            partition_key: key.clone(),
            // 417 a second, to the millisecond (as the fan-out gets it from Lambda).
            arrived_at: start + Duration::milliseconds(i as i64 * 2_398 / 1_000),
            data: data.clone(),
        })
        .collect()
}

fn measure(name: &str, feed: &[(String, Vec<u8>)], batch: usize) {
    let raw: usize = feed.iter().map(|(_, d)| d.len()).sum();
    let records = stream_records(feed);
    let (mut chunks, mut in_chunks, mut input_bytes, mut gz_bytes) = (0usize, 0usize, 0usize, 0);
    for part in records.chunks(batch) {
        let planned = plan_chunks(part.to_vec(), "inventory-archive-prod-123456789012")
            .unwrap_or_else(|e| panic!("planning a batch: {e}"));
        chunks += planned.len();
        for c in &planned {
            in_chunks += c.input.records.len();
            input_bytes += c.input_json.len();
            gz_bytes += encode_archive(&c.input)
                .unwrap_or_else(|e| panic!("encoding the archive: {e}"))
                .len();
        }
    }
    // Records per full chunk: one batch as large as the whole feed, cut greedily (the last
    // chunk, which is not full, left out).
    let full = plan_chunks(records.clone(), "inventory-archive-prod-123456789012")
        .unwrap_or_else(|e| panic!("planning: {e}"));
    let sizes: Vec<usize> = full.iter().map(|c| c.input.records.len()).collect();
    let full_sizes = &sizes[..sizes.len().saturating_sub(1)];
    let full_mean = full_sizes.iter().sum::<usize>() as f64 / full_sizes.len().max(1) as f64;
    let n = feed.len() as f64;
    println!("{name}: {} records", feed.len());
    println!("  record bytes (as sent):            {:.1}", raw as f64 / n);
    println!(
        "  bytes per record in a chunk input: {:.1}",
        input_bytes as f64 / in_chunks as f64
    );
    println!(
        "  records per full chunk ({MAX_CHUNK_PAYLOAD_BYTES} B):   {full_mean:.1} (min {}, max {})",
        full_sizes.iter().min().unwrap_or(&0),
        full_sizes.iter().max().unwrap_or(&0),
    );
    println!(
        "  batches of {batch}: {} batches -> {chunks} chunks = {:.3} executions per batch, {:.1} records per execution",
        records.len().div_ceil(batch),
        chunks as f64 / records.len().div_ceil(batch) as f64,
        n / chunks as f64
    );
    println!(
        "  archive gzip bytes per record:     {:.1} (objects of {:.0} bytes on average)",
        gz_bytes as f64 / n,
        gz_bytes as f64 / chunks as f64
    );
}

/// The example's arguments (after `--`).
#[derive(Debug, clap::Parser)]
#[command(about = "The bytes and counts docs/cost.md's model needs")]
struct Args {
    /// Records per fan-out batch (the template's FanoutBatchSize).
    #[arg(default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Also write the event rows persist would insert for the generator's feed to this file.
    events_tsv: Option<String>,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let spec = FeedSpec {
        updates: 100_000,
        duplicate_share: 0.0,
        bad_share: 0.0,
        ..FeedSpec::default()
    };
    let feed: Vec<(String, Vec<u8>)> = generate(&spec)
        .into_iter()
        .map(|r| (r.partition_key, r.data))
        .collect();
    measure(
        "generator feed (inventory generate --bad 0 --duplicates 0)",
        &feed,
        batch,
    );
    let brief: Vec<(String, Vec<u8>)> = feed
        .iter()
        .enumerate()
        .map(|(i, (key, _))| {
            let data = serde_json::json!({
                "product_id": key, "inventory": (i * 37) % 500,
                "price": serde_json::Number::from_f64(((i * 7_919) % 50_000) as f64 / 100.0 + 1.99),
            });
            (key.clone(), data.to_string().into_bytes())
        })
        .collect();
    measure("brief's example form only", &brief, batch);
    if let Some(path) = args.events_tsv {
        write_event_rows(&feed, &path);
    }
}

/// The event rows persist would insert for `feed`, as `COPY ... FROM` text.
fn write_event_rows(feed: &[(String, Vec<u8>)], path: &str) {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).unwrap_or_else(|e| panic!("creating {path}: {e}")),
    );
    let mut seen = std::collections::HashSet::new();
    for r in stream_records(feed) {
        let source = SourcePosition {
            shard_id: r.shard_id.clone(),
            sequence_number: r.sequence_number.clone(),
            arrived_at: r.arrived_at,
        };
        let Ok(update) = parse_record(&r.data, &source) else {
            continue;
        };
        if !seen.insert(update.update_key.as_str().to_owned()) {
            continue;
        }
        let event = InventoryUpdateReceived::from(&update);
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            update.update_key.as_str(),
            event.product_id.as_str(),
            event.supplier_id.as_str(),
            event.occurred_at.to_rfc3339(),
            event.quantity.get(),
            event.price.get(),
            event.currency.as_str(),
            event.occurred_at_from_supplier,
            // COPY's text format: \N is null, and a backslash is doubled.
            event
                .update_id
                .as_ref()
                .map_or_else(|| "\\N".to_owned(), |u| u.as_str().replace('\\', "\\\\")),
            event.source.shard_id,
            event.source.sequence_number,
            event.source.arrived_at.to_rfc3339(),
        )
        .unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
    println!(
        "event rows for the generator feed: {} in {path}",
        seen.len()
    );
}
