//! HTTP answers: JSON with an `ETag` and a `Cache-Control` suited to inventory, `304` when
//! `If-None-Match` matches, and RFC 9457 problem details (`application/problem+json`) for
//! everything that is not a product.
//!
//! Cache-Control: stock and prices change all the time, and a storefront showing a stale
//! "in stock" for long costs orders, so a response is fresh for 5 s only. For 10 s more a
//! client cache may serve it while it revalidates in the background (`If-None-Match` makes
//! that a body-less `304`), and for 60 s when this API fails, which beats showing nothing.
//! Checkout must re-read, never trust a cached figure. `public` because the data is the same
//! for every caller (nothing per user), and a shared cache would otherwise not store an
//! answer to a signed (IAM-authorised) request.

use lambda_http::Body;
use lambda_http::http::{HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A product or a batch of them.
pub const PRODUCT_CACHE_CONTROL: &str =
    "public, max-age=5, stale-while-revalidate=10, stale-if-error=60";
/// An unknown product: as long as the read path caches the negative answer.
pub const NOT_FOUND_CACHE_CONTROL: &str = "public, max-age=5";
/// The newest page of a history: it grows with every update.
pub const HISTORY_HEAD_CACHE_CONTROL: &str = "public, max-age=5";
/// An older page (`before` given): a product's events get positions in commit order, so
/// such a page does not change; a minute keeps it cheap without promising forever.
pub const HISTORY_PAGE_CACHE_CONTROL: &str = "public, max-age=60";
/// Errors are never cached.
pub const NO_STORE: &str = "no-store";
/// This API's OpenAPI document: it changes only with a deployment.
pub const OPENAPI_CACHE_CONTROL: &str = "public, max-age=300";

pub const JSON: &str = "application/json";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The last part of every problem `type` this API answers with.
pub const PROBLEM_SLUGS: &[&str] = &[
    NO_SUCH_ROUTE,
    METHOD_NOT_ALLOWED,
    INVALID_PARAMETER,
    INVALID_PRODUCT_ID,
    UNKNOWN_PRODUCT,
    CATALOG_UNAVAILABLE,
    INTERNAL_ERROR,
];
const NO_SUCH_ROUTE: &str = "no-such-route";
const METHOD_NOT_ALLOWED: &str = "method-not-allowed";
const INVALID_PARAMETER: &str = "invalid-parameter";
const INVALID_PRODUCT_ID: &str = "invalid-product-id";
const UNKNOWN_PRODUCT: &str = "unknown-product";
const CATALOG_UNAVAILABLE: &str = "catalog-unavailable";
const INTERNAL_ERROR: &str = "internal-error";
const PROBLEM_TYPE_PREFIX: &str = "urn:inventory:problem:";

/// The version of the representation: bump it when the JSON of a product changes shape, so
/// clients holding an old `ETag` get the new body instead of a `304`.
const REPRESENTATION: &str = "p1";

/// A problem detail (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    /// Last part of the `type` URI, e.g. `invalid-product-id`.
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Extension members.
    pub parameter: Option<String>,
    pub product_id: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            slug,
            title,
            detail,
            parameter: None,
            product_id: None,
        }
    }

    pub fn no_such_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            NO_SUCH_ROUTE,
            "No such endpoint",
            format!(
                "{path:?} is not an endpoint of this API; try /products/{{product_id}}, /products?ids=a,b, /products/{{product_id}}/history or /openapi.json"
            ),
        )
    }

    pub fn method_not_allowed(method: &Method) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            METHOD_NOT_ALLOWED,
            "Method not allowed",
            format!("this API only reads (GET), got {method}"),
        )
    }

    pub fn invalid_parameter(name: &str, detail: impl Into<String>) -> Self {
        Self {
            parameter: Some(name.to_owned()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                INVALID_PARAMETER,
                "Invalid query parameter",
                detail.into(),
            )
        }
    }

    pub fn invalid_id(id: &str, reason: &str) -> Self {
        Self {
            product_id: Some(id.to_owned()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                INVALID_PRODUCT_ID,
                "Invalid product id",
                format!("{id:?} is not a product id: {reason}"),
            )
        }
    }

    pub fn not_found(id: &str) -> Self {
        Self {
            product_id: Some(id.to_owned()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                UNKNOWN_PRODUCT,
                "Unknown product",
                format!("no supplier has reported product {id:?}"),
            )
        }
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            CATALOG_UNAVAILABLE,
            "Catalog temporarily unavailable",
            "the catalog database could not be reached; retry in a moment".to_owned(),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            INTERNAL_ERROR,
            "Internal error",
            "the request failed on our side; the logs have the details".to_owned(),
        )
    }

    /// The `type` URI.
    pub fn type_uri(&self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.slug)
    }

    /// The response, with `instance` set to the request path.
    pub fn response(&self, instance: &str) -> Response<Body> {
        let body = ProblemBody {
            r#type: self.type_uri(),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            instance,
            parameter: self.parameter.as_deref(),
            product_id: self.product_id.as_deref(),
        };
        let body = serde_json::to_string(&body).unwrap_or_else(|_| {
            // Strings and a number always encode; keep an answer even so.
            format!(
                r#"{{"type":"{}","status":{}}}"#,
                self.type_uri(),
                self.status.as_u16()
            )
        });
        let cache_control = if self.slug == UNKNOWN_PRODUCT {
            NOT_FOUND_CACHE_CONTROL
        } else {
            NO_STORE
        };
        let mut r = build(self.status, PROBLEM_JSON, cache_control, Body::Text(body));
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// A problem detail as it is written (RFC 9457), with this API's extension members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody<'a> {
    /// What kind of problem it is: a URN, one of a fixed list.
    #[schema(schema_with = problem_type_schema)]
    pub r#type: String,
    /// A short, fixed summary of the kind of problem.
    pub title: &'a str,
    /// The HTTP status code.
    pub status: u16,
    /// What is wrong with this request, in words.
    pub detail: &'a str,
    /// The request path.
    pub instance: &'a str,
    /// The query parameter that is wrong (`invalid-parameter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<&'a str>,
    /// The product id that is wrong or unknown (`invalid-product-id`, `unknown-product`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<&'a str>,
}

fn problem_type_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(
            PROBLEM_SLUGS
                .iter()
                .map(|slug| format!("{PROBLEM_TYPE_PREFIX}{slug}")),
        ))
        .into()
}

/// The strong `ETag` of a product at `version`: its representation is a function of the
/// version (and of [`REPRESENTATION`]).
pub fn product_etag(version: i64) -> String {
    format!("\"{REPRESENTATION}.{version}\"")
}

/// A strong `ETag` over several parts (a batch's ids and versions, a history page's events).
pub fn digest_etag(kind: &str, parts: impl IntoIterator<Item = String>) -> String {
    let mut h = Sha256::new();
    h.update(REPRESENTATION.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    format!("\"{kind}.{}\"", &hex::encode(h.finalize())[..20])
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 13.1.2), or is `*`.
pub fn not_modified(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(list) = if_none_match else {
        return false;
    };
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let wanted = bare(etag);
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || bare(t) == wanted)
}

/// `200` with the JSON body, or `304` without it when the client already has this `etag`.
pub fn json(
    body: String,
    etag: &str,
    cache_control: &'static str,
    if_none_match: Option<&str>,
) -> Response<Body> {
    let (status, body) = if not_modified(if_none_match, etag) {
        (StatusCode::NOT_MODIFIED, Body::Empty)
    } else {
        (StatusCode::OK, Body::Text(body))
    };
    let mut r = build(status, JSON, cache_control, body);
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::NOT_MODIFIED {
        r.headers_mut().remove(header::CONTENT_TYPE);
    }
    r
}

fn build(
    status: StatusCode,
    content_type: &'static str,
    cache_control: &'static str,
    body: Body,
) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    r
}
