//! The read path against real PostgreSQL and Redis: the `product-api` handler over the real
//! adapters (hits, misses, negative entries, 304, 400/404, history, a Redis that is down), and
//! in [`race`] the interleaving SPEC invariant 4 is about, forced step by step.

mod e2e;
mod race;

use anyhow::{Context as _, Result};
use integration_tests::postgres::TestDb;
use integration_tests::redis::{PasswordRedis, TestRedis};
use inventory::adapters::cache::{RedisConfig, RedisEndpoint, RedisProductCache};
use inventory::adapters::postgres::{PgEventStore, PgProductReader};
use inventory::domain::update::parse_record;
use inventory::ports::{CacheRead, ProductReader};
use inventory::read::{HistoryQuery, ProductView, ReadPolicy};
use inventory::steps::payloads::{CacheInvalidateInput, ChunkId, PersistInput, PersistOutput};
use inventory::{InventoryUpdate, PipelineError, ProductId, SourcePosition};
use inventory_product_api::App;
use inventory_product_api::metrics::Metrics;
use lambda_http::Body;
use lambda_http::http::{Response, StatusCode, header};
use redis::AsyncCommands as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const FIXTURE: &str = include_str!("../fixtures/apigw-http-get-product.json");

/// A database, a key prefix, and the pipeline's real persist and cache-invalidate steps.
pub struct Services {
    pub db: TestDb,
    pub redis: TestRedis,
    pub store: PgEventStore,
    pub cache: RedisProductCache,
}

impl Services {
    pub async fn start() -> Result<Self> {
        let db = TestDb::new().await?;
        let redis = TestRedis::new()?;
        let store = PgEventStore::new(db.db.clone());
        let cache = RedisProductCache::connect(&redis.cache_config(600), None)?;
        Ok(Self {
            db,
            redis,
            store,
            cache,
        })
    }

    /// The pipeline for one update: persist (the `persist` handler), then cache-invalidate
    /// (its handler). `minute` sets `occurred_at`, so a later minute is a newer update.
    pub async fn update(&self, product: &str, quantity: i64, minute: u32) -> Result<i64> {
        let out = self.persist(product, quantity, minute).await?;
        self.invalidate(&out).await?;
        version_of(&out, product)
    }

    pub async fn persist(
        &self,
        product: &str,
        quantity: i64,
        minute: u32,
    ) -> Result<PersistOutput> {
        let input = PersistInput {
            chunk: chunk(minute),
            updates: vec![update(product, quantity, minute)],
        };
        Ok(
            inventory_persist::handle(serde_json::to_value(&input)?, &self.store, arrival(&input))
                .await?,
        )
    }

    pub async fn invalidate(&self, persisted: &PersistOutput) -> Result<()> {
        let input = CacheInvalidateInput {
            products: persisted.changed.clone(),
        };
        inventory_cache_invalidate::handle(serde_json::to_value(&input)?, &self.cache)
            .await
            .map_err(|d| anyhow::anyhow!("{}: {}", d.kind.name(), d.detailed()))?;
        Ok(())
    }

    pub fn reader(&self) -> Arc<PgProductReader> {
        Arc::new(PgProductReader::new(self.db.db.clone()))
    }

    pub fn app(&self, reader: Arc<dyn ProductReader>, cache: Arc<dyn CacheRead>) -> App {
        App::new(
            reader,
            cache,
            ReadPolicy::default(),
            Metrics::new("product-api-it", Duration::from_secs(3600)),
        )
    }

    pub async fn cleanup(self) -> Result<()> {
        self.db.cleanup().await
    }
}

pub fn version_of(out: &PersistOutput, product: &str) -> Result<i64> {
    out.changed
        .iter()
        .find(|c| c.product_id.as_str() == product)
        .map(|c| c.version)
        .with_context(|| format!("{product} did not change: {out:?}"))
}

pub fn pid(s: &str) -> ProductId {
    ProductId::parse(s).expect("valid product id")
}

fn update(product: &str, quantity: i64, minute: u32) -> InventoryUpdate {
    let json = format!(
        r#"{{"product_id":"{product}","supplier_id":"acme","quantity":{quantity},"price":"19.90","occurred_at":"2026-11-24T10:{minute:02}:00Z"}}"#
    );
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
        .expect("valid")
        .to_utc();
    let source = SourcePosition {
        shard_id: "shardId-000000000000".into(),
        sequence_number: format!("{minute}{quantity}"),
        arrived_at: at,
    };
    parse_record(json.as_bytes(), &source).expect("a valid update")
}

fn chunk(index: u32) -> ChunkId {
    ChunkId {
        stream: "inventory-updates-test".into(),
        shard_id: "shardId-000000000000".into(),
        first_sequence: index.to_string(),
        last_sequence: index.to_string(),
        index,
    }
}

/// `GET path?query` as API Gateway delivers it (the shared fixture, through lambda_http).
fn get(path_and_query: &str, headers: &[(&str, &str)]) -> lambda_http::Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut event: serde_json::Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
    event["rawPath"] = path.into();
    event["rawQueryString"] = query.into();
    for (k, v) in headers {
        event["headers"][*k] = (*v).into();
    }
    lambda_http::request::from_str(&event.to_string()).expect("an HTTP API event")
}

async fn call(app: &App, path_and_query: &str, headers: &[(&str, &str)]) -> Response<Body> {
    inventory_product_api::handle(app, get(path_and_query, headers)).await
}

fn json_of(r: &Response<Body>) -> serde_json::Value {
    serde_json::from_slice(r.body().as_ref()).unwrap_or(serde_json::Value::Null)
}

fn header_of(r: &Response<Body>, name: header::HeaderName) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Counts the queries of the reader it wraps.
pub struct CountingReader {
    pub inner: Arc<dyn ProductReader>,
    pub queries: AtomicUsize,
}

#[async_trait::async_trait]
impl ProductReader for CountingReader {
    async fn load_products(&self, ids: &[ProductId]) -> Result<Vec<ProductView>, PipelineError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.inner.load_products(ids).await
    }

    async fn load_history(
        &self,
        product: &ProductId,
        q: HistoryQuery,
    ) -> Result<Vec<inventory::read::HistoryEvent>, PipelineError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.inner.load_history(product, q).await
    }
}

#[tokio::test]
async fn a_miss_is_read_from_postgres_cached_with_its_version_and_then_served_from_redis()
-> Result<()> {
    let s = Services::start().await?;
    let version = s.update("sku-hit", 7, 1).await?;
    let reader = Arc::new(CountingReader {
        inner: s.reader(),
        queries: AtomicUsize::new(0),
    });
    let app = s.app(reader.clone(), Arc::new(s.cache.clone()));

    let miss = call(&app, "/products/sku-hit", &[]).await;
    let hit = call(&app, "/products/sku-hit", &[]).await;

    assert_eq!(miss.status(), StatusCode::OK);
    assert_eq!(json_of(&miss)["version"], version);
    assert_eq!(json_of(&miss)["total_quantity"], 7);
    assert_eq!(json_of(&miss)["suppliers"][0]["price"], "19.9");
    assert_eq!(hit.body().as_ref(), miss.body().as_ref());
    assert_eq!(header_of(&hit, header::ETAG), format!("\"p1.{version}\""));
    assert_eq!(
        reader.queries.load(Ordering::SeqCst),
        1,
        "the second read never reached Postgres"
    );
    let mut conn = s.redis.connection().await?;
    let stored: String = conn.get(s.redis.keys().entry(&pid("sku-hit"))).await?;
    assert!(stored.starts_with(&format!("{version}|{{")), "{stored}");
    let ttl: i64 = conn.ttl(s.redis.keys().entry(&pid("sku-hit"))).await?;
    assert!((290..=300).contains(&ttl), "entry TTL {ttl}");
    s.cleanup().await
}

#[tokio::test]
async fn an_unknown_product_is_cached_as_absent_for_seconds_and_its_first_update_evicts_that()
-> Result<()> {
    let s = Services::start().await?;
    let reader = Arc::new(CountingReader {
        inner: s.reader(),
        queries: AtomicUsize::new(0),
    });
    let app = s.app(reader.clone(), Arc::new(s.cache.clone()));

    let first = call(&app, "/products/sku-later", &[]).await;
    let second = call(&app, "/products/sku-later", &[]).await;
    let mut conn = s.redis.connection().await?;
    let negative: Option<String> = conn.get(s.redis.keys().entry(&pid("sku-later"))).await?;
    let ttl: i64 = conn.ttl(s.redis.keys().entry(&pid("sku-later"))).await?;
    let version = s.update("sku-later", 3, 1).await?;
    let created = call(&app, "/products/sku-later", &[]).await;

    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(
        json_of(&first)["type"],
        "urn:inventory:problem:unknown-product"
    );
    assert_eq!(negative.as_deref(), Some("0|null"));
    assert!((1..=5).contains(&ttl), "negative TTL {ttl}");
    assert_eq!(
        reader.queries.load(Ordering::SeqCst),
        2,
        "the second 404 came from the cache, then the created product from Postgres"
    );
    assert_eq!(
        created.status(),
        StatusCode::OK,
        "the invalidation evicted the negative entry at once"
    );
    assert_eq!(json_of(&created)["version"], version);
    s.cleanup().await
}

#[tokio::test]
async fn a_client_with_the_current_etag_gets_304_and_one_with_an_old_etag_the_new_state()
-> Result<()> {
    let s = Services::start().await?;
    s.update("sku-etag", 1, 1).await?;
    let app = s.app(s.reader(), Arc::new(s.cache.clone()));
    let first = call(&app, "/products/sku-etag", &[]).await;
    let etag = header_of(&first, header::ETAG);

    let unchanged = call(&app, "/products/sku-etag", &[("if-none-match", &etag)]).await;
    let version = s.update("sku-etag", 2, 2).await?;
    let changed = call(&app, "/products/sku-etag", &[("if-none-match", &etag)]).await;

    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert!(unchanged.body().as_ref().is_empty());
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(json_of(&changed)["version"], version);
    assert_ne!(header_of(&changed, header::ETAG), etag);
    s.cleanup().await
}

#[tokio::test]
async fn malformed_requests_are_400_problems_and_never_reach_the_services() -> Result<()> {
    let s = Services::start().await?;
    let reader = Arc::new(CountingReader {
        inner: s.reader(),
        queries: AtomicUsize::new(0),
    });
    let app = s.app(reader.clone(), Arc::new(s.cache.clone()));

    for path in [
        "/products/not%20an%20id",
        "/products?ids=a,b%3Ac",
        "/products?ids=",
        "/products/a/history?limit=1000",
    ] {
        let r = call(&app, path, &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "application/problem+json",
            "{path}"
        );
        assert_eq!(json_of(&r)["status"], 400, "{path}");
    }
    assert_eq!(reader.queries.load(Ordering::SeqCst), 0);
    s.cleanup().await
}

#[tokio::test]
async fn with_redis_down_reads_are_served_from_postgres_without_waiting_on_the_cache() -> Result<()>
{
    let s = Services::start().await?;
    let version = s.update("sku-down", 5, 1).await?;
    let closed_port = test_support::free_port();
    let config = RedisConfig {
        endpoint: RedisEndpoint::Url(inventory::redact::SecretUrl::new(format!(
            "redis://127.0.0.1:{closed_port}"
        ))),
        ..s.redis.cache_config(600)
    };
    let app = s.app(
        s.reader(),
        Arc::new(RedisProductCache::connect(&config, None)?),
    );

    let started = Instant::now();
    let first = call(&app, "/products/sku-down", &[]).await;
    let second = call(&app, "/products/sku-down", &[]).await;
    let unknown = call(&app, "/products/sku-never", &[]).await;
    let took = started.elapsed();

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(json_of(&first)["version"], version);
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(took < Duration::from_secs(2), "three reads took {took:?}");
    let counts = app.metrics.snapshot();
    assert_eq!(
        counts.cache_bypassed_reads, 2,
        "after the first failure the cache is skipped"
    );
    assert_eq!(counts.server_errors, 0);
    s.cleanup().await
}

#[tokio::test]
async fn a_batch_costs_one_mget_one_query_and_one_pipelined_fill() -> Result<()> {
    let s = Services::start().await?;
    for i in 0..20 {
        s.persist(&format!("sku-b{i}"), i + 1, 1).await?;
    }
    // A private server, so no other test's commands are counted.
    let server = PasswordRedis::start("count-only")?;
    let url = format!("redis://:count-only@127.0.0.1:{}", server.port());
    let config = RedisConfig {
        endpoint: RedisEndpoint::Url(inventory::redact::SecretUrl::new(url.clone())),
        key_prefix: "t:".into(),
        fence_ttl_secs: 60,
    };
    let reader = Arc::new(CountingReader {
        inner: s.reader(),
        queries: AtomicUsize::new(0),
    });
    let app = s.app(
        reader.clone(),
        Arc::new(RedisProductCache::connect(&config, None)?),
    );
    let mut admin = redis::aio::ConnectionManager::new(redis::Client::open(url.as_str())?).await?;
    let ids: Vec<String> = (0..25).map(|i| format!("sku-b{i}")).collect();
    let path = format!("/products?ids={}", ids.join(","));

    let before = command_calls(&mut admin).await?;
    let cold = call(&app, &path, &[]).await;
    let after_cold = command_calls(&mut admin).await?;
    let warm = call(&app, &path, &[]).await;
    let after_warm = command_calls(&mut admin).await?;

    assert_eq!(cold.status(), StatusCode::OK);
    assert_eq!(
        json_of(&cold)["products"].as_array().map(Vec::len),
        Some(20)
    );
    assert_eq!(
        json_of(&cold)["not_found"].as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(warm.body().as_ref(), cold.body().as_ref());
    assert_eq!(
        reader.queries.load(Ordering::SeqCst),
        1,
        "one query for the cold batch, none for the warm one"
    );
    assert_eq!(
        delta(&before, &after_cold),
        [
            ("evalsha".to_owned(), 25),
            ("mget".to_owned(), 1),
            ("script|load".to_owned(), 1)
        ]
    );
    assert_eq!(delta(&after_cold, &after_warm), [("mget".to_owned(), 1)]);
    s.cleanup().await
}

#[tokio::test]
async fn history_pages_come_from_the_event_store_newest_first() -> Result<()> {
    let s = Services::start().await?;
    let mut versions = Vec::new();
    for minute in 1..=3 {
        versions.push(s.update("sku-hist", i64::from(minute), minute).await?);
    }
    let app = s.app(s.reader(), Arc::new(s.cache.clone()));

    let first = call(&app, "/products/sku-hist/history?limit=2", &[]).await;
    let next = json_of(&first)["next_before"]
        .as_i64()
        .context("a second page")?;
    let second = call(
        &app,
        &format!("/products/sku-hist/history?limit=2&before={next}"),
        &[],
    )
    .await;
    let unknown = call(&app, "/products/sku-none/history", &[]).await;

    let seqs = |r: &Response<Body>| {
        json_of(r)["events"].as_array().map(|a| {
            a.iter()
                .filter_map(|e| e["seq"].as_i64())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(seqs(&first), Some(vec![versions[2], versions[1]]));
    assert_eq!(seqs(&second), Some(vec![versions[0]]));
    assert_eq!(json_of(&second)["next_before"], serde_json::Value::Null);
    assert_eq!(json_of(&first)["events"][0]["quantity"], 3);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    s.cleanup().await
}

/// Calls per command since the server started, from INFO commandstats: only the commands the
/// read path sends (commandstats also counts the GET/SET a script runs, and the AUTH of a new
/// connection).
async fn command_calls(
    conn: &mut redis::aio::ConnectionManager,
) -> Result<std::collections::BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_owned(), rest.split(',').next()?.parse().ok()?))
        })
        .collect())
}

fn delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    after
        .iter()
        .filter(|(name, _)| ["mget", "evalsha", "eval", "script|load"].contains(&name.as_str()))
        .filter_map(|(name, n)| {
            let d = n - before.get(name).copied().unwrap_or(0);
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}

/// When the newest update of `input` reached the stream: these tests persist at once.
fn arrival(input: &PersistInput) -> chrono::DateTime<chrono::Utc> {
    input
        .updates
        .iter()
        .map(|u| u.source.arrived_at)
        .max()
        .unwrap_or_default()
}
