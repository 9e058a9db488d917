//! Pipeline benchmark: feeds N updates (JSON lines in the brief's format, Zipf-popular
//! products) through validate -> archive ∥ persist -> cache-invalidate, with the real adapters
//! on the local PostgreSQL, Redis and a moto S3, and prints updates/s, p50/p99 per chunk and
//! each step's share of the time. With one lane, chunks run one after another; with N lanes,
//! N chunks are in flight at once (chunk i goes to lane i mod N). The fanout starts an execution
//! per chunk without waiting for the others, so in production a shard's chunks run side by side
//! as well as other shards', and they share the popular products. Before each batch size it runs the
//! reference design (support/reference.rs: batch upsert + one gzip object + one DEL, no event store)
//! on the same records, so the two figures are taken under the same conditions. Each line also
//! gives the CPU time per 1,000 updates of this process (the client), PostgreSQL and the S3
//! emulator: on a small machine they share the cores, and on AWS the emulator's share is a
//! service elsewhere.
//!
//! ```text
//! cargo xtask bench                       # 100,000 updates at batch 100 and 1000, 1 and 2 lanes
//! cargo xtask bench -- --updates 20000 --batches 100,500,1000 --products 5000 --lanes 1,4
//! ```

#[path = "support/reference.rs"]
mod reference;

use anyhow::Result;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use clap::Parser as _;
use integration_tests::cpu::CpuTimes;
use integration_tests::moto::{MotoS3 as _, MotoServer};
use integration_tests::postgres::TestDb;
use integration_tests::redis::TestRedis;
use inventory::adapters::cache::RedisProductCache;
use inventory::adapters::postgres::{PgEventStore, PgQuarantine};
use inventory::adapters::s3::{ArchiveConfig, S3ObjectStore};
use inventory::domain::update::{SourcePosition, parse_record};
use inventory::feed::{FeedSpec, RecordKind, generate};
use inventory::steps::{archive_chunk, invalidate_cache, persist_updates, validate_chunk};
use inventory::{CacheInvalidateInput, ChunkId, ChunkInput, PersistInput, SourceRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The benchmark's arguments (after `--` in `cargo xtask bench -- ...`).
#[derive(Debug, clap::Parser)]
#[command(about = "Feeds updates through validate, archive, persist and cache-invalidate")]
struct Args {
    /// Updates to feed through the pipeline.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    updates: usize,
    /// Products the updates are spread over (Zipf).
    #[arg(long, default_value_t = 5_000, value_name = "N")]
    products: usize,
    /// Chunk sizes to measure, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,1000",
        value_name = "N,N"
    )]
    batches: Vec<usize>,
    /// Chunks in flight at once, whatever their shard (the fanout starts an execution per
    /// chunk without waiting for the others); comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_name = "N,N")]
    lanes: Vec<usize>,
    /// Passed by `cargo bench`; nothing to do with the benchmark.
    #[arg(long, hide = true)]
    bench: bool,
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

#[derive(Default, Clone, Copy)]
struct StepTimes {
    validate: Duration,
    archive: Duration,
    persist: Duration,
    cache: Duration,
}

impl std::ops::AddAssign for StepTimes {
    fn add_assign(&mut self, o: Self) {
        self.validate += o.validate;
        self.archive += o.archive;
        self.persist += o.persist;
        self.cache += o.cache;
    }
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

/// The CPU each process group used per 1,000 of `updates`, as the end of a result line.
fn cpu_per_1000(cpu: Option<CpuTimes>, updates: usize) -> String {
    match cpu.map(|c| c.ms_per(updates, 1000)) {
        Some((client, postgres, emulator)) => format!(
            "cpu per 1000 updates: client {client:.1} ms, postgres {postgres:.1} ms, emulator {emulator:.1} ms"
        ),
        None => "cpu per 1000 updates: n/a (no /proc)".to_owned(),
    }
}

/// The adapters one run uses, on a fresh database, key prefix and bucket.
struct Adapters {
    store: PgEventStore,
    quarantine: PgQuarantine,
    archive: S3ObjectStore,
    cache: RedisProductCache,
}

/// What one chunk did and took.
struct ChunkFigures {
    took: Duration,
    steps: StepTimes,
    appended: usize,
    changed: usize,
}

/// One chunk through validate -> archive ∥ persist -> cache-invalidate, as the state machine
/// runs it. Archive runs as a task of its own, as it runs in a Lambda of its own: polled in
/// the same task as persist, its encoding and request signing would hold persist up.
async fn run_chunk(
    inputs: &Arc<Vec<ChunkInput>>,
    i: usize,
    a: &Arc<Adapters>,
) -> Result<ChunkFigures> {
    let input = &inputs[i];
    let chunk_started = Instant::now();
    let mut steps = StepTimes::default();
    let t = Instant::now();
    let validated = validate_chunk(input, &a.quarantine, Utc::now()).await?;
    steps.validate = t.elapsed();

    let persist_input = PersistInput {
        chunk: input.chunk.clone(),
        updates: validated.valid,
    };
    let t_parallel = Instant::now();
    let archiving = tokio::spawn({
        let (inputs, a) = (inputs.clone(), a.clone());
        async move {
            let r = archive_chunk(&inputs[i], &a.archive).await;
            (r, t_parallel.elapsed())
        }
    });
    let persisted = persist_updates(&persist_input, &a.store).await;
    let persist_time = t_parallel.elapsed();
    let (archived, archive_time) = archiving.await?;
    archived?;
    let persisted = persisted?;
    steps.archive = archive_time;
    steps.persist = persist_time;

    let t = Instant::now();
    invalidate_cache(
        &CacheInvalidateInput {
            products: persisted.changed.clone(),
        },
        &a.cache,
    )
    .await?;
    steps.cache = t.elapsed();
    Ok(ChunkFigures {
        took: chunk_started.elapsed(),
        steps,
        appended: persisted.appended,
        changed: persisted.changed.len(),
    })
}

async fn run_batch_size(
    records: &[Vec<u8>],
    batch: usize,
    lanes: usize,
    moto: &MotoServer,
    reference_rate: f64,
) -> Result<()> {
    let lanes = lanes.max(1);
    let db = TestDb::new().await?;
    let redis = TestRedis::new()?;
    let bucket = moto.create_bucket("bench").await?;
    // A pool per lane's worth of persist connections, as each Lambda instance has its own.
    let pool = u32::try_from(lanes).unwrap_or(1) * 2;
    let adapters = Arc::new(Adapters {
        store: PgEventStore::new(db.connect(pool).await?),
        quarantine: PgQuarantine::new(db.connect(pool).await?),
        archive: S3ObjectStore::new(
            moto.s3_client(),
            ArchiveConfig {
                bucket,
                kms_key_id: None,
            },
        ),
        cache: RedisProductCache::connect(&redis.cache_config(86_400), None)?,
    });

    let inputs = Arc::new(chunks(records, batch, &format!("b{batch}l{lanes}")));
    let total_chunks = inputs.len();
    let done = Arc::new(AtomicUsize::new(0));
    let progress_every = (total_chunks / 10).max(1);
    let cpu_before = CpuTimes::now(moto.pid());
    let started = Instant::now();
    let mut lane_runs = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let (inputs, adapters, done) = (inputs.clone(), adapters.clone(), done.clone());
        lane_runs.spawn(async move {
            let mut figures = Vec::new();
            for i in (lane..inputs.len()).step_by(lanes) {
                figures.push(run_chunk(&inputs, i, &adapters).await?);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % progress_every == 0 {
                    eprint!("\r  batch {batch}, {lanes} lane(s): {n}/{total_chunks} chunks");
                }
            }
            anyhow::Ok(figures)
        });
    }
    let mut figures = Vec::with_capacity(total_chunks);
    while let Some(lane) = lane_runs.join_next().await {
        figures.extend(lane??);
    }
    let wall = started.elapsed();
    let cpu = CpuTimes::used_since(cpu_before, moto.pid());
    eprintln!();

    let mut per_chunk = Vec::with_capacity(total_chunks);
    let mut steps = StepTimes::default();
    let (mut appended, mut changed) = (0usize, 0usize);
    for f in figures {
        per_chunk.push(f.took);
        steps += f.steps;
        appended += f.appended;
        changed += f.changed;
    }
    per_chunk.sort();
    let n = records.len();
    let rate = n as f64 / wall.as_secs_f64();
    let critical = steps.validate + steps.archive.max(steps.persist) + steps.cache;
    let share = |d: Duration| 100.0 * d.as_secs_f64() / critical.as_secs_f64().max(f64::EPSILON);
    println!(
        "batch {batch:>5} | lanes {lanes} | {n} updates in {:.2} s | {rate:>8.0} updates/s | {:.2}x reference | per chunk p50 {:.2} ms p99 {:.2} ms | \
         validate {:.0}% archive {:.0}% (parallel) persist {:.0}% cache {:.0}% | events {appended}, cache invalidations {changed} | {}",
        wall.as_secs_f64(),
        rate / reference_rate,
        ms(percentile(&per_chunk, 0.50)),
        ms(percentile(&per_chunk, 0.99)),
        share(steps.validate),
        share(steps.archive),
        share(steps.persist),
        share(steps.cache),
        cpu_per_1000(cpu, n),
    );
    anyhow::ensure!(
        appended == n,
        "expected {n} events appended, got {appended}"
    );
    drop(adapters);
    db.cleanup().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let records = brief_records(args.updates, args.products);
    eprintln!(
        "pipeline benchmark: {} updates over {} products (Zipf), validate -> archive ∥ persist -> cache-invalidate",
        records.len(),
        args.products
    );
    let moto = MotoServer::start()?;
    for batch in &args.batches {
        let bucket = moto.create_bucket("reference").await?;
        let r = reference::run(&records, *batch, &moto.s3_client(), &bucket, moto.pid()).await?;
        let reference_rate = records.len() as f64 / r.wall.as_secs_f64();
        println!(
            "batch {batch:>5} | reference: upsert + gzip object + DEL, no event store | {reference_rate:>8.0} updates/s | 1.00x reference | per chunk p50 {:.2} ms p99 {:.2} ms | {}",
            ms(percentile(&r.per_chunk, 0.50)),
            ms(percentile(&r.per_chunk, 0.99)),
            cpu_per_1000(r.cpu, records.len()),
        );
        for lanes in &args.lanes {
            run_batch_size(&records, *batch, *lanes, &moto, reference_rate).await?;
        }
    }
    Ok(())
}
