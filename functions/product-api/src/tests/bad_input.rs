//! Malformed requests, generated and hand-picked: ids with invisible or look-alike
//! characters, broken percent-encoding, numbers that overflow, odd `If-None-Match` headers.
//! Each must get a 4xx problem (JSON, with a reason) or a normal answer, never a 5xx.

use super::*;
use proptest::prelude::*;

/// Encoded ids a browser or a bad client may send, each not a product id.
const BAD_IDS: &[&str] = &[
    "SKU%E2%80%AE1", // right-to-left override
    "SKU%E2%80%8B1", // zero-width space
    "SKU%EF%BB%BF1", // zero-width no-break space (BOM)
    "SKU-e%CC%81",   // combining acute accent
    "%D0%85KU-1",    // Cyrillic DZE, a homoglyph of S
    "SKU%EF%BC%91",  // fullwidth digit one
    "p%00",          // NUL
    "%FF%FE",        // not UTF-8
    "%",             // a lone percent sign
    "%4",            // a cut escape
    "a%2Fb",         // an encoded slash
];

fn assert_answered_without_a_server_error(r: &Response<Body>, what: &str) {
    let status = r.status();
    assert!(!status.is_server_error(), "{what}: {status} {:?}", r.body());
    if status.is_client_error() {
        assert_eq!(
            header_of(r, header::CONTENT_TYPE),
            "application/problem+json",
            "{what}"
        );
        let body = body_json(r);
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn ids_with_invisible_look_alike_or_broken_characters_are_400_problems_naming_the_id() {
    let h = harness(&[view("SKU-1", 1)]);

    for id in BAD_IDS {
        for path in [
            format!("/products/{id}"),
            format!("/products/{id}/history"),
            format!("/products?ids=SKU-1,{id}"),
        ] {
            let r = call(&h, &path, &[]).await;

            assert_answered_without_a_server_error(&r, &path);
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
            let body = body_json(&r);
            let named = body["product_id"].as_str().is_some_and(|p| !p.is_empty())
                || body["parameter"] == "ids";
            assert!(
                named,
                "{path}: the problem names the id or the parameter: {body}"
            );
        }
    }
    assert_eq!(h.reader.queries(), 0, "nothing reached the database");
}

#[tokio::test]
async fn numbers_that_overflow_are_400_problems_naming_the_parameter() {
    let h = harness(&[view("p", 1)]);
    for (query, parameter) in [
        ("limit=99999999999999999999999", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("limit=1e2", "limit"),
        ("before=9223372036854775808", "before"),
        ("before=NaN", "before"),
        ("before=%00", "before"),
        ("limit=%ZZ", "limit"),
    ] {
        let r = call(&h, &format!("/products/p/history?{query}"), &[]).await;
        let body = assert_problem(&r, StatusCode::BAD_REQUEST, "invalid-parameter");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
    }
    let empty = call(&h, "/products?ids=", &[]).await;
    assert_problem(&empty, StatusCode::BAD_REQUEST, "invalid-product-id");
}

#[tokio::test]
async fn odd_if_none_match_headers_never_fail_the_request() {
    let h = harness(&[view("p", 3)]);
    let long = "\"x\",".repeat(2_000);
    for value in [
        "",
        "*",
        ",,,",
        "W/",
        "\"",
        "W/\"p1.3\"",
        "\"p1.3\", *",
        long.as_str(),
    ] {
        let r = call(&h, "/products/p", &[("if-none-match", value)]).await;
        assert_answered_without_a_server_error(&r, value);
        assert!(
            matches!(r.status(), StatusCode::OK | StatusCode::NOT_MODIFIED),
            "{value:?}: {}",
            r.status()
        );
    }
}

/// A path segment: an id, an escape (valid, broken or of a byte that is not UTF-8), or junk.
fn segment() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[A-Za-z0-9._-]{1,8}",
        any::<u8>().prop_map(|b| format!("%{b:02X}")),
        prop::sample::select(BAD_IDS).prop_map(str::to_owned),
        Just("%".to_owned()),
        Just("%G1".to_owned()),
        Just("+".to_owned()),
        Just(",".to_owned()),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

fn query() -> impl Strategy<Value = String> {
    let key = prop::sample::select(&["ids", "limit", "before", "fields", "", "ids%00"][..]);
    let value = prop_oneof![
        segment(),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{15,30}",
        prop::collection::vec("[A-Za-z0-9]{1,4}", 0..120).prop_map(|ids| ids.join(",")),
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["products", "products", "products", "inventory", ""][..]),
        prop::collection::vec(prop_oneof![segment(), Just("history".to_owned())], 0..3),
    )
        .prop_map(|(root, rest)| {
            let mut p = format!("/{root}");
            for s in rest {
                p.push('/');
                p.push_str(&s);
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_request_line_gets_an_answer_and_never_a_server_error(path in path(), query in query()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let h = harness(&[view("p", 1), view("SKU-1", 2)]);
        let target = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };

        let r = runtime.block_on(call(&h, &target, &[]));

        assert_answered_without_a_server_error(&r, &target);
    }
}
