//! One request: route it, run the read use case, map the result onto HTTP, count it.

use crate::App;
use crate::openapi::{self, HistoryBefore, HistoryLimit, ProductIds};
use crate::respond::{
    self, HISTORY_HEAD_CACHE_CONTROL, HISTORY_PAGE_CACHE_CONTROL, OPENAPI_CACHE_CONTROL,
    PRODUCT_CACHE_CONTROL, Problem, ProblemBody,
};
use crate::routes::{self, Route};
use async_trait::async_trait;
use inventory::ports::{CacheFill, CacheRead, Cached, FillOutcome};
use inventory::read::{BatchRead, HistoryPage, HistoryQuery, ProductView, ReadStats};
use inventory::{ErrorKind, PipelineError, ProductId};
use lambda_http::http::{HeaderName, HeaderValue, Response, header};
use lambda_http::{Body, Request, RequestExt};

/// Answers one request. Never fails: every outcome, errors included, is an HTTP response.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let path = request_path(&req);
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let (response, stats) = match routes::route(req.method(), &path, req.uri().query()) {
        Ok(route) => answer(app, route, if_none_match, &path).await,
        Err(problem) => (problem.response(&path), ReadStats::default()),
    };
    if let Some(line) = app.metrics.record(&stats, response.status()) {
        println!("{line}");
    }
    response
}

/// The path as the client sent it (API Gateway's `rawPath`), else the URI's.
fn request_path(req: &Request) -> String {
    match req.raw_http_path() {
        "" => req.uri().path().to_owned(),
        raw => raw.to_owned(),
    }
}

async fn answer(
    app: &App,
    route: Route,
    if_none_match: Option<&str>,
    path: &str,
) -> (Response<Body>, ReadStats) {
    match route {
        Route::Product(id) => get_product(app, &id, if_none_match, path).await,
        Route::Products(ids) => get_products(app, &ids, if_none_match, path).await,
        Route::History(id, query) => (
            get_history(app, &id, query, if_none_match, path).await,
            ReadStats::default(),
        ),
        Route::OpenApi => (get_openapi(if_none_match), ReadStats::default()),
    }
}

/// One product's projected state.
#[utoipa::path(
    get,
    path = "/products/{product_id}",
    operation_id = "getProduct",
    tag = "products",
    params(
        ("product_id" = ProductId, Path, description = "The product's id (percent-encoded as in any URL path)"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds; a match answers 304 without a body"),
    ),
    responses(
        (status = 200, description = "The product: its total stock, best offer and every supplier's offer", body = ProductView,
            headers(("ETag" = String, description = "Changes with the product's version"), ("X-Cache" = String, description = "hit, miss or bypass"))),
        (status = 304, description = "The product has not changed since the ETag given in If-None-Match",
            headers(("ETag" = String), ("X-Cache" = String))),
        (status = 400, description = "The product id or a query parameter is malformed (invalid-product-id, invalid-parameter)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No supplier has reported this product (unknown-product)", body = ProblemBody, content_type = "application/problem+json",
            headers(("X-Cache" = String))),
        (status = 500, description = "The request failed on the API's side (internal-error)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The catalog database could not be reached (catalog-unavailable); retry", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_product(
    app: &App,
    id: &ProductId,
    if_none_match: Option<&str>,
    path: &str,
) -> (Response<Body>, ReadStats) {
    match app.reads.read_products(std::slice::from_ref(id)).await {
        Ok(read) => {
            let stats = read.stats;
            let response = one_product(read, id, if_none_match, path);
            (with_cache_outcome(response, &stats), stats)
        }
        Err(e) => (failure(&e, path), ReadStats::default()),
    }
}

/// Several products at once, in the order asked.
#[utoipa::path(
    get,
    path = "/products",
    operation_id = "getProducts",
    tag = "products",
    params(
        ("ids" = inline(ProductIds), Query, style = Form, explode = false, description = "The products' ids, comma-separated: ?ids=a,b,c"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds; a match answers 304 without a body"),
    ),
    responses(
        (status = 200, description = "The products found, in the order asked, and the ids no supplier has reported", body = ProductBatch,
            headers(("ETag" = String, description = "Changes with any of the products' versions"), ("X-Cache" = String, description = "hit, miss or bypass"))),
        (status = 304, description = "None of the products has changed since the ETag given in If-None-Match",
            headers(("ETag" = String), ("X-Cache" = String))),
        (status = 400, description = "ids is missing or malformed, or another query parameter is given (invalid-product-id, invalid-parameter)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "The request failed on the API's side (internal-error)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The catalog database could not be reached (catalog-unavailable); retry", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_products(
    app: &App,
    ids: &[ProductId],
    if_none_match: Option<&str>,
    path: &str,
) -> (Response<Body>, ReadStats) {
    match app.reads.read_products(ids).await {
        Ok(read) => {
            let stats = read.stats;
            let response = many_products(read, if_none_match);
            (with_cache_outcome(response, &stats), stats)
        }
        Err(e) => (failure(&e, path), ReadStats::default()),
    }
}

fn with_cache_outcome(mut response: Response<Body>, stats: &ReadStats) -> Response<Body> {
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(cache_outcome(stats)));
    response
}

/// `X-Cache`: whether the cache answered the whole read (`hit`), the database had to
/// (`miss`), or the cache was skipped because it is failing (`bypass`). For clients'
/// and benchmarks' statistics; it never changes the body.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

fn cache_outcome(stats: &ReadStats) -> &'static str {
    if stats.cache_skipped || stats.cache_errors > 0 {
        "bypass"
    } else if stats.misses == 0 {
        "hit"
    } else {
        "miss"
    }
}

fn one_product(
    read: BatchRead,
    id: &ProductId,
    if_none_match: Option<&str>,
    path: &str,
) -> Response<Body> {
    match read.products.into_iter().next().and_then(|l| l.product) {
        Some(p) => respond::json(
            p.json,
            &respond::product_etag(p.version),
            PRODUCT_CACHE_CONTROL,
            if_none_match,
        ),
        None => Problem::not_found(id.as_str()).response(path),
    }
}

/// The body of a batch read, as [`many_products`] writes it (for the OpenAPI document).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProductBatch {
    /// The products found, in the order asked.
    products: Vec<ProductView>,
    /// The ids asked for that no supplier has reported, in the order asked.
    not_found: Vec<ProductId>,
}

/// `{"products": [...], "not_found": [...]}`: the products' JSON as cached, in the order
/// asked, without parsing it again.
fn many_products(read: BatchRead, if_none_match: Option<&str>) -> Response<Body> {
    let mut body = String::with_capacity(
        32 + read
            .products
            .iter()
            .map(|l| l.product.as_ref().map_or(70, |p| p.json.len() + 1))
            .sum::<usize>(),
    );
    let mut etag_parts = Vec::with_capacity(read.products.len());
    let mut not_found: Vec<&str> = Vec::new();
    body.push_str(r#"{"products":["#);
    let mut first = true;
    for lookup in &read.products {
        match &lookup.product {
            Some(p) => {
                if !first {
                    body.push(',');
                }
                first = false;
                body.push_str(&p.json);
                etag_parts.push(format!("{}={}", lookup.product_id, p.version));
            }
            None => {
                not_found.push(lookup.product_id.as_str());
                etag_parts.push(format!("{}=-", lookup.product_id));
            }
        }
    }
    body.push_str(r#"],"not_found":"#);
    body.push_str(&serde_json::Value::from(not_found).to_string());
    body.push('}');
    let etag = respond::digest_etag("b1", etag_parts);
    respond::json(body, &etag, PRODUCT_CACHE_CONTROL, if_none_match)
}

/// A product's events, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/products/{product_id}/history",
    operation_id = "getProductHistory",
    tag = "products",
    params(
        ("product_id" = ProductId, Path, description = "The product's id (percent-encoded as in any URL path)"),
        ("limit" = inline(Option<HistoryLimit>), Query, description = "Events per page"),
        ("before" = inline(Option<HistoryBefore>), Query, description = "Only events before this position: the next_before of the previous page"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds; a match answers 304 without a body"),
    ),
    responses(
        (status = 200, description = "A page of the product's events, newest first", body = HistoryPage,
            headers(("ETag" = String, description = "Changes when the page does"))),
        (status = 304, description = "The page has not changed since the ETag given in If-None-Match",
            headers(("ETag" = String))),
        (status = 400, description = "The product id or a query parameter is malformed (invalid-product-id, invalid-parameter)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No supplier has reported this product (unknown-product)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "The request failed on the API's side (internal-error)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The catalog database could not be reached (catalog-unavailable); retry", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_history(
    app: &App,
    id: &ProductId,
    query: HistoryQuery,
    if_none_match: Option<&str>,
    path: &str,
) -> Response<Body> {
    let page = match app.reads.read_history(id, query).await {
        Ok(Some(page)) => page,
        Ok(None) => return Problem::not_found(id.as_str()).response(path),
        Err(e) => return failure(&e, path),
    };
    let body = match serde_json::to_string(&page) {
        Ok(body) => body,
        Err(e) => {
            let e = PipelineError::with_source(
                ErrorKind::Internal,
                "could not encode a history page",
                e,
            );
            return failure(&e, path);
        }
    };
    let etag = respond::digest_etag(
        "h1",
        std::iter::once(format!("{id}/{:?}/{}", query.before, query.limit))
            .chain(page.events.iter().map(|e| e.seq.to_string())),
    );
    let cache_control = match query.before {
        None => HISTORY_HEAD_CACHE_CONTROL,
        Some(_) => HISTORY_PAGE_CACHE_CONTROL,
    };
    respond::json(body, &etag, cache_control, if_none_match)
}

/// This API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApi",
    tag = "meta",
    params(
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds; a match answers 304 without a body"),
    ),
    responses(
        (status = 200, description = "This document (OpenAPI 3.1)", body = Object,
            headers(("ETag" = String, description = "Changes with the document"))),
        (status = 304, description = "The document has not changed since the ETag given in If-None-Match",
            headers(("ETag" = String))),
        (status = 400, description = "A query parameter is given (invalid-parameter)", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub(crate) fn get_openapi(if_none_match: Option<&str>) -> Response<Body> {
    let (document, etag) = openapi::served();
    respond::json(
        document.to_owned(),
        etag,
        OPENAPI_CACHE_CONTROL,
        if_none_match,
    )
}

/// A read that failed: the database is needed and could not answer (the cache never fails a
/// read). Transient failures are `503` with `Retry-After`, anything else `500`.
fn failure(e: &PipelineError, path: &str) -> Response<Body> {
    let problem = match e.kind {
        kind if kind.is_transient() => Problem::unavailable(),
        ErrorKind::InvalidPayload => Problem::invalid_parameter("ids", e.message.clone()),
        _ => Problem::internal(),
    };
    tracing::error!(error_type = e.kind.name(), error = %e.detailed(), status = problem.status.as_u16(), "read failed");
    problem.response(path)
}

/// The cache when it could not even be set up at cold start: every call fails as
/// unavailable, so reads go to the database (and the read path pauses the cache).
#[derive(Debug)]
pub struct NoCache(pub String);

#[async_trait]
impl CacheRead for NoCache {
    async fn get_many(&self, _: &[ProductId]) -> Result<Vec<Option<Cached>>, PipelineError> {
        Err(self.error())
    }

    async fn fill(&self, _: &[CacheFill]) -> Result<Vec<FillOutcome>, PipelineError> {
        Err(self.error())
    }
}

impl NoCache {
    fn error(&self) -> PipelineError {
        PipelineError::new(
            ErrorKind::DependencyUnavailable,
            format!("the cache could not be set up at cold start: {}", self.0),
        )
    }
}
