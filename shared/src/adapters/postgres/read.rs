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
