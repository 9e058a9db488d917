//! The read path's use case: cache-aside over the product projection, race-free with the
//! pipeline's invalidation (SPEC invariant 4), and never failing a read because of the cache.
//!
//! A read asks the cache for every product in one round trip; the misses are read from the
//! database in one query and put back through the cache's fenced, versioned fill, so a reader
//! that loaded a version just before a newer one committed (and was invalidated) can never
//! cache the old one. Unknown products are cached as absent, briefly, under the same fence:
//! the product's first invalidation evicts the negative entry, and a negative loaded before
//! the product was created is refused once that invalidation ran.
//!
//! When the cache fails with a transient error, the read is served from the database, a
//! warning is logged, and the cache is skipped for [`ReadPolicy::cache_pause`] so an
//! unreachable cache costs one timeout per pause, not one per request.

mod view;

#[cfg(test)]
mod tests;

pub use view::{
    DEFAULT_HISTORY_LIMIT, HistoryEvent, HistoryPage, HistoryQuery, HistoryQueryError,
    MAX_BATCH_PRODUCTS, MAX_HISTORY_LIMIT, ProductView, SupplierOffer,
};

use crate::domain::ids::ProductId;
use crate::error::PipelineError;
use crate::ports::{CacheFill, CacheRead, Cached, FillOutcome, ProductReader};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long entries live and how the read path treats a failing cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPolicy {
    /// TTL of a cached product. Invalidation, not the TTL, keeps entries fresh; the TTL only
    /// bounds memory and the damage of an invalidation that never ran.
    pub entry_ttl: Duration,
    /// TTL of a cached "unknown product": short, so a flood of unknown ids is absorbed while
    /// a product whose invalidation was lost shows up within seconds anyway.
    pub absent_ttl: Duration,
    /// How long to skip the cache after it failed with a transient error.
    pub cache_pause: Duration,
}

impl Default for ReadPolicy {
    fn default() -> Self {
        Self {
            entry_ttl: Duration::from_secs(300),
            absent_ttl: Duration::from_secs(5),
            cache_pause: Duration::from_secs(5),
        }
    }
}

/// A product's state as JSON ([`ProductView`]) and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRead {
    pub version: i64,
    pub json: String,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Database,
}

/// The answer for one product: its state, or `None` when it is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductLookup {
    pub product_id: ProductId,
    pub product: Option<ProductRead>,
    pub source: Source,
}

/// What one read did, for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Products answered by the cache (negative entries included).
    pub hits: usize,
    /// Of those, products the cache knows to be unknown.
    pub absent_hits: usize,
    /// Products read from the database.
    pub misses: usize,
    /// Database queries made.
    pub db_queries: usize,
    /// Fills stored, refused by a fence, and not needed.
    pub stored: usize,
    pub fenced: usize,
    pub already_current: usize,
    /// Cache calls that failed.
    pub cache_errors: usize,
    /// Whether the cache was skipped because it failed recently.
    pub cache_skipped: bool,
}

/// The answers of one read, in the order asked (duplicates once), and what it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRead {
    pub products: Vec<ProductLookup>,
    pub stats: ReadStats,
}

/// The read path: cache-aside over the projection. Build it once per process and share it.
pub struct ProductReads {
    reader: Arc<dyn ProductReader>,
    cache: Arc<dyn CacheRead>,
    policy: ReadPolicy,
    cache_paused_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ProductReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductReads")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ProductReads {
    pub fn new(
        reader: Arc<dyn ProductReader>,
        cache: Arc<dyn CacheRead>,
        policy: ReadPolicy,
    ) -> Self {
        Self {
            reader,
            cache,
            policy,
            cache_paused_until: Mutex::new(None),
        }
    }

    pub fn policy(&self) -> &ReadPolicy {
        &self.policy
    }

    /// Reads `products` (at most [`MAX_BATCH_PRODUCTS`], duplicates read once): one cache
    /// round trip, one query for the misses, one fill round trip. Fails only when the
    /// database is needed and fails; a failing cache is logged and worked around.
    #[tracing::instrument(skip_all, fields(products = products.len()))]
    pub async fn read_products(&self, products: &[ProductId]) -> Result<BatchRead, PipelineError> {
        let mut seen = HashSet::with_capacity(products.len());
        let unique: Vec<ProductId> = products
            .iter()
            .filter(|p| seen.insert(*p))
            .cloned()
            .collect();
        if unique.len() > MAX_BATCH_PRODUCTS {
            return Err(PipelineError::invalid_payload(format!(
                "at most {MAX_BATCH_PRODUCTS} products per read, got {}",
                unique.len()
            )));
        }
        let mut stats = ReadStats::default();
        let cached = self.cached(&unique, &mut stats).await;
        let cache_usable = cached.is_some();
        let cached = cached.unwrap_or_else(|| vec![None; unique.len()]);

        let mut answers: Vec<Option<ProductLookup>> = Vec::with_capacity(unique.len());
        let mut misses: Vec<ProductId> = Vec::new();
        for (product_id, entry) in unique.iter().zip(cached) {
            let product = match entry {
                Some(Cached::Product { version, json }) => Some(ProductRead { version, json }),
                Some(Cached::Absent) => {
                    stats.absent_hits += 1;
                    None
                }
                None => {
                    misses.push(product_id.clone());
                    answers.push(None);
                    continue;
                }
            };
            stats.hits += 1;
            answers.push(Some(ProductLookup {
                product_id: product_id.clone(),
                product,
                source: Source::Cache,
            }));
        }
        if !misses.is_empty() {
            let loaded = self.load(&misses, &mut stats).await?;
            if cache_usable {
                self.fill(&misses, &loaded, &mut stats).await;
            }
            for slot in answers.iter_mut().zip(&unique).filter(|(a, _)| a.is_none()) {
                let (answer, product_id) = slot;
                *answer = Some(ProductLookup {
                    product_id: product_id.clone(),
                    product: loaded.get(product_id).cloned(),
                    source: Source::Database,
                });
            }
        }
        Ok(BatchRead {
            products: answers.into_iter().flatten().collect(),
            stats,
        })
    }

    /// One page of `product`'s history, or `None` when the product has no events at all (and,
    /// once days have left the database, no state either).
    /// Read from the event store directly: pages are small index range scans.
    #[tracing::instrument(skip_all, fields(product_id = %product))]
    pub async fn read_history(
        &self,
        product: &ProductId,
        query: HistoryQuery,
    ) -> Result<Option<HistoryPage>, PipelineError> {
        let probe = HistoryQuery {
            before: query.before,
            limit: query.limit + 1,
        };
        let mut events = self.reader.load_history(product, probe).await?;
        if events.is_empty() && query.before.is_none() {
            // No event held: an unknown product, or one whose every event left the database
            // (retention), which still has its state and gets a page that says since when.
            let Some(since) = self.reader.history_retained_since().await? else {
                return Ok(None);
            };
            if self
                .reader
                .load_products(std::slice::from_ref(product))
                .await?
                .is_empty()
            {
                return Ok(None);
            }
            return Ok(Some(HistoryPage {
                product_id: product.clone(),
                events,
                next_before: None,
                retained_since: Some(since),
            }));
        }
        let (next_before, retained_since) = if events.len() > query.limit {
            events.truncate(query.limit);
            (events.last().map(|e| e.seq), None)
        } else {
            (None, self.reader.history_retained_since().await?)
        };
        Ok(Some(HistoryPage {
            product_id: product.clone(),
            events,
            next_before,
            retained_since,
        }))
    }

    /// The cache's entries, or `None` when the cache is paused or failed.
    async fn cached(
        &self,
        products: &[ProductId],
        stats: &mut ReadStats,
    ) -> Option<Vec<Option<Cached>>> {
        if self.cache_paused() {
            stats.cache_skipped = true;
            return None;
        }
        match self.cache.get_many(products).await {
            Ok(entries) if entries.len() == products.len() => Some(entries),
            Ok(entries) => {
                tracing::error!(
                    asked = products.len(),
                    answered = entries.len(),
                    "the cache answered for the wrong number of products; reading the database"
                );
                stats.cache_errors += 1;
                None
            }
            Err(e) => {
                stats.cache_errors += 1;
                self.cache_failed("read", &e);
                None
            }
        }
    }

    /// Loads the misses in one query, as JSON by product.
    async fn load(
        &self,
        misses: &[ProductId],
        stats: &mut ReadStats,
    ) -> Result<HashMap<ProductId, ProductRead>, PipelineError> {
        stats.misses += misses.len();
        stats.db_queries += 1;
        let views = self.reader.load_products(misses).await?;
        views
            .into_iter()
            .map(|v| {
                let json = v.to_json()?;
                Ok((
                    v.product_id,
                    ProductRead {
                        version: v.version,
                        json,
                    },
                ))
            })
            .collect()
    }

    /// Puts what was loaded (found or not) back through the fenced fill.
    async fn fill(
        &self,
        misses: &[ProductId],
        loaded: &HashMap<ProductId, ProductRead>,
        stats: &mut ReadStats,
    ) {
        let fills: Vec<CacheFill> = misses
            .iter()
            .map(|p| match loaded.get(p) {
                Some(read) => CacheFill {
                    product_id: p.clone(),
                    state: Cached::Product {
                        version: read.version,
                        json: read.json.clone(),
                    },
                    ttl: self.policy.entry_ttl,
                },
                None => CacheFill {
                    product_id: p.clone(),
                    state: Cached::Absent,
                    ttl: self.policy.absent_ttl,
                },
            })
            .collect();
        match self.cache.fill(&fills).await {
            Ok(outcomes) => {
                for (fill, outcome) in fills.iter().zip(outcomes) {
                    match outcome {
                        FillOutcome::Stored => stats.stored += 1,
                        FillOutcome::AlreadyCurrent { .. } => stats.already_current += 1,
                        FillOutcome::Fenced { fence } => {
                            stats.fenced += 1;
                            tracing::info!(product_id = %fill.product_id, fence, "a newer version was invalidated while this read ran; not caching what it loaded");
                        }
                    }
                }
            }
            Err(e) => {
                stats.cache_errors += 1;
                self.cache_failed("fill", &e);
            }
        }
    }

    fn cache_paused(&self) -> bool {
        let paused = self
            .cache_paused_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        paused.is_some_and(|until| Instant::now() < until)
    }

    /// Logs the failure and, when it is transient, skips the cache for a while.
    fn cache_failed(&self, step: &'static str, e: &PipelineError) {
        if e.is_transient() {
            let pause = self.policy.cache_pause;
            tracing::warn!(step, error_type = e.kind.name(), error = %e.detailed(), pause_ms = pause.as_millis() as u64, "cache unavailable; serving from the database");
            let mut paused = self
                .cache_paused_until
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *paused = Instant::now().checked_add(pause);
        } else {
            tracing::error!(step, error_type = e.kind.name(), error = %e.detailed(), "cache call failed; serving from the database");
        }
    }
}
