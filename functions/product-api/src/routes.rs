//! Which endpoint a request is for, with its parameters parsed and checked: product ids,
//! `ids`, `limit`, `before`. Anything malformed becomes a [`Problem`] that says what is wrong.

use crate::respond::Problem;
use inventory::ProductId;
use inventory::catalog_read::{DEFAULT_HISTORY_LIMIT, HistoryQuery, MAX_BATCH_PRODUCTS};
use lambda_http::http::Method;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /products/{product_id}`
    Product(ProductId),
    /// `GET /products?ids=a,b,c`
    Products(Vec<ProductId>),
    /// `GET /products/{product_id}/history?limit=N&before=SEQ`
    History(ProductId, HistoryQuery),
}

/// Parses the method, path and raw query string.
pub fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, Problem> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let route_kind = match segments.as_slice() {
        ["products"] => Kind::Products,
        ["products", id] => Kind::Product(id),
        ["products", id, "history"] => Kind::History(id),
        _ => return Err(Problem::no_such_route(path)),
    };
    if method != Method::GET {
        return Err(Problem::method_not_allowed(method));
    }
    let params = parse_query(query.unwrap_or(""))?;
    match route_kind {
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
            let query = HistoryQuery::new(before, limit).map_err(|e| {
                let name = if e.message.starts_with("limit") {
                    "limit"
                } else {
                    "before"
                };
                Problem::invalid_parameter(name, e.message)
            })?;
            Ok(Route::History(product_id(id)?, query))
        }
    }
}

enum Kind<'a> {
    Products,
    Product(&'a str),
    History(&'a str),
}

fn product_id(raw: &str) -> Result<ProductId, Problem> {
    let decoded = percent_decode(raw)
        .ok_or_else(|| Problem::invalid_id(raw, "the id is not valid percent-encoding"))?;
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

fn parse_query(query: &str) -> Result<Params, Problem> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (form_decode(k), form_decode(v)) else {
            return Err(Problem::invalid_parameter(
                k,
                "the query string is not valid percent-encoding",
            ));
        };
        if params.iter().any(|(seen, _)| *seen == k) {
            return Err(Problem::invalid_parameter(
                &k,
                format!("{k} is given more than once"),
            ));
        }
        params.push((k, v));
    }
    Ok(Params(params))
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space.
fn form_decode(s: &str) -> Option<String> {
    percent_decode(&s.replace('+', " "))
}

/// Decodes `%XX` escapes; `None` when one is broken or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
