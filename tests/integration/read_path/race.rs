//! SPEC invariant 4 on the read path, with the interleaving forced against real PostgreSQL and
//! Redis: a reader loads the old state from the database; the `persist` handler commits a
//! newer version; the `cache-invalidate` handler runs; only then does the reader fill the
//! cache. Run once through the real fenced fill (nothing stale may stay cached) and once
//! through a plain `SET` (the naive cache-aside the scheme exists for), to show the test
//! tells them apart.

use super::{Services, pid, version_of};
use anyhow::{Context as _, Result};
use inventory::CacheKeys;
use inventory::adapters::cache::RedisProductCache;
use inventory::adapters::postgres::load_summary;
use inventory::ports::{CacheFill, CacheRead, Cached, FillOutcome, ProductReader};
use inventory::read::{
    HistoryEvent, HistoryQuery, ProductReads, ProductView, ReadPolicy, ReadStats,
};
use inventory::{PipelineError, ProductId};
use redis::aio::ConnectionManager;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// A reader that, after loading, says so and waits until the test lets it go on.
struct PausingReader {
    inner: Arc<dyn ProductReader>,
    loaded: Mutex<Option<oneshot::Sender<()>>>,
    resume: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

#[async_trait::async_trait]
impl ProductReader for PausingReader {
    async fn load_products(&self, ids: &[ProductId]) -> Result<Vec<ProductView>, PipelineError> {
        let loaded = self.inner.load_products(ids).await?;
        let signal = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(signal) = signal {
            let _ = signal.send(());
            if let Some(resume) = self.resume.lock().await.take() {
                let _ = resume.await;
            }
        }
        Ok(loaded)
    }

    async fn load_history(
        &self,
        p: &ProductId,
        q: HistoryQuery,
    ) -> Result<Vec<HistoryEvent>, PipelineError> {
        self.inner.load_history(p, q).await
    }
}

/// Naive cache-aside: reads like the real cache, fills with a plain `SET ... EX`.
struct PlainSetCache {
    real: RedisProductCache,
    conn: ConnectionManager,
    keys: CacheKeys,
}

#[async_trait::async_trait]
impl CacheRead for PlainSetCache {
    async fn get_many(&self, ids: &[ProductId]) -> Result<Vec<Option<Cached>>, PipelineError> {
        CacheRead::get_many(&self.real, ids).await
    }

    async fn fill(&self, fills: &[CacheFill]) -> Result<Vec<FillOutcome>, PipelineError> {
        let mut conn = self.conn.clone();
        for f in fills {
            let value = match &f.state {
                Cached::Product { version, json } => format!("{version}|{json}"),
                Cached::Absent => "0|null".to_owned(),
            };
            redis::cmd("SET")
                .arg(self.keys.entry(&f.product_id))
                .arg(value)
                .arg("EX")
                .arg(f.ttl.as_secs())
                .exec_async(&mut conn)
                .await
                .map_err(|e| {
                    PipelineError::with_source(inventory::ErrorKind::Internal, "SET failed", e)
                })?;
        }
        Ok(vec![FillOutcome::Stored; fills.len()])
    }
}

/// What the race left: the racing read's answer and stats, what a fresh read answers
/// afterwards (through the real read path), and the database's version.
struct RaceOutcome {
    racing: Option<i64>,
    racing_stats: ReadStats,
    next_read: Option<i64>,
    database: Option<i64>,
}

/// Forces load -> persist -> cache-invalidate -> fill for `product`, which exists at
/// minute 1 first when `exists_before` is set.
async fn race(
    s: &Services,
    racing_cache: Arc<dyn CacheRead>,
    product: &str,
    exists_before: bool,
) -> Result<RaceOutcome> {
    if exists_before {
        s.persist(product, 1, 1).await?;
    }
    let (loaded_tx, loaded_rx) = oneshot::channel();
    let (resume_tx, resume_rx) = oneshot::channel();
    let reader = PausingReader {
        inner: s.reader(),
        loaded: Mutex::new(Some(loaded_tx)),
        resume: tokio::sync::Mutex::new(Some(resume_rx)),
    };
    let racing_reads = Arc::new(ProductReads::new(
        Arc::new(reader),
        racing_cache,
        ReadPolicy::default(),
    ));
    let id = pid(product);

    // 1. The reader misses and loads the current state, then waits before filling.
    let racing = tokio::spawn({
        let (reads, id) = (racing_reads.clone(), id.clone());
        async move { reads.read_products(&[id]).await }
    });
    loaded_rx.await.context("the reader never loaded")?;
    // 2. A newer version commits, 3. and the pipeline's cache step runs.
    let persisted = s.persist(product, 2, 2).await?;
    s.invalidate(&persisted).await?;
    let committed = version_of(&persisted, product)?;
    // 4. Only now does the reader fill the cache with what it loaded.
    let _ = resume_tx.send(());
    let racing = racing.await??;

    let fresh = ProductReads::new(s.reader(), Arc::new(s.cache.clone()), ReadPolicy::default());
    let next = fresh.read_products(std::slice::from_ref(&id)).await?;
    let database = load_summary(&s.db.db, &id).await?.map(|p| p.version);
    assert_eq!(database, Some(committed));
    Ok(RaceOutcome {
        racing: racing.products[0].product.as_ref().map(|p| p.version),
        racing_stats: racing.stats,
        next_read: next.products[0].product.as_ref().map(|p| p.version),
        database,
    })
}

async fn plain_set_cache(s: &Services) -> Result<Arc<dyn CacheRead>> {
    Ok(Arc::new(PlainSetCache {
        real: s.cache.clone(),
        conn: s.redis.connection().await?,
        keys: s.redis.keys(),
    }))
}

#[tokio::test]
async fn a_read_that_loaded_the_old_version_cannot_cache_it_after_the_newer_one_was_invalidated()
-> Result<()> {
    let s = Services::start().await?;

    let out = race(&s, Arc::new(s.cache.clone()), "sku-race", true).await?;

    assert!(
        out.racing.is_some_and(|v| Some(v) < out.database),
        "the racing read answered what it loaded"
    );
    assert_eq!(
        out.racing_stats.fenced, 1,
        "its fill was refused by the fence"
    );
    assert_eq!(
        out.next_read, out.database,
        "the next read is as new as the database"
    );
    s.cleanup().await
}

#[tokio::test]
async fn the_same_interleaving_with_a_plain_set_leaves_the_old_version_cached() -> Result<()> {
    // The hazard the fence exists for: this is what the test above would see without it.
    let s = Services::start().await?;

    let out = race(&s, plain_set_cache(&s).await?, "sku-naive", true).await?;

    assert_eq!(out.racing_stats.fenced, 0);
    assert!(
        out.next_read < out.database,
        "stale: the cache serves {:?} while the database has {:?}",
        out.next_read,
        out.database
    );
    s.cleanup().await
}

#[tokio::test]
async fn a_negative_loaded_before_the_product_existed_cannot_hide_it_after_its_invalidation()
-> Result<()> {
    let s = Services::start().await?;

    let out = race(&s, Arc::new(s.cache.clone()), "sku-new", false).await?;

    assert_eq!(out.racing, None, "the racing read found nothing");
    assert_eq!(
        out.racing_stats.fenced, 1,
        "its negative entry was refused by the fence"
    );
    assert_eq!(
        out.next_read, out.database,
        "the product shows at once, not after the negative TTL"
    );
    s.cleanup().await
}

#[tokio::test]
async fn the_same_negative_interleaving_with_a_plain_set_hides_the_new_product() -> Result<()> {
    let s = Services::start().await?;

    let out = race(&s, plain_set_cache(&s).await?, "sku-hidden", false).await?;

    assert_eq!(
        out.next_read, None,
        "hidden although the database has {:?}",
        out.database
    );
    s.cleanup().await
}

#[tokio::test]
async fn concurrent_readers_never_leave_the_cache_older_than_the_database_after_an_update()
-> Result<()> {
    let s = Services::start().await?;
    s.update("sku-busy", 1, 0).await?;
    let reads = Arc::new(ProductReads::new(
        s.reader(),
        Arc::new(s.cache.clone()),
        ReadPolicy::default(),
    ));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (reads, done) = (reads.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    reads.read_products(&[pid("sku-busy")]).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();

    let mut stale = Vec::new();
    for minute in 1..=30 {
        let version = s.update("sku-busy", i64::from(minute), minute).await?;
        // The update's pipeline finished: from now on no read may see anything older.
        let entry = CacheRead::get_many(&s.cache, &[pid("sku-busy")]).await?;
        if let Some(Some(Cached::Product {
            version: cached, ..
        })) = entry.first()
            && *cached < version
        {
            stale.push((version, *cached));
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in readers {
        r.await??;
    }

    assert!(
        stale.is_empty(),
        "(committed, cached) pairs with a stale cache: {stale:?}"
    );
    s.cleanup().await
}
