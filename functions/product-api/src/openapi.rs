//! The OpenAPI 3.1 document of this API, generated with utoipa from the handlers'
//! `#[utoipa::path]` attributes (in `serve`) and the types they answer with. The API serves it
//! at `GET /openapi.json`; it is committed as [`DOCUMENT_PATH`], which the tests check is
//! current (`UPDATE_CONTRACT=1 cargo test -p inventory-product-api openapi` rewrites it) and hold the
//! handler's real answers to.

use crate::handler::ProductBatch;
use crate::respond::{self, NO_STORE, ProblemBody};
use inventory::ProductId;
use inventory::read::{
    DEFAULT_HISTORY_LIMIT, HistoryEvent, HistoryPage, MAX_BATCH_PRODUCTS, MAX_HISTORY_LIMIT,
    ProductView, SupplierOffer,
};
use std::sync::LazyLock;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Header, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema};

/// Where the document is committed, relative to the repository root.
pub const DOCUMENT_PATH: &str = "contract/product-api.openapi.json";
/// The name of the security scheme every operation requires.
pub const SIGV4: &str = "sigv4";

/// utoipa's derive expands the component list into fully qualified paths.
#[allow(unused_qualifications)]
mod api_doc {
    use super::*;

    #[derive(OpenApi)]
    #[openapi(
        info(
            title = "Inventory product API",
            description = "Storefront reads of the product catalog: a product's stock and prices, several products at once, and a product's history. Every call is signed with AWS Signature Version 4 (IAM authorization of the API Gateway HTTP API); errors are RFC 9457 problem details (application/problem+json).",
        ),
        paths(
            crate::handler::get_product,
            crate::handler::get_products,
            crate::handler::get_history,
            crate::handler::get_openapi,
        ),
        components(schemas(ProductView, SupplierOffer, ProductBatch, HistoryPage, HistoryEvent, ProductId, ProblemBody)),
        tags(
            (name = "products", description = "The catalog as storefronts read it"),
            (name = "meta", description = "This API's own description"),
        ),
        modifiers(&CommonHeaders, &Sigv4),
    )]
    pub(super) struct ApiDoc;
}
use api_doc::ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as committed and served: pretty JSON with a final newline.
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_else(|e| {
        format!("{{\"error\": \"the OpenAPI document does not encode: {e}\"}}")
    });
    text.push('\n');
    text
}

static SERVED: LazyLock<(String, String)> = LazyLock::new(|| {
    let text = document_json();
    let etag = respond::digest_etag("o1", [text.clone()]);
    (text, etag)
});

/// The served document and its `ETag`, made once per process.
pub fn served() -> (&'static str, &'static str) {
    (SERVED.0.as_str(), SERVED.1.as_str())
}

/// The `ids` query parameter, split at its commas.
#[derive(Debug)]
pub struct ProductIds;

impl PartialSchema for ProductIds {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(ProductId::schema())
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH_PRODUCTS))
            .into()
    }
}

/// The `limit` query parameter of a history page.
#[derive(Debug)]
pub struct HistoryLimit;

impl PartialSchema for HistoryLimit {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_HISTORY_LIMIT as u64))
            .default(Some(DEFAULT_HISTORY_LIMIT.into()))
            .into()
    }
}

/// The `before` query parameter of a history page: an event position.
#[derive(Debug)]
pub struct HistoryBefore;

impl PartialSchema for HistoryBefore {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(i64::MAX))
            .into()
    }
}

/// `Cache-Control` on every answer, `Retry-After` on a 503, `Allow` nowhere (only `GET`
/// routes exist): what `respond` sets on every response it builds.
struct CommonHeaders;

impl Modify for CommonHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get].into_iter().flatten() {
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let cache_control = if status.starts_with('2') || status == "304" {
                        "How long the answer may be cached"
                    } else if status == "404" {
                        "An unknown product is cached as briefly as a product"
                    } else {
                        NO_STORE
                    };
                    let mut header = Header::new(string());
                    header.description = Some(cache_control.to_owned());
                    response.headers.insert("Cache-Control".to_owned(), header);
                    if status == "503" {
                        let mut header = Header::new(string());
                        header.description = Some("Seconds to wait before retrying".to_owned());
                        response.headers.insert("Retry-After".to_owned(), header);
                    }
                }
            }
        }
    }
}

/// Every operation is signed with AWS Signature Version 4: the HTTP API's IAM authorization.
struct Sigv4;

impl Modify for Sigv4 {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SIGV4,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "AWS Signature Version 4 (IAM authorization): sign each request for the service execute-api in the stack's region with credentials allowed execute-api:Invoke on the API, e.g. curl --aws-sigv4 \"aws:amz:us-east-1:execute-api\" or awscurl",
            ))),
        );
        openapi.security = Some(vec![SecurityRequirement::new(SIGV4, Vec::<String>::new())]);
    }
}
