//! The read API's queries: products with their offers, read in one statement (one snapshot,
//! one round trip, whatever the number of ids), and pages of a product's event history.

use super::entity::{inventory_event, product_offer, product_summary};
use super::error::db_error;
use super::rows;
use super::sql::{json_param, stmt};
use crate::domain::ids::ProductId;
use crate::error::PipelineError;
use crate::ports::ProductReader;
use crate::read::{HistoryEvent, HistoryQuery, ProductView};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect,
};

/// [`ProductReader`] on the PostgreSQL projection and event store.
#[derive(Debug, Clone)]
pub struct PgProductReader {
    db: DatabaseConnection,
}

impl PgProductReader {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// Summaries joined with their offers. A summary of version 0 is an uncommitted lock
/// placeholder that no reader sees, filtered anyway. `= ANY(ARRAY(...))` keeps the primary
/// key lookups whatever the planner thinks of the JSON array's size.
const LOAD_PRODUCTS: &str = r#"
SELECT s.product_id, s.total_quantity, s.best_price, s.best_price_currency, s.best_price_supplier,
       s.supplier_count, s.version, s.updated_at,
       o.product_id AS o_product_id, o.supplier_id AS o_supplier_id, o.quantity AS o_quantity,
       o.price AS o_price, o.currency AS o_currency, o.occurred_at AS o_occurred_at,
       o.update_key AS o_update_key, o.event_seq AS o_event_seq
FROM product_summaries s
JOIN product_offers o ON o.product_id = s.product_id
WHERE s.product_id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) AND s.version > 0
ORDER BY s.product_id, o.supplier_id"#;

#[async_trait]
impl ProductReader for PgProductReader {
    #[tracing::instrument(skip_all, fields(products = products.len()))]
    async fn load_products(
        &self,
        products: &[ProductId],
    ) -> Result<Vec<ProductView>, PipelineError> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .db
            .query_all_raw(stmt(LOAD_PRODUCTS, vec![json_param(products)?]))
            .await
            .map_err(|e| db_error("could not load products", e))?;
        let mut views: Vec<(
            product_summary::Model,
            Vec<crate::domain::projection::Offer>,
        )> = Vec::new();
        for row in rows {
            let summary = product_summary::Model::from_query_result(&row, "")
                .map_err(|e| db_error("could not read a product summary row", e))?;
            let offer = product_offer::Model::from_query_result(&row, "o_")
                .map_err(|e| db_error("could not read a product offer row", e))?;
            let offer = rows::offer(offer)?;
            match views.last_mut() {
                Some((s, offers)) if s.product_id == summary.product_id => offers.push(offer),
                _ => views.push((summary, vec![offer])),
            }
        }
        views
            .into_iter()
            .map(|(summary, offers)| Ok(ProductView::new(rows::summary(summary)?, &offers)))
            .collect()
    }

    async fn history_retained_since(&self) -> Result<Option<DateTime<Utc>>, PipelineError> {
        self.db
            .query_one_raw(stmt(
                "SELECT ((max(day) + 1)::timestamp AT TIME ZONE 'UTC') AS since FROM event_store_retired_days",
                vec![],
            ))
            .await
            .map_err(|e| db_error("could not read how far back the history goes", e))?
            .map(|r| r.try_get::<Option<DateTime<Utc>>>("", "since"))
            .transpose()
            .map_err(|e| db_error("could not read how far back the history goes", e))
            .map(Option::flatten)
    }

    #[tracing::instrument(skip(self), fields(product_id = %product))]
    async fn load_history(
        &self,
        product: &ProductId,
        query: HistoryQuery,
    ) -> Result<Vec<HistoryEvent>, PipelineError> {
        let mut select = inventory_event::Entity::find()
            .filter(inventory_event::Column::ProductId.eq(product.as_str()));
        if let Some(before) = query.before {
            select = select.filter(inventory_event::Column::Seq.lt(before));
        }
        let limit = u64::try_from(query.limit).unwrap_or(u64::MAX);
        select
            .order_by_desc(inventory_event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(|e| db_error("could not load a product's history", e))?
            .into_iter()
            .map(history_event)
            .collect()
    }
}

fn history_event(m: inventory_event::Model) -> Result<HistoryEvent, PipelineError> {
    let event = rows::stored_event(m.seq, &m.event_type, m.event_version, m.payload)?;
    Ok(HistoryEvent {
        seq: m.seq,
        supplier_id: event.supplier_id,
        quantity: event.quantity,
        price: event.price,
        currency: event.currency,
        occurred_at: event.occurred_at,
        recorded_at: m.recorded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::InventoryUpdateReceived;
    use crate::error::ErrorKind;

    fn stored_event(
        event_type: &str,
        event_version: i32,
        payload: serde_json::Value,
    ) -> inventory_event::Model {
        inventory_event::Model {
            seq: 41,
            update_key: "a".repeat(64),
            event_type: event_type.into(),
            event_version,
            product_id: "p-1".into(),
            supplier_id: "s-1".into(),
            occurred_at: DateTime::UNIX_EPOCH,
            recorded_at: DateTime::UNIX_EPOCH,
            payload,
        }
    }

    /// History shows only events this reader understands: anything else is an internal
    /// error naming the event's seq, never a page with a made-up entry.
    #[test]
    fn an_event_this_reader_does_not_know_is_an_internal_error_naming_its_seq() {
        let known = InventoryUpdateReceived::EVENT_TYPE;
        let version = InventoryUpdateReceived::EVENT_VERSION;
        for (m, says) in [
            (
                stored_event("PriceCorrected", version, serde_json::json!({})),
                "PriceCorrected v1",
            ),
            (
                stored_event(known, version + 1, serde_json::json!({})),
                "v2",
            ),
            (
                stored_event(known, version, serde_json::json!({"quantity": "lots"})),
                "stored event 41 does not parse",
            ),
        ] {
            let e = history_event(m).expect_err("not readable");
            assert_eq!(e.kind, ErrorKind::Internal);
            assert!(
                e.message.contains("41") && e.message.contains(says),
                "{}",
                e.message
            );
        }
    }
}
