//! The Redis product cache against real Redis: invalidation fences and evicts in one call,
//! a populate older than the fence is refused whatever the interleaving (SPEC invariant 4),
//! and invalidations arriving out of order never lower a fence.

use anyhow::Result;
use integration_tests::redis::{PasswordRedis, TestRedis};
use inventory::adapters::cache::{
    ABSENT_VERSION, CacheEntry, PopulateOutcome, RedisConfig, RedisEndpoint, RedisProductCache,
};
use inventory::ports::CacheInvalidator;
use inventory::{CacheInvalidateOutput, ChangedProduct, ErrorKind, ProductId};
use redis::AsyncCommands as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(300);

fn product(id: &str) -> ProductId {
    ProductId::parse(id).expect("valid product id")
}

fn changed(id: &str, version: i64) -> ChangedProduct {
    ChangedProduct {
        product_id: product(id),
        version,
    }
}

fn json(version: i64) -> String {
    format!(
        r#"{{"total_quantity":{},"version":{version}}}"#,
        version * 10
    )
}

async fn cache(redis: &TestRedis) -> Result<RedisProductCache> {
    Ok(RedisProductCache::connect(&redis.cache_config(600), None)?)
}

async fn fence(redis: &TestRedis, id: &str) -> Result<Option<i64>> {
    Ok(redis
        .connection()
        .await?
        .get(redis.keys().fence(&product(id)))
        .await?)
}

#[tokio::test]
async fn invalidation_raises_fences_and_evicts_older_entries_in_one_call() -> Result<()> {
    let redis = TestRedis::new()?;
    let cache = cache(&redis).await?;
    cache.populate(&product("p-old"), 3, &json(3), TTL).await?;
    cache
        .populate(&product("p-current"), 5, &json(5), TTL)
        .await?;

    let CacheInvalidateOutput { evicted, fenced } = cache
        .invalidate(&[
            changed("p-old", 4),
            changed("p-current", 5),
            changed("p-uncached", 1),
        ])
        .await?;

    assert_eq!((evicted, fenced), (1, 3));
    let entries = cache
        .get_many(&[
            product("p-old"),
            product("p-current"),
            product("p-uncached"),
        ])
        .await?;
    assert_eq!(
        entries,
        [
            None,
            Some(CacheEntry {
                version: 5,
                json: json(5)
            }),
            None
        ]
    );
    assert_eq!(fence(&redis, "p-old").await?, Some(4));
    assert_eq!(fence(&redis, "p-current").await?, Some(5));
    assert_eq!(fence(&redis, "p-uncached").await?, Some(1));
    let fence_ttl: i64 = redis
        .connection()
        .await?
        .ttl(redis.keys().fence(&product("p-old")))
        .await?;
    assert!((590..=600).contains(&fence_ttl), "fence TTL {fence_ttl}");
    let entry_ttl: i64 = redis
        .connection()
        .await?
        .ttl(redis.keys().entry(&product("p-current")))
        .await?;
    assert!((290..=300).contains(&entry_ttl), "entry TTL {entry_ttl}");
    Ok(())
}

#[tokio::test]
async fn a_reader_that_loaded_the_old_version_cannot_cache_it_after_the_invalidation() -> Result<()>
{
    let redis = TestRedis::new()?;
    let cache = cache(&redis).await?;
    let p = product("sku-race");
    let database_version = AtomicI64::new(1);

    // Reader: cache miss, loads version 1 from the database...
    assert_eq!(cache.get_many(std::slice::from_ref(&p)).await?, [None]);
    let loaded = database_version.load(Ordering::SeqCst);
    // ...meanwhile the writer commits version 2, and the pipeline's cache step runs...
    database_version.store(2, Ordering::SeqCst);
    cache.invalidate(&[changed("sku-race", 2)]).await?;
    // ...then the reader populates what it loaded.
    let outcome = cache.populate(&p, loaded, &json(loaded), TTL).await?;

    assert_eq!(outcome, PopulateOutcome::Fenced { fence: 2 });
    assert_eq!(
        cache.get_many(std::slice::from_ref(&p)).await?,
        [None],
        "the next reader goes to the database"
    );
    assert_eq!(
        cache.populate(&p, 2, &json(2), TTL).await?,
        PopulateOutcome::Stored
    );
    assert_eq!(
        cache.get_many(std::slice::from_ref(&p)).await?,
        [Some(CacheEntry {
            version: 2,
            json: json(2)
        })]
    );
    Ok(())
}

#[tokio::test]
async fn without_the_fence_the_same_interleaving_leaves_a_stale_entry() -> Result<()> {
    // The hazard the scheme exists for: a plain cache-aside SET after the invalidation.
    let redis = TestRedis::new()?;
    let cache = cache(&redis).await?;
    let p = product("sku-naive");

    let loaded = 1;
    cache.invalidate(&[changed("sku-naive", 2)]).await?;
    let _: () = redis
        .connection()
        .await?
        .set(redis.keys().entry(&p), format!("{loaded}|{}", json(loaded)))
        .await?;

    let cached = cache.get_many(std::slice::from_ref(&p)).await?;
    assert_eq!(
        cached[0].as_ref().map(|e| e.version),
        Some(1),
        "a naive SET serves version 1 after 2 committed"
    );
    assert_eq!(
        fence(&redis, "sku-naive").await?,
        Some(2),
        "the fence knew better"
    );
    Ok(())
}

#[tokio::test]
async fn a_stale_entry_cached_just_before_the_invalidation_is_evicted_by_it() -> Result<()> {
    let redis = TestRedis::new()?;
    let cache = cache(&redis).await?;
    let p = product("sku-early");

    // Reader loaded 1; writer committed 2; reader populates before the cache step runs.
    assert_eq!(
        cache.populate(&p, 1, &json(1), TTL).await?,
        PopulateOutcome::Stored
    );
    let CacheInvalidateOutput { evicted, fenced } =
        cache.invalidate(&[changed("sku-early", 2)]).await?;

    assert_eq!((evicted, fenced), (1, 1));
    assert_eq!(cache.get_many(std::slice::from_ref(&p)).await?, [None]);
    Ok(())
}

#[tokio::test]
async fn invalidations_arriving_out_of_order_never_lower_a_fence() -> Result<()> {
    let redis = TestRedis::new()?;
    let cache = cache(&redis).await?;
    let p = product("sku-ooo");

    let newer = cache.invalidate(&[changed("sku-ooo", 5)]).await?;
    let older = cache.invalidate(&[changed("sku-ooo", 3)]).await?;

    assert_eq!(
        newer,
        CacheInvalidateOutput {
            evicted: 0,
            fenced: 1
        }
    );
    assert_eq!(
        older,
        CacheInvalidateOutput::default(),
        "an older invalidation raises nothing"
    );
    assert_eq!(fence(&redis, "sku-ooo").await?, Some(5));
    assert_eq!(
        cache.populate(&p, 4, &json(4), TTL).await?,
        PopulateOutcome::Fenced { fence: 5 }
    );
    assert_eq!(
        cache.populate(&p, 5, &json(5), TTL).await?,
        PopulateOutcome::Stored
    );
    assert_eq!(
        cache.invalidate(&[changed("sku-ooo", 3)]).await?,
        CacheInvalidateOutput::default(),
        "nor evicts a newer entry"
    );
    assert_eq!(
        cache.get_many(std::slice::from_ref(&p)).await?[0]
            .as_ref()
            .map(|e| e.version),
        Some(5)
    );
    Ok(())
}

#[tokio::test]
async fn populate_never_replaces_a_newer_or_equal_version() -> Result<()> {
    let redis = TestRedis::new()?;
    let cache = cache(&redis).await?;
    let p = product("sku-newest");

    assert_eq!(
        cache.populate(&p, 3, &json(3), TTL).await?,
        PopulateOutcome::Stored
    );
    assert_eq!(
        cache.populate(&p, 2, &json(2), TTL).await?,
        PopulateOutcome::AlreadyCurrent { cached: 3 }
    );
    assert_eq!(
        cache.populate(&p, 3, "{}", TTL).await?,
        PopulateOutcome::AlreadyCurrent { cached: 3 }
    );
    assert_eq!(
        cache.populate(&p, 4, &json(4), TTL).await?,
        PopulateOutcome::Stored
    );

    assert_eq!(
        cache.get_many(std::slice::from_ref(&p)).await?,
        [Some(CacheEntry {
            version: 4,
            json: json(4)
        })]
    );
    Ok(())
}

#[tokio::test]
async fn a_cached_absence_is_evicted_by_the_products_first_version() -> Result<()> {
    let redis = TestRedis::new()?;
    let cache = cache(&redis).await?;
    let p = product("sku-new");
    cache
        .populate(&p, ABSENT_VERSION, "null", Duration::from_secs(5))
        .await?;
    assert!(
        cache.get_many(std::slice::from_ref(&p)).await?[0]
            .as_ref()
            .is_some_and(CacheEntry::is_absent)
    );

    let evicted = cache.invalidate(&[changed("sku-new", 1)]).await?.evicted;

    assert_eq!(evicted, 1);
    assert_eq!(cache.get_many(std::slice::from_ref(&p)).await?, [None]);
    Ok(())
}

#[tokio::test]
async fn racing_readers_never_leave_a_version_older_than_the_last_invalidation() -> Result<()> {
    let redis = TestRedis::new()?;
    let cache = cache(&redis).await?;
    let p = product("sku-stress");
    let database = Arc::new(AtomicI64::new(1));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Readers: load from the "database", wait a little, populate what they loaded.
    let mut readers = Vec::new();
    for r in 0..4u64 {
        let (cache, database, done, p) = (cache.clone(), database.clone(), done.clone(), p.clone());
        readers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !done.load(Ordering::SeqCst) {
                let loaded = database.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros((i * 37 + r * 11) % 400)).await;
                cache.populate(&p, loaded, &json(loaded), TTL).await?;
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    // Writer: commit the next version, run the cache step, then check.
    for version in 2..=60 {
        database.store(version, Ordering::SeqCst);
        cache.invalidate(&[changed("sku-stress", version)]).await?;
        let cached = cache.get_many(std::slice::from_ref(&p)).await?;
        if let Some(entry) = &cached[0] {
            assert!(
                entry.version >= version,
                "version {} cached after {version} was invalidated",
                entry.version
            );
        }
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await??;
    }
    Ok(())
}

#[tokio::test]
async fn an_entry_holding_the_wrong_type_fails_the_script_as_internal() -> Result<()> {
    let redis = TestRedis::new()?;
    let cache = cache(&redis).await?;
    let _: () = redis
        .connection()
        .await?
        .hset(redis.keys().entry(&product("sku-hash")), "f", "v")
        .await?;

    let e = cache
        .invalidate(&[changed("sku-hash", 2)])
        .await
        .expect_err("WRONGTYPE");

    assert_eq!(e.kind, ErrorKind::Internal, "{}", e.detailed());
    Ok(())
}

#[tokio::test]
async fn a_tls_url_to_a_plain_server_fails_as_transient_without_panicking() -> Result<()> {
    let redis = TestRedis::new()?;
    let plain = redis.url().replacen("redis://", "rediss://", 1);
    let config = RedisConfig {
        endpoint: RedisEndpoint::Url(inventory::redact::SecretUrl::new(plain)),
        ..redis.cache_config(60)
    };
    let cache = RedisProductCache::connect(&config, None)?;

    let e = cache
        .get_many(&[product("sku-tls")])
        .await
        .expect_err("no TLS there");

    assert_eq!(e.kind, ErrorKind::DependencyUnavailable, "{}", e.detailed());
    Ok(())
}

/// Calls per command since the server started, from INFO commandstats.
async fn command_calls(
    conn: &mut redis::aio::ConnectionManager,
) -> Result<std::collections::HashMap<String, u64>> {
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

#[tokio::test]
async fn invalidating_many_products_is_one_script_call_and_reading_them_one_mget() -> Result<()> {
    // A private server, so no other test's commands are counted.
    let server = PasswordRedis::start("count-only")?;
    let url = format!("redis://:count-only@127.0.0.1:{}", server.port());
    let config = RedisConfig {
        endpoint: RedisEndpoint::Url(inventory::redact::SecretUrl::new(url.clone())),
        key_prefix: "t:".into(),
        fence_ttl_secs: 60,
    };
    let cache = RedisProductCache::connect(&config, None)?;
    let mut admin = redis::aio::ConnectionManager::new(redis::Client::open(url.as_str())?).await?;
    let products: Vec<ChangedProduct> = (0..50).map(|i| changed(&format!("sku-{i}"), 7)).collect();
    let ids: Vec<ProductId> = products.iter().map(|p| p.product_id.clone()).collect();
    cache.invalidate(&products[..1]).await?; // connects and loads the script

    let before = command_calls(&mut admin).await?;
    let fenced = cache.invalidate(&products).await?.fenced;
    let entries = cache.get_many(&ids).await?;
    let after = command_calls(&mut admin).await?;

    assert_eq!(fenced, 49);
    assert_eq!(entries.len(), 50);
    let delta: Vec<(String, u64)> = after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter_map(|(name, n)| {
            let d = n - before.get(name).copied().unwrap_or(0);
            (d > 0).then(|| (name.clone(), d))
        })
        .collect();
    let mut delta = delta;
    delta.sort();
    // commandstats also counts the GETs and SETs the script runs inside Redis: 2 GETs per
    // product, a SET per raised fence. What the client sent is the one EVALSHA and one MGET.
    assert_eq!(
        delta,
        [
            ("evalsha".to_owned(), 1),
            ("get".to_owned(), 100),
            ("mget".to_owned(), 1),
            ("set".to_owned(), 49)
        ]
    );
    Ok(())
}
