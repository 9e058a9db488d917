//! The `product-api` function: storefront reads of the product catalog over HTTP (API
//! Gateway HTTP API, or any Lambda HTTP event). The cache-aside rules live in
//! [`inventory::read`]; this crate maps requests onto them and results onto HTTP.
//!
//! - `GET /products/{product_id}`: the product's projected state.
//! - `GET /products?ids=a,b,c`: up to 100 products, one cache round trip.
//! - `GET /products/{product_id}/history?limit=N&before=SEQ`: recent events, newest first.
//! - `GET /openapi.json`: the OpenAPI 3.1 document of these routes ([`openapi`]), generated
//!   from the handlers and types; committed as `contract/product-api.openapi.json`.

mod app;
mod config;
mod handler;
pub mod metrics;
pub mod openapi;
pub mod respond;
pub mod routes;

#[cfg(test)]
mod tests;

pub use app::{App, build};
pub use config::Config;
pub use handler::{X_CACHE, handle};
