//! Read benchmark: Zipf-popular product reads over a demo-like catalog (the shared feed
//! generator's records, loaded through the real `PgEventStore`), through the `product-api`
//! handler with the real PostgreSQL reader and Redis cache, while a writer keeps applying
//! updates through the real persist and cache-invalidate steps (1,000 a minute by default,
//! the brief's floor), so invalidations keep turning hits into misses.
//!
//! Prints the cache hit ratio, p50/p99/p999 of hits and misses at the handler, database
//! queries per 1,000 reads, and the same latencies through a local HTTP endpoint (the
//! cargo-lambda emulator's function URL in front of the real `product-api` binary) when
//! `cargo-lambda` and the binary are there. A benchmark, not a test: it asserts nothing.
//!
//! ```text
//! cargo xtask bench-reads
//! cargo xtask bench-reads -- --reads 200000 --products 5000 --update-rate 0 --http-reads 0
//! ```

#[path = "reads/http.rs"]
mod http;

use anyhow::{Context, Result};
use chrono::{TimeZone, Utc};
use clap::Parser as _;
use integration_tests::postgres::TestDb;
use integration_tests::redis::TestRedis;
use inventory::adapters::cache::RedisProductCache;
use inventory::adapters::postgres::{PgEventStore, PgProductReader};
use inventory::domain::update::{SourcePosition, parse_record};
use inventory::feed::{FeedSpec, generate};
use inventory::ports::{EventStore, ProductReader};
use inventory::read::{HistoryEvent, HistoryQuery, ProductView, ReadPolicy};
use inventory::steps::invalidate_cache;
use inventory::steps::payloads::CacheInvalidateInput;
use inventory::{PipelineError, ProductId};
use inventory_product_api::App;
use inventory_product_api::metrics::Metrics;
use lambda_http::Body;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The benchmark's arguments (after `--` in `cargo xtask bench-reads -- ...`).
#[derive(Debug, Clone, clap::Parser)]
#[command(about = "Zipf-popular reads through product-api over a demo-like catalog")]
struct Args {
    /// Updates in the catalog's feed.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    updates: usize,
    /// Products in the catalog.
    #[arg(long, default_value_t = 2_000, value_name = "N")]
    products: usize,
    /// Reads through the handler.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    reads: usize,
    /// Zipf exponent of product popularity.
    #[arg(long, default_value_t = 1.1, value_name = "S")]
    zipf: f64,
    /// Share of reads for products that do not exist.
    #[arg(long, default_value_t = 0.01, value_name = "F")]
    unknown_share: f64,
    /// Updates per second the writer applies while the reads run (1,000 a minute by default).
    #[arg(long, default_value_t = 1000.0 / 60.0, value_name = "PER_SEC")]
    update_rate: f64,
    /// Reads through the local HTTP endpoint (0: none).
    #[arg(long, default_value_t = 5_000, value_name = "N")]
    http_reads: usize,
    /// Passed by `cargo bench`; nothing to do with the benchmark.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Counts the database queries of the reader it wraps.
struct CountingReader {
    inner: PgProductReader,
    queries: AtomicUsize,
}

#[async_trait::async_trait]
impl ProductReader for CountingReader {
    async fn load_products(&self, ids: &[ProductId]) -> Result<Vec<ProductView>, PipelineError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.inner.load_products(ids).await
    }

    async fn load_history(
        &self,
        p: &ProductId,
        q: HistoryQuery,
    ) -> Result<Vec<HistoryEvent>, PipelineError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.inner.load_history(p, q).await
    }
}

/// Product ids in Zipf order of popularity (the feed's own ranks), plus unknown ids.
struct Popularity {
    rng: StdRng,
    ranks: Zipf<f64>,
    products: usize,
    unknown_share: f64,
}

impl Popularity {
    fn new(products: usize, exponent: f64, unknown_share: f64, seed: u64) -> Result<Self> {
        let products = products.max(1);
        Ok(Self {
            rng: StdRng::seed_from_u64(seed),
            ranks: Zipf::new(products as f64, exponent).context("--zipf must be at least 0")?,
            products,
            unknown_share,
        })
    }

    fn next_id(&mut self) -> String {
        if self.rng.random::<f64>() < self.unknown_share {
            return format!("SKU-X{:06}", self.rng.random_range(0..1_000_000));
        }
        let rank = self.ranks.sample(&mut self.rng) as usize;
        format!("SKU-{:06}", rank.clamp(1, self.products) - 1)
    }
}

/// Loads the feed through the real event store, in chunks like the pipeline's.
async fn load_catalog(store: &PgEventStore, args: &Args) -> Result<usize> {
    let spec = FeedSpec {
        updates: args.updates,
        products: args.products,
        ..FeedSpec::default()
    };
    let arrived = Utc
        .with_ymd_and_hms(2026, 2, 1, 0, 0, 0)
        .single()
        .context("valid time")?;
    let updates: Vec<_> = generate(&spec)
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let at = SourcePosition {
                shard_id: "bench".into(),
                sequence_number: i.to_string(),
                arrived_at: arrived,
            };
            parse_record(&r.data, &at).ok()
        })
        .collect();
    for chunk in updates.chunks(500) {
        store.append(chunk).await?;
    }
    Ok(updates.len())
}

/// Keeps applying updates to popular products through persist and cache-invalidate.
async fn writer(
    store: PgEventStore,
    cache: RedisProductCache,
    rate: f64,
    products: usize,
    stop: Arc<AtomicBool>,
) -> Result<usize> {
    let mut popularity = Popularity::new(products, 1.1, 0.0, 7)?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let id = popularity.next_id();
        let occurred = Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .context("valid")?
            + chrono::Duration::milliseconds(n as i64 * 10);
        let json = format!(
            r#"{{"product_id":"{id}","supplier_id":"acme-wholesale","quantity":{},"price":"9.99","occurred_at":"{}"}}"#,
            n % 500,
            occurred.to_rfc3339()
        );
        let at = SourcePosition {
            shard_id: "bench-writer".into(),
            sequence_number: n.to_string(),
            arrived_at: Utc::now(),
        };
        let update = parse_record(json.as_bytes(), &at).map_err(|r| anyhow::anyhow!("{r}"))?;
        let out = store.append(&[update]).await?;
        invalidate_cache(
            &CacheInvalidateInput {
                products: out.changed,
            },
            &cache,
        )
        .await?;
        n += 1;
    }
    Ok(n)
}

/// Latencies of one kind of read.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn line(&mut self, name: &str) -> String {
        self.0.sort_unstable();
        let q = |p: f64| {
            let n = self.0.len();
            if n == 0 {
                return "-".to_owned();
            }
            let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            format!("{:.3}", self.0[i].as_secs_f64() * 1e3)
        };
        format!(
            "  {name:<8} n={:<7} p50={:>8} ms  p99={:>8} ms  p999={:>8} ms  max={:>8} ms",
            self.0.len(),
            q(0.5),
            q(0.99),
            q(0.999),
            q(1.0)
        )
    }
}

fn get(path: &str) -> Result<lambda_http::Request> {
    Ok(lambda_http::http::Request::builder()
        .method("GET")
        .uri(path)
        .body(Body::Empty)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let db = TestDb::new().await?;
    let redis = TestRedis::new()?;
    let cache = RedisProductCache::connect(&redis.cache_config(600), None)?;
    let store = PgEventStore::new(db.connect(2).await?);

    let t = Instant::now();
    let loaded = load_catalog(&store, &args).await?;
    println!(
        "catalog: {loaded} valid updates from the demo feed ({} products, Zipf {}) loaded through PgEventStore in {:.1} s",
        args.products,
        1.1,
        t.elapsed().as_secs_f64()
    );

    let reader = Arc::new(CountingReader {
        inner: PgProductReader::new(db.connect(2).await?),
        queries: AtomicUsize::new(0),
    });
    let app = App::new(
        reader.clone(),
        Arc::new(cache.clone()),
        ReadPolicy::default(),
        Metrics::new("bench", Duration::from_secs(1 << 30)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writing = (args.update_rate > 0.0).then(|| {
        let (store, cache, stop) = (
            PgEventStore::new(db.db.clone()),
            cache.clone(),
            stop.clone(),
        );
        tokio::spawn(writer(store, cache, args.update_rate, args.products, stop))
    });

    let mut popularity = Popularity::new(args.products, args.zipf, args.unknown_share, 42)?;
    let (mut hits, mut misses, mut negative_hits) =
        (Samples::default(), Samples::default(), Samples::default());
    // Whether the cache answered each read, to tell the warm-up from the steady state.
    let mut answered: Vec<bool> = Vec::with_capacity(args.reads);
    let started = Instant::now();
    for _ in 0..args.reads {
        let request = get(&format!("/products/{}", popularity.next_id()))?;
        let before = app.metrics.snapshot();
        let t = Instant::now();
        let response = inventory_product_api::handle(&app, request).await;
        let took = t.elapsed();
        let after = app.metrics.snapshot();
        anyhow::ensure!(
            response.status().as_u16() < 500,
            "read failed: {:?}",
            response.body()
        );
        answered.push(after.cache_misses == before.cache_misses);
        if after.cache_misses > before.cache_misses {
            misses.0.push(took);
        } else if after.negative_hits > before.negative_hits {
            negative_hits.0.push(took);
        } else {
            hits.0.push(took);
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let written = match writing {
        Some(w) => w.await??,
        None => 0,
    };
    let counts = app.metrics.snapshot();
    let queries = reader.queries.load(Ordering::Relaxed);
    let answered_by_cache =
        counts.cache_hits as f64 / (counts.cache_hits + counts.cache_misses).max(1) as f64;

    println!(
        "\nhandler: {} single-product reads in {:.1} s ({:.0}/s, one at a time), {written} updates applied meanwhile ({:.1}/s)",
        args.reads,
        elapsed.as_secs_f64(),
        args.reads as f64 / elapsed.as_secs_f64(),
        args.update_rate
    );
    println!(
        "  cache hit ratio      {:.2} % ({} hits incl. {} cached 404s, {} misses)",
        answered_by_cache * 100.0,
        counts.cache_hits,
        counts.negative_hits,
        counts.cache_misses
    );
    let second_half = &answered[answered.len() / 2..];
    println!(
        "  hit ratio, second half     {:.2} % (warm cache; misses come from invalidations, TTLs and the long tail)",
        second_half.iter().filter(|hit| **hit).count() as f64 * 100.0
            / second_half.len().max(1) as f64
    );
    println!(
        "  DB queries per 1,000 reads  {:.1}",
        queries as f64 * 1000.0 / args.reads as f64
    );
    println!("  fills refused by the fence  {}", counts.fenced_fills);
    println!("{}", hits.line("hit"));
    println!("{}", negative_hits.line("hit-404"));
    println!("{}", misses.line("miss"));
    let p99_hit = {
        let n = hits.0.len();
        (n > 0).then(|| hits.0[((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1])
    };
    if let Some(p99) = p99_hit {
        println!(
            "  target: cached reads p99 <= 2 ms at the handler: {} ({:.3} ms)",
            if p99 <= Duration::from_millis(2) {
                "met"
            } else {
                "NOT met"
            },
            p99.as_secs_f64() * 1e3
        );
    }

    if args.http_reads > 0 {
        let popularity = Popularity::new(args.products, args.zipf, args.unknown_share, 43)?;
        match http::Endpoint::start(&db.url, redis.url(), &format!("{}http:", redis.prefix())).await
        {
            Ok(endpoint) => {
                let result = http::run(&endpoint, args.http_reads, popularity).await;
                endpoint.stop();
                let (mut hits, mut misses, elapsed) = result?;
                println!(
                    "\nHTTP (cargo-lambda emulator function URL -> product-api debug binary, keep-alive): {} reads in {:.1} s",
                    args.http_reads,
                    elapsed.as_secs_f64()
                );
                println!(
                    "  cache hit ratio      {:.2} % (by X-Cache)",
                    hits.0.len() as f64 * 100.0 / args.http_reads.max(1) as f64
                );
                println!("{}", hits.line("hit"));
                println!("{}", misses.line("miss"));
            }
            Err(e) => println!("\nHTTP: skipped ({e:#})"),
        }
    }
    db.cleanup().await
}
