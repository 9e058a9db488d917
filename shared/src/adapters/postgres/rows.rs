//! Rows to domain values and back. A stored value that no longer parses is a broken invariant
//! (the domain types only ever wrote valid ones), reported as [`ErrorKind::Internal`].

use super::entity::{product_offer, product_summary};
use crate::error::{ErrorKind, PipelineError};
use crate::event::UpdateKey;
use crate::ids::{ProductId, SupplierId};
use crate::money::{Currency, Price, Quantity};
use crate::projection::{Offer, ProductSummary};

fn corrupt(what: &str, detail: impl std::fmt::Display) -> PipelineError {
    PipelineError::new(
        ErrorKind::Internal,
        format!("stored {what} is not valid: {detail}"),
    )
}

pub(crate) fn product_id(s: &str) -> Result<ProductId, PipelineError> {
    ProductId::parse(s).map_err(|r| corrupt("product_id", r))
}

fn supplier_id(s: &str) -> Result<SupplierId, PipelineError> {
    SupplierId::parse(s).map_err(|r| corrupt("supplier_id", r))
}

fn currency(s: &str) -> Result<Currency, PipelineError> {
    Currency::parse(s).map_err(|r| corrupt("currency", r))
}

fn price(d: rust_decimal::Decimal) -> Result<Price, PipelineError> {
    Price::new(d).map_err(|r| corrupt("price", r))
}

pub(crate) fn offer(m: product_offer::Model) -> Result<Offer, PipelineError> {
    Ok(Offer {
        product_id: product_id(&m.product_id)?,
        supplier_id: supplier_id(&m.supplier_id)?,
        quantity: Quantity::new(m.quantity).map_err(|r| corrupt("quantity", r))?,
        price: price(m.price)?,
        currency: currency(&m.currency)?,
        occurred_at: m.occurred_at,
        update_key: UpdateKey::try_from(m.update_key).map_err(|r| corrupt("update_key", r))?,
        event_seq: m.event_seq,
    })
}

pub(crate) fn summary(m: product_summary::Model) -> Result<ProductSummary, PipelineError> {
    Ok(ProductSummary {
        product_id: product_id(&m.product_id)?,
        total_quantity: m.total_quantity,
        best_price: m.best_price.map(price).transpose()?,
        best_price_currency: m.best_price_currency.as_deref().map(currency).transpose()?,
        best_price_supplier: m
            .best_price_supplier
            .as_deref()
            .map(supplier_id)
            .transpose()?,
        supplier_count: m.supplier_count,
        version: m.version,
        updated_at: m.updated_at,
    })
}
