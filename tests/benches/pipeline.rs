//! Pipeline benchmark: feeds N updates (JSON lines in the brief's format, Zipf-popular
//! products) through validate -> archive ∥ persist -> cache-invalidate, with the real adapters
//! on the local PostgreSQL, Redis and a moto S3, one chunk after another, and prints
//! updates/s, p50/p99 per chunk and each step's share of the time.
//!
//! ```text
//! cargo xtask bench                       # 100,000 updates at batch 100 and at batch 1000
//! cargo xtask bench -- --updates 20000 --batches 100,500,1000 --products 5000
//! ```

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use integration_tests::moto::MotoServer;
use integration_tests::postgres::TestDb;
use integration_tests::redis::TestRedis;
use inventory::adapters::cache::RedisProductCache;
use inventory::adapters::postgres::{PgEventStore, PgQuarantine};
use inventory::adapters::s3::{ArchiveConfig, S3ArchiveStore};
use inventory::feed::{FeedSpec, RecordKind, generate};
use inventory::update::{SourcePosition, parse_record};
use inventory::usecase::{archive_chunk, invalidate_cache, persist_updates, validate_chunk};
use inventory::{CacheInvalidateInput, ChunkId, ChunkInput, PersistInput, SourceRecord};
use std::time::{Duration, Instant};

struct Args {
    updates: usize,
    products: usize,
    batches: Vec<usize>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        updates: 100_000,
        products: 5_000,
        batches: vec![100, 1000],
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--updates" => args.updates = value()?.parse().context("--updates")?,
            "--products" => args.products = value()?.parse().context("--products")?,
            "--batches" => {
                args.batches = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--batches")?
            }
            other => anyhow::bail!(
                "unknown argument {other:?} (known: --updates N --products N --batches 100,1000)"
            ),
        }
    }
    Ok(args)
}

/// The brief's record format, with Zipf-popular products taken from the shared feed generator.
fn brief_records(updates: usize, products: usize) -> Vec<Vec<u8>> {
    let spec = FeedSpec {
        updates,
        products,
        duplicate_share: 0.0,
        out_of_order_share: 0.0,
        bad_share: 0.0,
        ..FeedSpec::default()
    };
    let probe = SourcePosition {
        shard_id: "bench".into(),
        sequence_number: "0".into(),
        arrived_at: Utc::now(),
    };
    generate(&spec)
        .into_iter()
        .filter(|r| r.kind == RecordKind::Update)
        .filter_map(|r| parse_record(&r.data, &probe).ok())
        .map(|u| {
            format!(
                r#"{{"product_id": "{}", "inventory": {}, "price": {}}}"#,
                u.product_id,
                u.quantity.get(),
                u.price
            )
            .into_bytes()
        })
        .collect()
}

fn chunks(records: &[Vec<u8>], batch: usize, run: &str) -> Vec<ChunkInput> {
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 24, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    records
        .chunks(batch)
        .enumerate()
        .map(|(c, recs)| {
            let first = c * batch;
            let records: Vec<SourceRecord> = recs
                .iter()
                .enumerate()
                .map(|(i, data)| SourceRecord {
                    sequence_number: format!("{:020}", first + i),
                    partition_key: String::new(),
                    // One millisecond apart, so identical content still makes distinct updates.
                    arrived_at: t0
                        + ChronoDuration::milliseconds(i64::try_from(first + i).unwrap_or(0)),
                    data: Some(BASE64.encode(data)),
                    data_ref: None,
                })
                .collect();
            ChunkInput {
                chunk: ChunkId {
                    stream: format!("bench-{run}"),
                    shard_id: "shardId-000000000000".into(),
                    first_sequence: records
                        .first()
                        .map(|r| r.sequence_number.clone())
                        .unwrap_or_default(),
                    last_sequence: records
                        .last()
                        .map(|r| r.sequence_number.clone())
                        .unwrap_or_default(),
                    index: u32::try_from(c).unwrap_or(u32::MAX),
                },
                records,
            }
        })
        .collect()
}

#[derive(Default)]
struct StepTimes {
    validate: Duration,
    archive: Duration,
    persist: Duration,
    cache: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run_batch_size(records: &[Vec<u8>], batch: usize, moto: &MotoServer) -> Result<()> {
    let db = TestDb::new().await?;
    let redis = TestRedis::new()?;
    let bucket = moto.create_bucket("bench").await?;
    let store = PgEventStore::new(db.connect(2).await?);
    let quarantine = PgQuarantine::new(db.connect(1).await?);
    let archive = S3ArchiveStore::new(
        moto.s3_client(),
        ArchiveConfig {
            bucket,
            kms_key_id: None,
        },
    );
    let cache = RedisProductCache::connect(&redis.cache_config(86_400), None)?;

    let inputs = chunks(records, batch, &format!("b{batch}"));
    let mut per_chunk = Vec::with_capacity(inputs.len());
    let mut steps = StepTimes::default();
    let (mut appended, mut changed) = (0usize, 0usize);
    let progress_every = (inputs.len() / 10).max(1);
    let started = Instant::now();
    for (i, input) in inputs.iter().enumerate() {
        let chunk_started = Instant::now();
        let t = Instant::now();
        let validated = validate_chunk(input, &quarantine).await?;
        steps.validate += t.elapsed();

        let persist_input = PersistInput {
            chunk: input.chunk.clone(),
            updates: validated.valid,
        };
        let t_parallel = Instant::now();
        let (archived, persisted) = tokio::join!(
            async {
                let r = archive_chunk(input, &archive).await;
                (r, t_parallel.elapsed())
            },
            async {
                let r = persist_updates(&persist_input, &store).await;
                (r, t_parallel.elapsed())
            },
        );
        let (archived, archive_time) = archived;
        let (persisted, persist_time) = persisted;
        archived?;
        let persisted = persisted?;
        steps.archive += archive_time;
        steps.persist += persist_time;

        let t = Instant::now();
        invalidate_cache(
            &CacheInvalidateInput {
                products: persisted.changed.clone(),
            },
            &cache,
        )
        .await?;
        steps.cache += t.elapsed();

        appended += persisted.appended;
        changed += persisted.changed.len();
        per_chunk.push(chunk_started.elapsed());
        if (i + 1) % progress_every == 0 {
            eprint!("\r  batch {batch}: {}/{} chunks", i + 1, inputs.len());
        }
    }
    let wall = started.elapsed();
    eprintln!();
    per_chunk.sort();
    let n = records.len();
    let critical = steps.validate + steps.archive.max(steps.persist) + steps.cache;
    let share = |d: Duration| 100.0 * d.as_secs_f64() / critical.as_secs_f64().max(f64::EPSILON);
    println!(
        "batch {batch:>5} | {n} updates in {:.2} s | {:>8.0} updates/s | per chunk p50 {:.2} ms p99 {:.2} ms | \
         validate {:.0}% archive {:.0}% (parallel) persist {:.0}% cache {:.0}% | events {appended}, cache invalidations {changed}",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        ms(percentile(&per_chunk, 0.50)),
        ms(percentile(&per_chunk, 0.99)),
        share(steps.validate),
        share(steps.archive),
        share(steps.persist),
        share(steps.cache),
    );
    anyhow::ensure!(
        appended == n,
        "expected {n} events appended, got {appended}"
    );
    db.cleanup().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let records = brief_records(args.updates, args.products);
    eprintln!(
        "pipeline benchmark: {} updates over {} products (Zipf), validate -> archive ∥ persist -> cache-invalidate",
        records.len(),
        args.products
    );
    let moto = MotoServer::start()?;
    for batch in &args.batches {
        run_batch_size(&records, *batch, &moto).await?;
    }
    Ok(())
}
