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
    let event = rows::stored_event(&m)?;
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
    use crate::adapters::postgres::event_store::tests::{stored_offer, update};
    use crate::adapters::postgres::mock::{parameters, postgres, row, sent, sql, statement_failed};
    use crate::domain::event::InventoryUpdateReceived;
    use crate::domain::update::InventoryUpdate;
    use crate::error::ErrorKind;
    use sea_orm::{IdenStatic, Iterable, ModelTrait, Value};
    use std::collections::BTreeMap;

    fn stored_event(
        event_type: &str,
        event_version: i32,
        payload: serde_json::Value,
    ) -> inventory_event::Model {
        let u = update("p-1", "s-1", 5, 0);
        let mut m =
            rows::stored::payload_row(41, &"a".repeat(64), &InventoryUpdateReceived::from(&u));
        m.event_type = event_type.into();
        m.event_version = event_version;
        m.payload = Some(payload);
        m
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

    fn pid(s: &str) -> ProductId {
        ProductId::parse(s).expect("valid product id")
    }

    /// The summary row of the product `u` is the only offer of, at `version`.
    fn summary_of(u: &InventoryUpdate, version: i64) -> product_summary::Model {
        product_summary::Model {
            product_id: u.product_id.as_str().into(),
            total_quantity: u.quantity.get(),
            best_price: Some(u.price.get()),
            best_price_currency: Some(u.currency.as_str().into()),
            best_price_supplier: Some(u.supplier_id.as_str().into()),
            supplier_count: 1,
            version,
            updated_at: u.occurred_at,
        }
    }

    /// One row of the summaries joined with their offers.
    fn joined(s: &product_summary::Model, o: &product_offer::Model) -> BTreeMap<String, Value> {
        let mut r = BTreeMap::new();
        for c in product_summary::Column::iter() {
            r.insert(c.as_str().to_owned(), s.get(c));
        }
        for c in product_offer::Column::iter() {
            r.insert(format!("o_{}", c.as_str()), o.get(c));
        }
        r
    }

    async fn load(
        db: sea_orm::MockDatabase,
        ids: &[&str],
    ) -> (
        Result<Vec<ProductView>, PipelineError>,
        Vec<Vec<sea_orm::Statement>>,
    ) {
        let conn = db.into_connection();
        let ids: Vec<ProductId> = ids.iter().map(|p| pid(p)).collect();
        let out = PgProductReader::new(conn.clone()).load_products(&ids).await;
        (out, sent(&conn))
    }

    #[tokio::test]
    async fn no_ids_send_nothing() {
        let (out, log) = load(postgres(), &[]).await;

        assert!(out.expect("nothing asked").is_empty());
        assert!(log.is_empty());
    }

    #[tokio::test]
    async fn the_joined_rows_become_one_view_per_product_with_its_offers() {
        let a1 = update("p1", "s1", 5, 1);
        let a2 = update("p1", "s2", 2, 2);
        let b = update("p2", "s1", 4, 3);
        let mut p1 = summary_of(&a2, 2);
        p1.total_quantity = 7;
        p1.supplier_count = 2;
        let p2 = summary_of(&b, 3);
        let db = postgres().append_query_results([vec![
            joined(&p1, &stored_offer(&a1, 1)),
            joined(&p1, &stored_offer(&a2, 2)),
            joined(&p2, &stored_offer(&b, 3)),
        ]]);

        let (out, log) = load(db, &["p2", "p1", "p9"]).await;

        let views = out.expect("loaded");
        assert_eq!(views.len(), 2);
        assert_eq!(
            (
                views[0].product_id.as_str(),
                views[0].version,
                views[0].total_quantity
            ),
            ("p1", 2, 7)
        );
        assert_eq!(
            views[0]
                .suppliers
                .iter()
                .map(|s| (s.supplier_id.as_str(), s.quantity.get()))
                .collect::<Vec<_>>(),
            [("s1", 5), ("s2", 2)]
        );
        assert_eq!(
            (views[1].product_id.as_str(), views[1].suppliers.len()),
            ("p2", 1)
        );
        assert_eq!(sql(&log[0][0]), sql(&stmt(LOAD_PRODUCTS, vec![])));
        assert_eq!(
            parameters(&log[0][0]),
            [Value::from(r#"["p2","p1","p9"]"#)],
            "one statement, the ids as one JSON array"
        );
    }

    #[tokio::test]
    async fn a_failed_or_unreadable_product_read_is_an_error() {
        let u = update("p1", "s1", 5, 1);
        let good = joined(&summary_of(&u, 1), &stored_offer(&u, 1));
        let mut no_version = good.clone();
        no_version.remove("version");
        let mut no_offer_seq = good.clone();
        no_offer_seq.remove("o_event_seq");
        let mut corrupt = good;
        corrupt.insert("o_currency".into(), "euro".into());

        for (db, says) in [
            (
                postgres().append_query_errors([statement_failed("boom")]),
                "could not load products",
            ),
            (
                postgres().append_query_results([vec![no_version]]),
                "could not read a product summary row",
            ),
            (
                postgres().append_query_results([vec![no_offer_seq]]),
                "could not read a product offer row",
            ),
            (
                postgres().append_query_results([vec![corrupt]]),
                "stored currency is not valid",
            ),
        ] {
            let e = load(db, &["p1"]).await.0.expect_err(says);
            assert_eq!(e.kind, ErrorKind::Internal, "{says}");
            assert!(e.message.starts_with(says), "{}", e.message);
        }
    }

    #[tokio::test]
    async fn history_goes_back_to_the_day_after_the_last_retired_day() {
        let since = DateTime::UNIX_EPOCH + chrono::Duration::days(3);
        let db = postgres()
            .append_query_results([
                vec![row([("since", Some(since).into())])],
                vec![row([("since", Option::<DateTime<Utc>>::None.into())])],
                vec![],
            ])
            .append_query_errors([statement_failed("boom")])
            .into_connection();
        let reader = PgProductReader::new(db.clone());

        assert_eq!(
            reader.history_retained_since().await.expect("retired"),
            Some(since)
        );
        assert_eq!(
            reader.history_retained_since().await.expect("none retired"),
            None
        );
        assert_eq!(reader.history_retained_since().await.expect("no row"), None);
        let e = reader.history_retained_since().await.expect_err("failed");
        assert_eq!(e.message, "could not read how far back the history goes");
        assert!(sql(&sent(&db)[0][0]).contains("FROM event_store_retired_days"));
    }

    #[tokio::test]
    async fn a_history_page_is_the_products_events_before_a_seq_newest_first() {
        let u = update("p1", "s1", 5, 1);
        let payload = serde_json::to_value(InventoryUpdateReceived::from(&u)).expect("json");
        let mut m = stored_event(InventoryUpdateReceived::EVENT_TYPE, 1, payload);
        m.recorded_at = DateTime::UNIX_EPOCH + chrono::Duration::seconds(9);
        let db = postgres()
            .append_query_results([vec![m], vec![]])
            .into_connection();
        let reader = PgProductReader::new(db.clone());

        let page = reader
            .load_history(&pid("p1"), HistoryQuery::new(Some(100), 20).expect("valid"))
            .await
            .expect("page");
        let first = reader
            .load_history(&pid("p1"), HistoryQuery::new(None, 5).expect("valid"))
            .await
            .expect("page");

        assert!(first.is_empty());
        assert_eq!(
            page,
            [HistoryEvent {
                seq: 41,
                supplier_id: u.supplier_id.clone(),
                quantity: u.quantity,
                price: u.price,
                currency: u.currency,
                occurred_at: u.occurred_at,
                recorded_at: DateTime::UNIX_EPOCH + chrono::Duration::seconds(9),
            }]
        );
        let log = sent(&db);
        let (before, newest) = (&log[0][0], &log[1][0]);
        assert!(
            sql(before).ends_with(r#"WHERE "inventory_events"."product_id" = $1 AND "inventory_events"."seq" < $2 ORDER BY "inventory_events"."seq" DESC LIMIT $3"#),
            "{}",
            sql(before)
        );
        assert_eq!(
            parameters(before),
            [Value::from("p1"), Value::from(100i64), Value::from(20u64)]
        );
        assert!(
            sql(newest).ends_with(r#"WHERE "inventory_events"."product_id" = $1 ORDER BY "inventory_events"."seq" DESC LIMIT $2"#),
            "{}",
            sql(newest)
        );
        assert_eq!(parameters(newest), [Value::from("p1"), Value::from(5u64)]);
    }

    #[tokio::test]
    async fn a_failed_history_read_is_an_error() {
        let db = postgres()
            .append_query_errors([statement_failed("boom")])
            .into_connection();

        let e = PgProductReader::new(db)
            .load_history(&pid("p1"), HistoryQuery::new(None, 5).expect("valid"))
            .await
            .expect_err("failed");

        assert_eq!(e.message, "could not load a product's history");
    }
}
