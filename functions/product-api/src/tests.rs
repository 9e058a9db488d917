//! The handler on in-memory ports, fed real API Gateway HTTP API events (the shared fixture
//! with its path, query and headers changed) through `lambda_http`'s own deserialiser.

use super::*;
use crate::metrics::Metrics;
use chrono::{TimeZone, Utc};
use inventory::config::FromEnv;
use inventory::domain::money::{Currency, Price, Quantity};
use inventory::ports::{CacheRead, Cached};
use inventory::read::{HistoryEvent, ProductView, ReadPolicy};
use inventory::testing::{MemoryProductCache, MemoryProductReader};
use inventory::{ErrorKind, ProductId, SupplierId};
use lambda_http::Body;
use lambda_http::http::{Response, StatusCode, header};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod bad_input;
mod openapi;

const FIXTURE: &str = include_str!("../../../tests/fixtures/apigw-http-get-product.json");

fn pid(s: &str) -> ProductId {
    ProductId::parse(s).expect("valid id")
}

fn view(id: &str, version: i64) -> ProductView {
    ProductView {
        product_id: pid(id),
        version,
        updated_at: Utc
            .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
            .single()
            .expect("valid"),
        total_quantity: 100,
        best_price: Some(Price::parse_decimal("29.99").expect("valid")),
        best_price_currency: Some(Currency::USD),
        best_price_supplier: Some(SupplierId::unspecified()),
        supplier_count: 1,
        suppliers: Vec::new(),
    }
}

/// The product "product123"'s history: events 1 to 5, each with its position as quantity.
fn history() -> Vec<HistoryEvent> {
    (1..=5i64)
        .map(|seq| HistoryEvent {
            seq,
            supplier_id: SupplierId::unspecified(),
            quantity: Quantity::new(seq).expect("valid"),
            price: Price::parse_decimal("29.99").expect("valid"),
            currency: Currency::USD,
            occurred_at: Utc
                .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
                .single()
                .expect("valid"),
            recorded_at: Utc
                .with_ymd_and_hms(2026, 11, 24, 10, 0, 1)
                .single()
                .expect("valid"),
        })
        .collect()
}

struct Harness {
    reader: Arc<MemoryProductReader>,
    cache: Arc<MemoryProductCache>,
    app: App,
}

/// The API over `products`, with "product123"'s history, and an empty cache.
fn harness(products: &[ProductView]) -> Harness {
    let reader =
        Arc::new(MemoryProductReader::with(products).with_history(pid("product123"), history()));
    let cache = Arc::new(MemoryProductCache::default());
    let app = App::new(
        reader.clone(),
        cache.clone(),
        ReadPolicy::default(),
        Metrics::new("product-api-test", Duration::from_secs(3600)),
    );
    Harness { reader, cache, app }
}

/// The fixture event for `GET {path}?{query}` with extra headers, through lambda_http.
fn get(path_and_query: &str, headers: &[(&str, &str)]) -> lambda_http::Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut event: serde_json::Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
    event["rawPath"] = path.into();
    event["rawQueryString"] = query.into();
    event["requestContext"]["http"]["path"] = path.into();
    for (k, v) in headers {
        event["headers"][*k] = (*v).into();
    }
    lambda_http::request::from_str(&event.to_string()).expect("an HTTP API event")
}

async fn call(h: &Harness, path_and_query: &str, headers: &[(&str, &str)]) -> Response<Body> {
    handle(&h.app, get(path_and_query, headers)).await
}

fn body_json(r: &Response<Body>) -> serde_json::Value {
    serde_json::from_slice(r.body().as_ref()).expect("JSON body")
}

fn header_of(r: &Response<Body>, name: header::HeaderName) -> &str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn assert_problem(r: &Response<Body>, status: StatusCode, slug: &str) -> serde_json::Value {
    assert_eq!(r.status(), status, "{:?}", r.body());
    assert_eq!(
        header_of(r, header::CONTENT_TYPE),
        "application/problem+json"
    );
    let body = body_json(r);
    assert_eq!(
        body["type"],
        format!("urn:inventory:problem:{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

#[tokio::test]
async fn a_known_product_is_served_with_its_version_as_etag_and_a_short_cache_lifetime() {
    let h = harness(&[view("product123", 42)]);

    let r = call(&h, "/products/product123", &[]).await;

    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_TYPE), "application/json");
    assert_eq!(header_of(&r, header::ETAG), "\"p1.42\"");
    assert_eq!(
        header_of(&r, header::CACHE_CONTROL),
        respond::PRODUCT_CACHE_CONTROL
    );
    let body = body_json(&r);
    assert_eq!(
        (body["product_id"].as_str(), body["version"].as_i64()),
        (Some("product123"), Some(42))
    );
    assert_eq!(body["best_price"], "29.99");
}

#[tokio::test]
async fn the_second_read_comes_from_the_cache_with_the_same_body() {
    let h = harness(&[view("product123", 42)]);
    let first = call(&h, "/products/product123", &[]).await;

    let second = call(&h, "/products/product123", &[]).await;

    assert_eq!(first.body().as_ref(), second.body().as_ref());
    assert_eq!(
        (header_of(&first, X_CACHE), header_of(&second, X_CACHE)),
        ("miss", "hit")
    );
    assert_eq!(h.reader.queries(), 1);
    let counts = h.app.metrics.snapshot();
    assert_eq!(
        (counts.requests, counts.cache_hits, counts.cache_misses),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn a_matching_if_none_match_is_304_without_a_body_and_a_stale_one_gets_the_product() {
    let h = harness(&[view("product123", 42)]);

    let exact = call(
        &h,
        "/products/product123",
        &[("if-none-match", "\"p1.42\"")],
    )
    .await;
    let in_list = call(
        &h,
        "/products/product123",
        &[("if-none-match", "\"p1.7\", W/\"p1.42\"")],
    )
    .await;
    let star = call(&h, "/products/product123", &[("if-none-match", "*")]).await;
    let stale = call(
        &h,
        "/products/product123",
        &[("if-none-match", "\"p1.41\"")],
    )
    .await;

    for r in [&exact, &in_list, &star] {
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(r.body().as_ref().is_empty());
        assert_eq!(header_of(r, header::ETAG), "\"p1.42\"");
        assert_eq!(
            header_of(r, header::CACHE_CONTROL),
            respond::PRODUCT_CACHE_CONTROL
        );
    }
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(body_json(&stale)["version"], 42);
}

#[tokio::test]
async fn an_unknown_product_is_a_404_problem_cached_as_briefly_as_the_negative_entry() {
    let h = harness(&[]);

    let r = call(&h, "/products/nobody", &[("if-none-match", "*")]).await;

    let body = assert_problem(&r, StatusCode::NOT_FOUND, "unknown-product");
    assert_eq!(body["product_id"], "nobody");
    assert_eq!(body["instance"], "/products/nobody");
    assert_eq!(
        header_of(&r, header::CACHE_CONTROL),
        respond::NOT_FOUND_CACHE_CONTROL
    );
    assert_eq!(
        h.cache.entry(&pid("nobody")).map(|e| e.state),
        Some(Cached::Absent)
    );
}

#[tokio::test]
async fn malformed_ids_are_400_problems_that_name_the_id_and_reach_no_store() {
    let h = harness(&[view("a", 1)]);
    let too_long = format!("/products/{}", "x".repeat(65));

    for path in [
        "/products/has%20space",
        "/products/caf%C3%A9",
        &too_long,
        "/products/bad%zz",
        "/products/x:y/history",
    ] {
        let r = call(&h, path, &[]).await;
        let body = assert_problem(&r, StatusCode::BAD_REQUEST, "invalid-product-id");
        assert!(body["product_id"].is_string(), "{path}: {body}");
        assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-store");
    }
    let r = call(&h, "/products?ids=a,,b", &[]).await;
    assert_eq!(
        assert_problem(&r, StatusCode::BAD_REQUEST, "invalid-product-id")["product_id"],
        ""
    );
    assert_eq!(h.reader.queries(), 0);
}

#[tokio::test]
async fn malformed_query_strings_are_400_problems_that_name_the_parameter() {
    let h = harness(&[view("product123", 1)]);
    let too_many: Vec<String> = (0..101).map(|i| format!("p{i}")).collect();
    let too_many = format!("/products?ids={}", too_many.join(","));
    let cases = [
        ("/products", "ids"),
        ("/products?idz=a", "idz"),
        ("/products?ids=a&ids=b", "ids"),
        (too_many.as_str(), "ids"),
        ("/products/product123?fields=all", "fields"),
        ("/products/product123/history?limit=0", "limit"),
        ("/products/product123/history?limit=101", "limit"),
        ("/products/product123/history?limit=ten", "limit"),
        ("/products/product123/history?before=-3", "before"),
        ("/products/product123/history?before=1.5", "before"),
    ];

    for (path, parameter) in cases {
        let r = call(&h, path, &[]).await;
        let body = assert_problem(&r, StatusCode::BAD_REQUEST, "invalid-parameter");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
    }
}

#[tokio::test]
async fn a_batch_answers_in_the_order_asked_and_lists_the_unknown_ids() {
    let h = harness(&[view("a", 1), view("b", 2)]);

    let r = call(&h, "/products?ids=b,ghost,a,b", &[]).await;
    let again = call(
        &h,
        "/products?ids=b%2Cghost,a",
        &[("if-none-match", header_of(&r, header::ETAG))],
    )
    .await;
    let changed = {
        // "ghost" is created at version 3, and the pipeline invalidates it.
        h.reader.put(view("ghost", 3));
        h.cache.invalidate(&pid("ghost"), 3);
        call(
            &h,
            "/products?ids=b,ghost,a",
            &[("if-none-match", header_of(&r, header::ETAG))],
        )
        .await
    };

    assert_eq!(r.status(), StatusCode::OK);
    let body = body_json(&r);
    let versions: Vec<i64> = body["products"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["version"].as_i64())
        .collect();
    assert_eq!(versions, [2, 1]);
    assert_eq!(body["not_found"], serde_json::json!(["ghost"]));
    assert_eq!(h.reader.queries(), 2, "one query per read with misses");
    assert_eq!(
        again.status(),
        StatusCode::NOT_MODIFIED,
        "same products, same versions"
    );
    assert_eq!(
        changed.status(),
        StatusCode::OK,
        "a product appeared: a new ETag"
    );
}

#[tokio::test]
async fn history_is_paged_newest_first_and_unknown_products_are_404() {
    let h = harness(&[]);

    let first = call(&h, "/products/product123/history?limit=2", &[]).await;
    let next = body_json(&first)["next_before"]
        .as_i64()
        .expect("a next page");
    let second = call(
        &h,
        &format!("/products/product123/history?limit=2&before={next}"),
        &[],
    )
    .await;
    let unknown = call(&h, "/products/nobody/history", &[]).await;

    let seqs = |r: &Response<Body>| {
        body_json(r)["events"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|e| e["seq"].as_i64())
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&first), [5, 4]);
    assert_eq!(seqs(&second), [3, 2]);
    assert_eq!(
        header_of(&first, header::CACHE_CONTROL),
        respond::HISTORY_HEAD_CACHE_CONTROL
    );
    assert_eq!(
        header_of(&second, header::CACHE_CONTROL),
        respond::HISTORY_PAGE_CACHE_CONTROL
    );
    assert_ne!(
        header_of(&first, header::ETAG),
        header_of(&second, header::ETAG)
    );
    assert_eq!(body_json(&first)["events"][0]["price"], "29.99");
    assert_problem(&unknown, StatusCode::NOT_FOUND, "unknown-product");
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() {
    let h = harness(&[]);
    let mut post = get("/products/a", &[]);
    *post.method_mut() = lambda_http::http::Method::POST;

    let nowhere = call(&h, "/inventory/a", &[]).await;
    let deeper = call(&h, "/products/a/history/1", &[]).await;
    let posted = handle(&h.app, post).await;

    assert_problem(&nowhere, StatusCode::NOT_FOUND, "no-such-route");
    assert_problem(&deeper, StatusCode::NOT_FOUND, "no-such-route");
    assert_problem(
        &posted,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    );
    assert_eq!(header_of(&posted, header::ALLOW), "GET");
}

#[tokio::test]
async fn with_the_cache_down_reads_are_served_from_the_database_and_counted() {
    let h = harness(&[view("product123", 42)]);
    h.cache.fail(Some(ErrorKind::DependencyUnavailable));

    let r = call(&h, "/products/product123", &[]).await;
    let again = call(&h, "/products/product123", &[]).await;

    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_json(&r)["version"], 42);
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(header_of(&again, X_CACHE), "bypass");
    let counts = h.app.metrics.snapshot();
    assert_eq!(
        counts.cache_bypassed_reads, 1,
        "the second read skipped the paused cache"
    );
    assert_eq!(
        counts.cache_errors, 0,
        "the first read's error was flushed at once"
    );
}

#[tokio::test]
async fn with_the_database_down_a_miss_is_503_with_retry_after_but_a_hit_is_served() {
    let h = harness(&[view("cached", 1)]);
    call(&h, "/products/cached", &[]).await;
    h.reader.fail(Some(ErrorKind::DependencyUnavailable));

    let miss = call(&h, "/products/other", &[]).await;
    let hit = call(&h, "/products/cached", &[]).await;

    assert_problem(
        &miss,
        StatusCode::SERVICE_UNAVAILABLE,
        "catalog-unavailable",
    );
    assert_eq!(header_of(&miss, header::RETRY_AFTER), "1");
    assert_eq!(header_of(&miss, header::CACHE_CONTROL), "no-store");
    assert_eq!(hit.status(), StatusCode::OK);
}

#[test]
fn metrics_are_written_as_one_emf_line_per_window_and_at_once_on_a_cache_error() {
    let m = Metrics::new("inventory-product-api-dev", Duration::from_secs(3600));
    let hit = inventory::read::ReadStats {
        hits: 1,
        ..Default::default()
    };
    let failed = inventory::read::ReadStats {
        cache_errors: 1,
        misses: 1,
        db_queries: 1,
        ..Default::default()
    };

    assert_eq!(m.record(&hit, StatusCode::OK), None);
    let line = m.record(&failed, StatusCode::OK).expect("flushed at once");

    let doc: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    let definition = &doc["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(definition["Namespace"], metrics::NAMESPACE);
    assert_eq!(
        definition["Dimensions"],
        serde_json::json!([["FunctionName"]])
    );
    assert!(
        doc["_aws"]["Timestamp"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000_000)
    );
    assert_eq!(doc["FunctionName"], "inventory-product-api-dev");
    for metric in definition["Metrics"].as_array().expect("list") {
        let name = metric["Name"].as_str().expect("name");
        assert!(doc[name].is_u64(), "{name} has no value");
    }
    assert_eq!(
        (
            doc["Requests"].as_u64(),
            doc["CacheHits"].as_u64(),
            doc["CacheErrors"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(m.snapshot().requests, 0, "the window starts again");
}

#[test]
fn configuration_names_the_missing_variable() {
    let vars: HashMap<&str, &str> = [
        ("DATABASE_URL", "postgres://127.0.0.1/x"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("AWS_LAMBDA_FUNCTION_NAME", "inventory-product-api-dev"),
    ]
    .into();
    let ok = Config::from_lookup(|k| vars.get(k).map(|v| (*v).to_owned())).expect("valid");
    assert_eq!(ok.function_name, "inventory-product-api-dev");

    let no_redis =
        Config::from_lookup(|k| (k == "DATABASE_URL").then(|| "postgres://h/d".to_owned()))
            .expect_err("no cache settings");
    let no_db = Config::from_lookup(|k| (k == "REDIS_URL").then(|| "redis://h".to_owned()))
        .expect_err("no database settings");

    assert!(
        no_redis.message.contains("REDIS_HOST"),
        "{}",
        no_redis.message
    );
    assert!(no_db.message.contains("DB_HOST"), "{}", no_db.message);
}

#[tokio::test]
async fn with_no_cache_set_up_at_cold_start_every_read_is_served_from_the_database() {
    let reader = Arc::new(MemoryProductReader::with(&[view("product123", 7)]));
    let no_cache = handler::NoCache("REDIS_HOST is not a valid host".into());
    let e = no_cache
        .get_many(&[pid("product123")])
        .await
        .expect_err("no cache");
    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert!(
        e.message.contains("REDIS_HOST is not a valid host"),
        "{}",
        e.message
    );
    assert!(no_cache.fill(&[]).await.is_err());
    let app = App::new(
        reader.clone(),
        Arc::new(no_cache),
        ReadPolicy::default(),
        Metrics::new("product-api-test", Duration::from_secs(3600)),
    );

    let first = handle(&app, get("/products/product123", &[])).await;
    let second = handle(&app, get("/products/product123", &[])).await;

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(body_json(&first)["version"], 7);
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(header_of(&second, X_CACHE), "bypass");
    assert_eq!(reader.queries(), 2);
}
