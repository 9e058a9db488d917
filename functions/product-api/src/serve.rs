//! One request: route it, run the read use case, map the result onto HTTP, count it.

use crate::App;
use crate::respond::{
    self, HISTORY_HEAD_CACHE_CONTROL, HISTORY_PAGE_CACHE_CONTROL, PRODUCT_CACHE_CONTROL, Problem,
};
use crate::routes::{self, Route};
use async_trait::async_trait;
use inventory::catalog_read::{
    BatchRead, CacheFill, CacheRead, Cached, FillOutcome, HistoryQuery, ReadStats,
};
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
    let read = match &route {
        Route::Product(id) => app.reads.read_products(std::slice::from_ref(id)).await,
        Route::Products(ids) => app.reads.read_products(ids).await,
        Route::History(id, query) => {
            let r = history(app, id, *query, if_none_match, path).await;
            return (r, ReadStats::default());
        }
    };
    let (mut response, stats) = match (route, read) {
        (Route::Product(id), Ok(read)) => {
            let stats = read.stats;
            (one_product(read, &id, if_none_match, path), stats)
        }
        (_, Ok(read)) => {
            let stats = read.stats;
            (many_products(read, if_none_match), stats)
        }
        (_, Err(e)) => return (failure(&e, path), ReadStats::default()),
    };
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(cache_outcome(&stats)));
    (response, stats)
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

async fn history(
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
