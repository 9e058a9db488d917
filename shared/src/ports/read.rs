//! The read path's ports: where products are read from (the projection in the database) and
//! the cache in front of it. Adapters implement them on PostgreSQL and Redis; tests in memory.

use crate::domain::ids::ProductId;
use crate::error::PipelineError;
use crate::read::{HistoryEvent, HistoryQuery, ProductView};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Reads the product projection and the event store.
#[async_trait]
pub trait ProductReader: Send + Sync {
    /// The current state of those of `products` that exist, read in one snapshot (so each
    /// view's JSON is exactly its version's state); unknown products are left out.
    async fn load_products(
        &self,
        products: &[ProductId],
    ) -> Result<Vec<ProductView>, PipelineError>;

    /// `product`'s events newest first: those before `query.before`, at most `query.limit`.
    async fn load_history(
        &self,
        product: &ProductId,
        query: HistoryQuery,
    ) -> Result<Vec<HistoryEvent>, PipelineError>;

    /// When the event store's retention has dropped days: the start of the oldest day still
    /// held (events recorded earlier are in no history). `None` while every event is held.
    async fn history_retained_since(&self) -> Result<Option<DateTime<Utc>>, PipelineError> {
        Ok(None)
    }
}

/// What the cache holds for one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// The product's state at `version`, as [`ProductView`] JSON.
    Product { version: i64, json: String },
    /// "Not in the database" (a negative entry). The first invalidation of the product evicts
    /// it, and populating it is fenced like any version older than the product's first.
    Absent,
}

/// One entry to put in the cache after a miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFill {
    pub product_id: ProductId,
    pub state: Cached,
    pub ttl: Duration,
}

/// What the cache did with a [`CacheFill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    /// Stored.
    Stored,
    /// Refused: an invalidation for version `fence` already ran, so what was loaded is stale.
    Fenced { fence: i64 },
    /// Not needed: the cache already holds version `cached` or newer.
    AlreadyCurrent { cached: i64 },
}

/// The read side of the versioned, fenced product cache.
#[async_trait]
pub trait CacheRead: Send + Sync {
    /// What is cached for each of `products`, in the same order (`None`: nothing), in one
    /// round trip.
    async fn get_many(&self, products: &[ProductId]) -> Result<Vec<Option<Cached>>, PipelineError>;

    /// Stores each fill unless an invalidation for a newer version already ran or the cache
    /// holds that version or a newer one, atomically per product. One outcome per fill.
    async fn fill(&self, fills: &[CacheFill]) -> Result<Vec<FillOutcome>, PipelineError>;
}
