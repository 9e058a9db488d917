//! The OpenAPI document against the API itself: the committed copy is the generated one; the
//! real handler, for every documented route and response, answers with a documented status,
//! content type, headers and a body valid against the documented schema (and each documented
//! response is exercised); the router accepts exactly the documented paths and methods; and
//! every parameter's schema accepts exactly the values the router accepts.
//!
//! `UPDATE_CONTRACT=1 cargo test -p inventory-product-api openapi` rewrites the committed document.

use super::*;
use crate::openapi::{DOCUMENT_PATH, SIGV4, document_json};
use crate::respond::Problem;
use crate::routes::route;
use lambda_http::http::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

const REGENERATE: &str = "UPDATE_CONTRACT=1 cargo test -p inventory-product-api openapi";

fn doc() -> Value {
    serde_json::from_str(&document_json()).expect("the document is JSON")
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(DOCUMENT_PATH);
    let generated = document_json();
    if std::env::var_os("UPDATE_CONTRACT").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write the document");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{DOCUMENT_PATH} is not what the handlers and types generate; regenerate it with:\n    {REGENERATE}"
    );
}

#[tokio::test]
async fn the_api_serves_the_document_it_is_built_with() {
    let h = harness(&[]);

    let r = call(&h, "/openapi.json", &[]).await;

    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.body().as_ref(), document_json().as_bytes());
    let d = doc();
    assert_eq!(d["openapi"], "3.1.0");
    assert_eq!(d["security"], json!([{ SIGV4: [] }]));
    assert_eq!(
        d["components"]["securitySchemes"][SIGV4]["in"], "header",
        "{d}"
    );
}

/// The documented operation for a concrete path: (template, operation).
fn operation_for(d: &Value, path: &str) -> Option<(String, Value)> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    d["paths"].as_object()?.iter().find_map(|(template, item)| {
        let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
        let matches = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(p, s)| p == s || (p.starts_with('{') && p.ends_with('}')));
        matches.then(|| (template.clone(), item["get"].clone()))
    })
}

/// A validator for `schema`, with the document's components to resolve its `$ref`s.
fn validator(d: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = json!({ "allOf": [schema] });
    root["components"] = d["components"].clone();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{schema} is not a valid schema: {e}"))
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// The headers this API sets that a document should mention.
const API_HEADERS: &[&str] = &["etag", "cache-control", "x-cache", "retry-after", "allow"];

/// Holds one real answer to the document; returns (template, status) it exercised.
fn check_answer(d: &Value, path: &str, r: &Response<Body>) -> (String, String) {
    let bare = path.split('?').next().unwrap_or(path);
    let (template, op) =
        operation_for(d, bare).unwrap_or_else(|| panic!("{path} is not documented"));
    let status = r.status().as_u16().to_string();
    let what = format!("GET {path} -> {status}");
    let documented = &op["responses"][&status];
    assert!(
        documented.is_object(),
        "{what}: status not documented for {template}"
    );
    // Headers: every documented one is sent, every one sent is documented.
    let doc_headers: BTreeSet<String> = documented["headers"]
        .as_object()
        .map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect())
        .unwrap_or_default();
    let sent: BTreeSet<String> = r
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| API_HEADERS.contains(&k.as_str()))
        .collect();
    assert_eq!(sent, doc_headers, "{what}: headers sent vs documented");
    // Content: none on a 304, else the documented media type with a valid body.
    let content = documented["content"].as_object();
    if r.status() == StatusCode::NOT_MODIFIED {
        assert!(content.is_none(), "{what}: a 304 has no content");
        assert!(r.body().is_empty(), "{what}: a 304 has no body");
        return (template, status);
    }
    let media = header_of(r, header::CONTENT_TYPE);
    let schema = content
        .and_then(|c| c.get(media))
        .map(|m| &m["schema"])
        .unwrap_or_else(|| panic!("{what}: content type {media:?} not documented"));
    let body = body_json(r);
    let problems = errors(&validator(d, schema), &body);
    assert!(
        problems.is_empty(),
        "{what}: the body does not match the document: {problems:?}\n{body}"
    );
    (template, status)
}

fn failing(kind: ErrorKind) -> App {
    App::new(
        Arc::new(MemoryProductReader::failing(kind)),
        Arc::new(MemoryProductCache::default()),
        ReadPolicy::default(),
        Metrics::new("product-api-test", Duration::from_secs(3600)),
    )
}

#[tokio::test]
async fn every_documented_response_is_what_the_handler_answers() {
    let d = doc();
    let h = harness(&[view("product123", 42)]);
    let down = failing(ErrorKind::DependencyUnavailable);
    let broken = failing(ErrorKind::Internal);
    let mut exercised = BTreeSet::new();
    let paths = [
        "/products/product123",
        "/products?ids=product123,nobody",
        "/products/product123/history?limit=2",
        "/openapi.json",
    ];
    for path in paths {
        // 200, then 304 with its ETag.
        let ok = call(&h, path, &[]).await;
        assert_eq!(ok.status(), StatusCode::OK, "{path}");
        exercised.insert(check_answer(&d, path, &ok));
        let etag = header_of(&ok, header::ETAG).to_owned();
        let again = call(&h, path, &[("if-none-match", &etag)]).await;
        exercised.insert(check_answer(&d, path, &again));
        // A malformed request: an unknown query parameter.
        let sep = if path.contains('?') { '&' } else { '?' };
        let bad = format!("{path}{sep}colour=red");
        exercised.insert(check_answer(&d, &bad, &call(&h, &bad, &[]).await));
        // The database down (503) or failing (500).
        for app in [&down, &broken] {
            let r = handle(app, get(path, &[])).await;
            exercised.insert(check_answer(&d, path, &r));
        }
    }
    for path in [
        "/products/bad%20id",
        "/products?ids=a,,b",
        "/products/product123/history?limit=0",
        "/products/product123/history?before=x",
        "/products/nobody",
        "/products/nobody/history",
    ] {
        exercised.insert(check_answer(&d, path, &call(&h, path, &[]).await));
    }
    let documented: BTreeSet<(String, String)> = d["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(template, item)| {
            item["get"]["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .map(|status| (template.clone(), status.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        exercised, documented,
        "the responses exercised are the documented ones"
    );
}

#[test]
fn every_problem_body_matches_the_documented_problem_schema() {
    let d = doc();
    let v = validator(&d, &json!({ "$ref": "#/components/schemas/Problem" }));
    let problems = [
        Problem::no_such_route("/x"),
        Problem::method_not_allowed(&Method::POST),
        Problem::invalid_parameter("ids", "ids is required"),
        Problem::invalid_id("a b", "has a space"),
        Problem::not_found("nobody"),
        Problem::unavailable(),
        Problem::internal(),
    ];
    let mut slugs = BTreeSet::new();
    for p in problems {
        let r = p.response("/x");
        let body = body_json(&r);
        assert_eq!(body["status"], r.status().as_u16());
        let problems = errors(&v, &body);
        assert!(problems.is_empty(), "{body}: {problems:?}");
        slugs.insert(p.slug);
    }
    let listed: BTreeSet<&str> = respond::PROBLEM_SLUGS.iter().copied().collect();
    assert_eq!(slugs, listed, "every problem type is made and listed");
    // The schema is not a rubber stamp.
    let wrong = json!({"type": "urn:inventory:problem:nope", "title": "t", "status": 400, "detail": "d", "instance": "/"});
    assert!(!errors(&v, &wrong).is_empty());
}

/// Whether the router takes the path as one of its routes (whatever it then says of the
/// parameters), for `GET`.
fn routed(method: &Method, path: &str) -> Result<(), Problem> {
    match route(method, path, None) {
        Err(p) if p.slug == "no-such-route" => Err(p),
        _ => Ok(()),
    }
}

#[test]
fn the_router_takes_exactly_the_documented_paths_and_only_get() {
    let d = doc();
    // The documented literals, an id, and names an API might grow (the router's own table is
    // its match arms, so a new literal is found only if it is among these).
    let words = [
        "products",
        "history",
        "openapi.json",
        "p1",
        "%7B",
        "api",
        "v1",
        "openapi.yaml",
        "openapi",
        "docs",
        "health",
        "offers",
        "suppliers",
        "events",
    ];
    let mut paths = vec!["/".to_owned()];
    for a in words {
        paths.push(format!("/{a}"));
        for b in words {
            paths.push(format!("/{a}/{b}"));
            for c in words {
                paths.push(format!("/{a}/{b}/{c}"));
                paths.push(format!("/{a}/{b}/{c}/x"));
            }
        }
    }
    for path in &paths {
        let documented = operation_for(&d, path).is_some_and(|(_, op)| op.is_object());
        let accepted = routed(&Method::GET, path).is_ok();
        assert_eq!(
            accepted, documented,
            "{path}: router accepts {accepted}, document has it {documented}"
        );
        if documented {
            for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
                let p = route(&m, path, None).expect_err("only GET");
                assert_eq!(p.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
            }
        }
    }
    for (template, item) in d["paths"].as_object().expect("paths") {
        let methods: Vec<&String> = item
            .as_object()
            .expect("path item")
            .keys()
            .filter(|k| *k != "parameters")
            .collect();
        assert_eq!(methods, ["get"], "{template}");
    }
}

/// A parameter value as the schema sees it: a query value that is a number as the number,
/// anything else as the string;
/// an `explode: false` array split at its commas.
fn as_json(param: &Value, raw: &str) -> Value {
    if param["schema"]["type"] == "array" {
        return Value::from(raw.split(',').collect::<Vec<_>>());
    }
    if param["in"] != "query" {
        return Value::from(raw);
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(n @ Value::Number(_)) => n,
        _ => Value::from(raw),
    }
}

#[test]
fn every_parameter_schema_accepts_exactly_what_the_router_accepts() {
    let d = doc();
    let long_ids = |n: usize| {
        (0..n)
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let ids_samples = [
        "a".to_owned(),
        "a,b".to_owned(),
        String::new(),
        "a,,b".to_owned(),
        "bad id".to_owned(),
        long_ids(100),
        long_ids(101),
    ];
    let id_samples = [
        "p1".to_owned(),
        "a".repeat(64),
        "a".repeat(65),
        "a.b_c-D".to_owned(),
        "bad id".to_owned(),
        "p\u{200b}".to_owned(),
    ];
    let number_samples = [
        "0",
        "1",
        "20",
        "100",
        "101",
        "-1",
        "1.5",
        "x",
        "9223372036854775807",
        "9223372036854775808",
    ];
    let mut checked = 0;
    for (template, item) in d["paths"].as_object().expect("paths") {
        let op = &item["get"];
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let path_of = |id: &str| template.replace("{product_id}", id);
        let fine_path = path_of("p1");
        let required: Vec<&Value> = params
            .iter()
            .filter(|p| p["in"] == "query" && p["required"] == true)
            .collect();
        let base_query: Vec<String> = required
            .iter()
            .map(|p| format!("{}=p1", p["name"].as_str().expect("name")))
            .collect();
        // Without a required parameter the router refuses; with them, it takes the request.
        assert!(
            route(&Method::GET, &fine_path, Some(&base_query.join("&"))).is_ok(),
            "{template} with {base_query:?}"
        );
        for p in &required {
            let without: Vec<&String> = base_query
                .iter()
                .filter(|q| !q.starts_with(&format!("{}=", p["name"].as_str().expect("name"))))
                .collect();
            let q = without
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("&");
            assert!(
                route(&Method::GET, &fine_path, Some(&q)).is_err(),
                "{template} without {}",
                p["name"]
            );
        }
        // A query parameter the document does not name is refused.
        let mut extra = base_query.clone();
        extra.push("colour=red".to_owned());
        assert!(route(&Method::GET, &fine_path, Some(&extra.join("&"))).is_err());
        for p in &params {
            let name = p["name"].as_str().expect("name");
            let v = validator(&d, &p["schema"]);
            match p["in"].as_str() {
                Some("path") => {
                    for raw in &id_samples {
                        let encoded: String =
                            form_urlencoded::byte_serialize(raw.as_bytes()).collect();
                        let accepted = route(
                            &Method::GET,
                            &path_of(&encoded),
                            Some(&base_query.join("&")),
                        )
                        .is_ok();
                        let valid = errors(&v, &as_json(p, raw)).is_empty();
                        assert_eq!(accepted, valid, "{template}: path {name}={raw:?}");
                        checked += 1;
                    }
                }
                Some("query") => {
                    let samples: Vec<String> = if p["schema"]["type"] == "array" {
                        ids_samples.to_vec()
                    } else {
                        number_samples.iter().map(|s| (*s).to_owned()).collect()
                    };
                    for raw in &samples {
                        let mut query: Vec<String> = base_query
                            .iter()
                            .filter(|q| !q.starts_with(&format!("{name}=")))
                            .cloned()
                            .collect();
                        query.push(format!("{name}={raw}"));
                        let accepted =
                            route(&Method::GET, &fine_path, Some(&query.join("&"))).is_ok();
                        let valid = errors(&v, &as_json(p, raw)).is_empty();
                        assert_eq!(accepted, valid, "{template}: query {name}={raw:?}");
                        checked += 1;
                    }
                }
                Some("header") => assert_eq!(name, "If-None-Match"),
                other => panic!("{template}: {name} in {other:?}"),
            }
        }
    }
    assert!(checked > 30, "only {checked} values checked");
}
