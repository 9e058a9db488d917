//! The read path's ports in memory: the projection and event store behind
//! [`ProductReader`], and the versioned, fenced cache behind [`CacheRead`].

use crate::domain::ids::ProductId;
use crate::error::{ErrorKind, PipelineError};
use crate::ports::{CacheFill, CacheRead, Cached, FillOutcome, ProductReader};
use crate::read::{HistoryEvent, HistoryQuery, ProductView};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What runs once, right after the next load of products (a writer racing the reader).
type Hook = Box<dyn FnOnce() + Send>;

/// A [`ProductReader`] in memory: products by id, each product's events, and since when
/// events are held. It counts its product loads, can run a hook between the next load and
/// the fill that follows it, and can fail like an unreachable database.
#[derive(Default)]
pub struct MemoryProductReader {
    products: Mutex<BTreeMap<ProductId, ProductView>>,
    history: Mutex<BTreeMap<ProductId, Vec<HistoryEvent>>>,
    retained_since: Mutex<Option<DateTime<Utc>>>,
    failing: Mutex<Option<ErrorKind>>,
    queries: AtomicUsize,
    after_load: Mutex<Option<Hook>>,
}

impl std::fmt::Debug for MemoryProductReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryProductReader")
            .field("products", &self.products)
            .field("history", &self.history)
            .field("retained_since", &self.retained_since)
            .field("failing", &self.failing)
            .field("queries", &self.queries)
            .finish_non_exhaustive()
    }
}

impl MemoryProductReader {
    /// A reader holding `views` (and no events).
    pub fn with(views: &[ProductView]) -> Self {
        let reader = Self::default();
        for v in views {
            reader.put(v.clone());
        }
        reader
    }

    /// A reader whose every call fails with `kind`.
    pub fn failing(kind: ErrorKind) -> Self {
        let reader = Self::default();
        reader.fail(Some(kind));
        reader
    }

    /// The same reader, with `events` as `product`'s history (in any order).
    pub fn with_history(self, product: ProductId, events: Vec<HistoryEvent>) -> Self {
        self.history.lock().expect("lock").insert(product, events);
        self
    }

    /// The same reader, saying that retention dropped the events recorded before `since`.
    pub fn with_retained_since(self, since: DateTime<Utc>) -> Self {
        *self.retained_since.lock().expect("lock") = Some(since);
        self
    }

    /// Adds or replaces a product (a write committed).
    pub fn put(&self, view: ProductView) {
        self.products
            .lock()
            .expect("lock")
            .insert(view.product_id.clone(), view);
    }

    /// From now on every call fails with `kind`, or, with `None`, none does.
    pub fn fail(&self, kind: Option<ErrorKind>) {
        *self.failing.lock().expect("lock") = kind;
    }

    /// Runs `hook` once, right after the next successful load of products and before the
    /// caller gets the answer: what it writes is newer than what that load returns.
    pub fn after_next_load(&self, hook: impl FnOnce() + Send + 'static) {
        *self.after_load.lock().expect("lock") = Some(Box::new(hook));
    }

    /// How many product loads (queries) were asked for, failed ones included.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), PipelineError> {
        match *self.failing.lock().expect("lock") {
            Some(kind) => Err(PipelineError::new(kind, "database unreachable")),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ProductReader for MemoryProductReader {
    async fn load_products(&self, ids: &[ProductId]) -> Result<Vec<ProductView>, PipelineError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let loaded = {
            let products = self.products.lock().expect("lock");
            ids.iter()
                .filter_map(|id| products.get(id).cloned())
                .collect()
        };
        let hook = self.after_load.lock().expect("lock").take();
        if let Some(hook) = hook {
            hook();
        }
        Ok(loaded)
    }

    async fn load_history(
        &self,
        product: &ProductId,
        query: HistoryQuery,
    ) -> Result<Vec<HistoryEvent>, PipelineError> {
        self.check()?;
        let mut events: Vec<HistoryEvent> = self
            .history
            .lock()
            .expect("lock")
            .get(product)
            .into_iter()
            .flatten()
            .filter(|e| query.before.is_none_or(|before| e.seq < before))
            .cloned()
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.seq));
        events.truncate(query.limit);
        Ok(events)
    }

    async fn history_retained_since(&self) -> Result<Option<DateTime<Utc>>, PipelineError> {
        self.check()?;
        Ok(*self.retained_since.lock().expect("lock"))
    }
}

/// The version a negative entry ("not in the database") is cached and fenced at, as the
/// Redis cache does: lower than any product's first version.
pub const ABSENT_VERSION: i64 = 0;

/// One cached entry: the version it was filled at, what it holds, and its TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub version: i64,
    pub state: Cached,
    pub ttl: Duration,
}

/// A [`CacheRead`] in memory with the rules of the Redis cache's scripts: a fill is stored
/// only when no invalidation for a newer version ran (the fence) and nothing as new is
/// cached (`populate.lua`); an invalidation raises the fence and evicts older entries
/// (`invalidate.lua`). It counts its calls and can fail like an unreachable cache. TTLs are
/// kept, not enforced.
#[derive(Debug, Default)]
pub struct MemoryProductCache {
    entries: Mutex<BTreeMap<ProductId, CacheEntry>>,
    fences: Mutex<BTreeMap<ProductId, i64>>,
    gets: AtomicUsize,
    fills: AtomicUsize,
    failing: Mutex<Option<ErrorKind>>,
}

impl MemoryProductCache {
    /// From now on every call fails with `kind`, or, with `None`, none does.
    pub fn fail(&self, kind: Option<ErrorKind>) {
        *self.failing.lock().expect("lock") = kind;
    }

    /// What the pipeline does once `product`'s `version` committed: raises its fence to
    /// `version` (never lowers it) and evicts a cached entry older than `version`.
    pub fn invalidate(&self, product: &ProductId, version: i64) {
        let mut fences = self.fences.lock().expect("lock");
        let fence = fences.entry(product.clone()).or_insert(version);
        *fence = (*fence).max(version);
        let mut entries = self.entries.lock().expect("lock");
        if entries.get(product).is_some_and(|e| e.version < version) {
            entries.remove(product);
        }
    }

    /// What is cached for `product`.
    pub fn entry(&self, product: &ProductId) -> Option<CacheEntry> {
        self.entries.lock().expect("lock").get(product).cloned()
    }

    /// How many reads (`get_many`) were asked for, failed ones included.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    /// How many fills were asked for, failed ones included.
    pub fn fills(&self) -> usize {
        self.fills.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), PipelineError> {
        match *self.failing.lock().expect("lock") {
            Some(kind) => Err(PipelineError::new(kind, "cache unreachable")),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl CacheRead for MemoryProductCache {
    async fn get_many(&self, products: &[ProductId]) -> Result<Vec<Option<Cached>>, PipelineError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let entries = self.entries.lock().expect("lock");
        Ok(products
            .iter()
            .map(|p| entries.get(p).map(|e| e.state.clone()))
            .collect())
    }

    async fn fill(&self, fills: &[CacheFill]) -> Result<Vec<FillOutcome>, PipelineError> {
        self.fills.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        let fences = self.fences.lock().expect("lock");
        let mut entries = self.entries.lock().expect("lock");
        Ok(fills
            .iter()
            .map(|f| {
                let version = match &f.state {
                    Cached::Product { version, .. } => *version,
                    Cached::Absent => ABSENT_VERSION,
                };
                if let Some(&fence) = fences.get(&f.product_id).filter(|&&fence| version < fence) {
                    return FillOutcome::Fenced { fence };
                }
                if let Some(cached) = entries
                    .get(&f.product_id)
                    .map(|e| e.version)
                    .filter(|&cached| cached >= version)
                {
                    return FillOutcome::AlreadyCurrent { cached };
                }
                entries.insert(
                    f.product_id.clone(),
                    CacheEntry {
                        version,
                        state: f.state.clone(),
                        ttl: f.ttl,
                    },
                );
                FillOutcome::Stored
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> ProductId {
        ProductId::parse(s).expect("valid id")
    }

    fn fill(product: &str, state: Cached) -> CacheFill {
        CacheFill {
            product_id: pid(product),
            state,
            ttl: Duration::from_secs(60),
        }
    }

    fn product(version: i64) -> Cached {
        Cached::Product {
            version,
            json: format!("{{\"version\":{version}}}"),
        }
    }

    #[tokio::test]
    async fn the_cache_keeps_the_populate_and_invalidate_scripts_rules() {
        let cache = MemoryProductCache::default();
        cache.invalidate(&pid("a"), 5);
        cache.invalidate(&pid("a"), 3);

        let outcomes = cache
            .fill(&[
                fill("a", product(4)),
                fill("a", product(5)),
                fill("a", product(5)),
                fill("b", Cached::Absent),
                fill("b", product(1)),
            ])
            .await
            .expect("filled");
        cache.invalidate(&pid("a"), 5);
        let kept = cache.entry(&pid("a")).map(|e| e.version);
        cache.invalidate(&pid("a"), 6);
        cache.invalidate(&pid("b"), 1);

        assert_eq!(
            outcomes,
            [
                FillOutcome::Fenced { fence: 5 },
                FillOutcome::Stored,
                FillOutcome::AlreadyCurrent { cached: 5 },
                FillOutcome::Stored,
                FillOutcome::Stored,
            ],
            "an older fence does not lower a newer one; a product replaces its negative entry"
        );
        assert_eq!(kept, Some(5), "an invalidation evicts only older entries");
        assert_eq!(cache.entry(&pid("a")), None);
        assert_eq!(
            cache.entry(&pid("b")).map(|e| e.version),
            Some(1),
            "not older than the fence"
        );
        let late_negative = cache
            .fill(&[fill("c", Cached::Absent)])
            .await
            .expect("filled");
        assert_eq!(late_negative, [FillOutcome::Stored]);
        cache.invalidate(&pid("c"), 1);
        assert_eq!(cache.entry(&pid("c")), None, "a negative entry is evicted");
        assert_eq!(
            cache
                .fill(&[fill("c", Cached::Absent)])
                .await
                .expect("filled"),
            [FillOutcome::Fenced { fence: 1 }]
        );
        assert_eq!((cache.gets(), cache.fills()), (0, 3));
    }

    #[tokio::test]
    async fn a_failing_reader_fails_every_call_and_counts_its_queries() {
        let reader = MemoryProductReader::failing(ErrorKind::Internal);

        let load = reader.load_products(&[pid("a")]).await;
        let history = reader
            .load_history(&pid("a"), HistoryQuery::default())
            .await;
        let since = reader.history_retained_since().await;

        assert_eq!(load.map_err(|e| e.kind), Err(ErrorKind::Internal));
        assert_eq!(history.map_err(|e| e.kind), Err(ErrorKind::Internal));
        assert_eq!(since.map_err(|e| e.kind), Err(ErrorKind::Internal));
        assert_eq!(reader.queries(), 1);
    }
}
