//! Which endpoint a request is for, with its parameters parsed and checked: product ids,
//! `ids`, `limit`, `before`. Anything malformed becomes a [`Problem`] that says what is wrong.

use crate::respond::Problem;
use inventory::ProductId;
use inventory::read::{DEFAULT_HISTORY_LIMIT, HistoryQuery, MAX_BATCH_PRODUCTS};
use lambda_http::http::Method;
use percent_encoding::percent_decode_str;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /products/{product_id}`
    Product(ProductId),
    /// `GET /products?ids=a,b,c`
    Products(Vec<ProductId>),
    /// `GET /products/{product_id}/history?limit=N&before=SEQ`
    History(ProductId, HistoryQuery),
    /// `GET /openapi.json`: this API's OpenAPI document.
    OpenApi,
}

/// Parses the method, path and raw query string.
pub fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, Problem> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let route_kind = match segments.as_slice() {
        ["products"] => Kind::Products,
        ["products", id] => Kind::Product(id),
        ["products", id, "history"] => Kind::History(id),
        ["openapi.json"] => Kind::OpenApi,
        _ => return Err(Problem::no_such_route(path)),
    };
    if method != Method::GET {
        return Err(Problem::method_not_allowed(method));
    }
    let params = parse_query(query.unwrap_or(""))?;
    match route_kind {
        Kind::OpenApi => {
            params.only(&[])?;
            Ok(Route::OpenApi)
        }
        Kind::Product(id) => {
            params.only(&[])?;
            Ok(Route::Product(product_id(id)?))
        }
        Kind::Products => {
            params.only(&["ids"])?;
            let ids = params.get("ids").ok_or_else(|| {
                Problem::invalid_parameter("ids", "ids is required, e.g. ?ids=a,b,c")
            })?;
            Ok(Route::Products(product_ids(ids)?))
        }
        Kind::History(id) => {
            params.only(&["limit", "before"])?;
            let limit = match params.get("limit") {
                Some(v) => v.parse::<usize>().map_err(|_| {
                    Problem::invalid_parameter(
                        "limit",
                        format!("limit must be a whole number, got {v:?}"),
                    )
                })?,
                None => DEFAULT_HISTORY_LIMIT,
            };
            let before = match params.get("before") {
                Some(v) => Some(v.parse::<i64>().map_err(|_| {
                    Problem::invalid_parameter(
                        "before",
                        format!("before must be an event position (a whole number), got {v:?}"),
                    )
                })?),
                None => None,
            };
            let query = HistoryQuery::new(before, limit)
                .map_err(|e| Problem::invalid_parameter(e.parameter(), e.to_string()))?;
            Ok(Route::History(product_id(id)?, query))
        }
    }
}

enum Kind<'a> {
    OpenApi,
    Products,
    Product(&'a str),
    History(&'a str),
}

/// A path segment's id, percent-decoded (`percent-encoding`: a broken escape stays as it is,
/// and the id's own rules reject its `%`).
fn product_id(raw: &str) -> Result<ProductId, Problem> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Problem::invalid_id(raw, "the id is not UTF-8 once percent-decoded"))?;
    ProductId::parse(&decoded).map_err(|r| Problem::invalid_id(&decoded, &r.message))
}

fn product_ids(list: &str) -> Result<Vec<ProductId>, Problem> {
    let ids: Vec<&str> = list.split(',').collect();
    if ids.len() > MAX_BATCH_PRODUCTS {
        return Err(Problem::invalid_parameter(
            "ids",
            format!(
                "at most {MAX_BATCH_PRODUCTS} ids per request, got {}",
                ids.len()
            ),
        ));
    }
    ids.into_iter()
        .map(|id| ProductId::parse(id).map_err(|r| Problem::invalid_id(id, &r.message)))
        .collect()
}

/// Query parameters, decoded, each at most once.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Fails on any parameter not in `known`: a typo should not silently read something else.
    fn only(&self, known: &[&str]) -> Result<(), Problem> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(Problem::invalid_parameter(
                k,
                if known.is_empty() {
                    format!("this endpoint takes no query parameters, got {k:?}")
                } else {
                    format!("unknown query parameter {k:?}; known: {}", known.join(", "))
                },
            )),
            None => Ok(()),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding (`form_urlencoded`, as browsers do it: `+` is
/// a space, a broken escape stays as it is, bytes that are not UTF-8 become U+FFFD, which no
/// parameter's own rules accept).
fn parse_query(query: &str) -> Result<Params, Problem> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if params.iter().any(|(seen, _)| *seen == k) {
            return Err(Problem::invalid_parameter(
                &k,
                format!("{k} is given more than once"),
            ));
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    Ok(Params(params))
}
