//! Reading the projection back, for tests only (`test-util`): one product's summary and
//! offers, and the whole projection (for comparing a rebuild with the incremental state). The
//! read API reads through [`super::PgProductReader`].

use super::entity::{product_offer, product_summary};
use super::error::db_error;
use super::rows;
use crate::domain::ids::ProductId;
use crate::domain::projection::{Offer, ProductSummary};
use crate::error::PipelineError;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

/// A product's summary, or `None` when the store has no offer for it.
#[tracing::instrument(skip(db), fields(product = %product))]
pub async fn load_summary(
    db: &DatabaseConnection,
    product: &ProductId,
) -> Result<Option<ProductSummary>, PipelineError> {
    product_summary::Entity::find_by_id(product.as_str().to_owned())
        .filter(product_summary::Column::Version.gt(0))
        .one(db)
        .await
        .map_err(|e| db_error("could not load a product summary", e))?
        .map(rows::summary)
        .transpose()
}

/// A product's offers, by supplier id.
#[tracing::instrument(skip(db), fields(product = %product))]
pub async fn load_offers(
    db: &DatabaseConnection,
    product: &ProductId,
) -> Result<Vec<Offer>, PipelineError> {
    product_offer::Entity::find()
        .filter(product_offer::Column::ProductId.eq(product.as_str()))
        .order_by_asc(product_offer::Column::SupplierId)
        .all(db)
        .await
        .map_err(|e| db_error("could not load product offers", e))?
        .into_iter()
        .map(rows::offer)
        .collect()
}

/// The whole projection: every offer (by product, then supplier) and every summary (by
/// product). For tests and checks on small databases.
pub async fn load_projection(
    db: &DatabaseConnection,
) -> Result<(Vec<Offer>, Vec<ProductSummary>), PipelineError> {
    let offers = product_offer::Entity::find()
        .order_by_asc(product_offer::Column::ProductId)
        .order_by_asc(product_offer::Column::SupplierId)
        .all(db)
        .await
        .map_err(|e| db_error("could not load offers", e))?
        .into_iter()
        .map(rows::offer)
        .collect::<Result<Vec<_>, _>>()?;
    let summaries = product_summary::Entity::find()
        .order_by_asc(product_summary::Column::ProductId)
        .all(db)
        .await
        .map_err(|e| db_error("could not load summaries", e))?
        .into_iter()
        .map(rows::summary)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((offers, summaries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::postgres::event_store::tests::{stored_offer, update};
    use crate::adapters::postgres::mock::{parameters, postgres, sent, sql, statement_failed};
    use crate::error::ErrorKind;
    use sea_orm::Value;

    fn pid(s: &str) -> ProductId {
        ProductId::parse(s).expect("valid product id")
    }

    fn summary_row(product: &str, version: i64) -> product_summary::Model {
        product_summary::Model {
            product_id: product.into(),
            total_quantity: 5,
            best_price: None,
            best_price_currency: None,
            best_price_supplier: None,
            supplier_count: 1,
            version,
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn a_summary_is_read_only_once_committed_and_absent_otherwise() {
        let db = postgres()
            .append_query_results([vec![summary_row("p1", 4)], vec![]])
            .append_query_errors([statement_failed("boom")])
            .into_connection();

        let found = load_summary(&db, &pid("p1")).await.expect("found");
        let absent = load_summary(&db, &pid("p2")).await.expect("absent");
        let e = load_summary(&db, &pid("p3")).await.expect_err("failed");

        assert_eq!(
            found.map(|s| (s.product_id, s.version)),
            Some((pid("p1"), 4))
        );
        assert_eq!(absent, None);
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(e.message, "could not load a product summary");
        let log = sent(&db);
        assert!(
            sql(&log[0][0]).ends_with(r#"WHERE "product_summaries"."product_id" = $1 AND "product_summaries"."version" > $2 LIMIT $3"#),
            "{}",
            sql(&log[0][0])
        );
        assert_eq!(
            parameters(&log[0][0]),
            [Value::from("p1"), Value::from(0i32), Value::from(1u64)]
        );
    }

    #[tokio::test]
    async fn a_products_offers_are_read_by_supplier() {
        let a = update("p1", "s1", 5, 1);
        let b = update("p1", "s2", 3, 2);
        let db = postgres()
            .append_query_results([vec![stored_offer(&a, 1), stored_offer(&b, 2)]])
            .append_query_errors([statement_failed("boom")])
            .into_connection();

        let offers = load_offers(&db, &pid("p1")).await.expect("offers");
        let e = load_offers(&db, &pid("p1")).await.expect_err("failed");

        assert_eq!(
            offers
                .iter()
                .map(|o| (o.supplier_id.as_str(), o.event_seq))
                .collect::<Vec<_>>(),
            [("s1", 1), ("s2", 2)]
        );
        assert_eq!(e.message, "could not load product offers");
        let log = sent(&db);
        assert!(
            sql(&log[0][0]).ends_with(r#"WHERE "product_offers"."product_id" = $1 ORDER BY "product_offers"."supplier_id" ASC"#),
            "{}",
            sql(&log[0][0])
        );
        assert_eq!(parameters(&log[0][0]), [Value::from("p1")]);
    }

    #[tokio::test]
    async fn the_whole_projection_is_every_offer_then_every_summary_in_id_order() {
        let a = update("p1", "s1", 5, 1);
        let db = postgres()
            .append_query_results([vec![stored_offer(&a, 1)]])
            .append_query_results([vec![summary_row("p1", 1), summary_row("p2", 0)]])
            .into_connection();

        let (offers, summaries) = load_projection(&db).await.expect("projection");

        assert_eq!(offers.len(), 1);
        assert_eq!(
            summaries.iter().map(|s| s.version).collect::<Vec<_>>(),
            [1, 0],
            "placeholders included: a check sees everything"
        );
        let log = sent(&db);
        assert!(
            sql(&log[0][0]).ends_with(
                r#"ORDER BY "product_offers"."product_id" ASC, "product_offers"."supplier_id" ASC"#
            ),
            "{}",
            sql(&log[0][0])
        );
        assert!(
            sql(&log[1][0]).ends_with(
                r#"FROM "product_summaries" ORDER BY "product_summaries"."product_id" ASC"#
            ),
            "{}",
            sql(&log[1][0])
        );
    }

    #[tokio::test]
    async fn a_failed_projection_read_names_the_table_it_was_reading() {
        let db = postgres()
            .append_query_errors([statement_failed("boom")])
            .into_connection();
        let e = load_projection(&db).await.expect_err("offers failed");
        assert_eq!(e.message, "could not load offers");

        let db = postgres()
            .append_query_results([Vec::<product_offer::Model>::new()])
            .append_query_errors([statement_failed("boom")])
            .into_connection();
        let e = load_projection(&db).await.expect_err("summaries failed");
        assert_eq!(e.message, "could not load summaries");

        let mut corrupt = summary_row("p1", 1);
        corrupt.product_id = String::new();
        let db = postgres()
            .append_query_results([Vec::<product_offer::Model>::new()])
            .append_query_results([vec![corrupt]])
            .into_connection();
        let e = load_projection(&db).await.expect_err("corrupt summary");
        assert_eq!(e.kind, ErrorKind::Internal);
    }
}
