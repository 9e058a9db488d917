//! OpenAPI schemas (utoipa) of the values the read API serves, from the same limits the
//! parsers enforce. Only `product-api` builds this (feature `openapi`): it generates
//! `contract/product-api.openapi.json` from these and its handlers, and its tests hold the
//! API's real answers to the document.

use crate::domain::ids::{ProductId, SupplierId, id_pattern};
use crate::domain::money::{
    Currency, ISO_4217, MAX_PRICE, MAX_PRICE_SCALE, MAX_QUANTITY, Price, Quantity,
};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

fn id_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(id_pattern()))
        .description(Some(description))
        .into()
}

impl PartialSchema for ProductId {
    fn schema() -> RefOr<Schema> {
        id_schema("A product id (SKU): 1 to 64 characters of A-Z a-z 0-9 . _ -")
    }
}
impl ToSchema for ProductId {}

impl PartialSchema for SupplierId {
    fn schema() -> RefOr<Schema> {
        id_schema("A supplier id: 1 to 64 characters of A-Z a-z 0-9 . _ -")
    }
}
impl ToSchema for SupplierId {}

impl PartialSchema for Quantity {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(MAX_QUANTITY))
            .description(Some("Units in stock"))
            .into()
    }
}
impl ToSchema for Quantity {}

impl PartialSchema for Price {
    /// As the API writes it: a decimal string, exact, without trailing zeros.
    fn schema() -> RefOr<Schema> {
        let digits = MAX_PRICE.to_string().len();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                "^(0|[1-9][0-9]{{0,{}}})(\\.[0-9]{{0,{}}}[1-9])?$",
                digits - 1,
                MAX_PRICE_SCALE - 1
            )))
            .description(Some(
                "An exact decimal price as a string (never a float), without trailing zeros, e.g. \"29.99\"",
            ))
            .examples(["29.99"])
            .into()
    }
}
impl ToSchema for Price {}

impl PartialSchema for Currency {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ISO_4217.iter().copied()))
            .description(Some("An active ISO 4217 currency code"))
            .into()
    }
}
impl ToSchema for Currency {}
