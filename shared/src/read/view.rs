//! What the read API serves: a product's projected state with its per-supplier breakdown, and
//! pages of a product's event history. Plain serialisable values; the JSON of a
//! [`ProductView`] is exactly what the cache stores and the API returns.

use crate::domain::ids::{ProductId, SupplierId};
use crate::domain::money::{Currency, Price, Quantity};
use crate::domain::projection::{Offer, ProductSummary};
use crate::error::{ErrorKind, PipelineError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most products one batch read may ask for: one `MGET` and one query, whatever the ids.
pub const MAX_BATCH_PRODUCTS: usize = 100;
/// History events per page when the caller does not say.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;
/// Most history events per page.
pub const MAX_HISTORY_LIMIT: usize = 100;

/// One supplier's current stock and price for the product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SupplierOffer {
    pub supplier_id: SupplierId,
    pub quantity: Quantity,
    pub price: Price,
    pub currency: Currency,
    pub occurred_at: DateTime<Utc>,
}

/// A product as storefronts read it: the projected summary and the offers it summarises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductView {
    pub product_id: ProductId,
    /// The projection's version (see [`ProductSummary::version`]): the ETag, and what the
    /// cache's fence compares.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub total_quantity: i64,
    pub best_price: Option<Price>,
    pub best_price_currency: Option<Currency>,
    pub best_price_supplier: Option<SupplierId>,
    pub supplier_count: i32,
    /// By supplier id.
    pub suppliers: Vec<SupplierOffer>,
}

impl ProductView {
    /// The view of a summary and its product's offers (offers of other products are ignored).
    pub fn new(summary: ProductSummary, offers: &[Offer]) -> Self {
        let mut suppliers: Vec<SupplierOffer> = offers
            .iter()
            .filter(|o| o.product_id == summary.product_id)
            .map(|o| SupplierOffer {
                supplier_id: o.supplier_id.clone(),
                quantity: o.quantity,
                price: o.price,
                currency: o.currency,
                occurred_at: o.occurred_at,
            })
            .collect();
        suppliers.sort_by(|a, b| a.supplier_id.cmp(&b.supplier_id));
        Self {
            product_id: summary.product_id,
            version: summary.version,
            updated_at: summary.updated_at,
            total_quantity: summary.total_quantity,
            best_price: summary.best_price,
            best_price_currency: summary.best_price_currency,
            best_price_supplier: summary.best_price_supplier,
            supplier_count: summary.supplier_count,
            suppliers,
        }
    }

    /// The JSON the cache stores and the API returns.
    pub fn to_json(&self) -> Result<String, PipelineError> {
        serde_json::to_string(self).map_err(|e| {
            PipelineError::with_source(ErrorKind::Internal, "could not encode a product", e)
        })
    }
}

/// One event of a product's history, as the API shows it (no supplier-side source details).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEvent {
    /// Position in the event store; pages go by it.
    pub seq: i64,
    pub supplier_id: SupplierId,
    pub quantity: Quantity,
    pub price: Price,
    pub currency: Currency,
    /// When the supplier says it happened.
    pub occurred_at: DateTime<Utc>,
    /// When the store appended it.
    pub recorded_at: DateTime<Utc>,
}

/// Which page of a history to read: events strictly before `before` (the newest when
/// `None`), newest first, at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub before: Option<i64>,
    pub limit: usize,
}

impl HistoryQuery {
    /// Checks the bounds: `limit` in `1..=MAX_HISTORY_LIMIT`, `before` at least 1.
    pub fn new(before: Option<i64>, limit: usize) -> Result<Self, HistoryQueryError> {
        if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
            return Err(HistoryQueryError::Limit(limit));
        }
        if let Some(b) = before.filter(|b| *b < 1) {
            return Err(HistoryQueryError::Before(b));
        }
        Ok(Self { before, limit })
    }
}

/// Which bound of a [`HistoryQuery`] was broken, with the value given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistoryQueryError {
    #[error("limit must be between 1 and {MAX_HISTORY_LIMIT}, got {0}")]
    Limit(usize),
    #[error("before must be a positive event position, got {0}")]
    Before(i64),
}

impl HistoryQueryError {
    /// The name of the parameter that was wrong, as a caller spells it.
    pub fn parameter(self) -> &'static str {
        match self {
            Self::Limit(_) => "limit",
            Self::Before(_) => "before",
        }
    }
}

impl Default for HistoryQuery {
    fn default() -> Self {
        Self {
            before: None,
            limit: DEFAULT_HISTORY_LIMIT,
        }
    }
}

/// One page of a product's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryPage {
    pub product_id: ProductId,
    /// Newest first.
    pub events: Vec<HistoryEvent>,
    /// The `before` of the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
    /// On the last page, once the event store's retention has dropped old days: events
    /// recorded before this time have left the database and are in no page (their exports are
    /// in the archive bucket; docs/runbooks.md, "Reading events that left the database").
    /// Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_since: Option<DateTime<Utc>>,
}
