//! An HTTP proxy in front of a Kinesis endpoint (moto) that fails chosen PutRecords entries
//! with `ProvisionedThroughputExceededException`, as Kinesis does under load, so a sender's
//! retry of partly failed requests can be tested. Every other call passes through unchanged.

use anyhow::Result;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which PutRecords entries the proxy fails.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Fail an entry this many times before letting it through (odd positions in each request
    /// only, so requests partly succeed).
    pub fail_times: u32,
    /// Fail every entry whose data contains this text, always.
    pub always_fail_containing: Option<String>,
}

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub put_records_calls: AtomicU64,
    pub entries_failed: AtomicU64,
    /// Entries per request, in the order requests arrived.
    pub request_sizes: Mutex<Vec<usize>>,
    /// Bytes (data + partition key) per request.
    pub request_bytes: Mutex<Vec<usize>>,
}

/// An HTTP proxy in front of moto that fails chosen PutRecords entries with
/// ProvisionedThroughputExceededException, as Kinesis does under load, and serialises the
/// PutRecords it forwards (plain moto's put_record is not safe under concurrent calls).
#[derive(Debug)]
pub struct FaultProxy {
    pub url: String,
    pub stats: Arc<ProxyStats>,
}

struct ProxyState {
    upstream: String,
    plan: FaultPlan,
    seen: Mutex<HashMap<String, u32>>,
    forward_lock: tokio::sync::Mutex<()>,
    stats: Arc<ProxyStats>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl FaultProxy {
    /// Starts the proxy in front of `upstream` (`http://127.0.0.1:PORT`, moto's endpoint).
    pub async fn start(upstream: &str, plan: FaultPlan) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let stats = Arc::new(ProxyStats::default());
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            plan,
            seen: Mutex::new(HashMap::new()),
            forward_lock: tokio::sync::Mutex::new(()),
            stats: stats.clone(),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        });
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { handle(state, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self { url, stats })
    }
}

async fn handle(
    state: Arc<ProxyState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !target.ends_with(".PutRecords") {
        return Ok(forward(&state, &parts, body).await);
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let entries = request["Records"].as_array().cloned().unwrap_or_default();
    state.stats.put_records_calls.fetch_add(1, Ordering::SeqCst);
    state
        .stats
        .request_sizes
        .lock()
        .expect("lock")
        .push(entries.len());
    let bytes: usize = entries
        .iter()
        .map(|e| {
            let data = e["Data"].as_str().unwrap_or("");
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_or(0, |d| d.len())
                + e["PartitionKey"].as_str().map_or(0, str::len)
        })
        .sum();
    state.stats.request_bytes.lock().expect("lock").push(bytes);
    let fails: Vec<bool> = {
        let mut seen = state.seen.lock().expect("lock");
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let data = e["Data"].as_str().unwrap_or("").to_owned();
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(&data)
                    .unwrap_or_default();
                if let Some(marker) = &state.plan.always_fail_containing
                    && String::from_utf8_lossy(&decoded).contains(marker.as_str())
                {
                    return true;
                }
                let n = seen.entry(data).or_insert(0);
                if i % 2 == 1 && *n < state.plan.fail_times {
                    *n += 1;
                    return true;
                }
                false
            })
            .collect()
    };
    let passing: Vec<Value> = entries
        .iter()
        .zip(&fails)
        .filter(|(_, f)| !**f)
        .map(|(e, _)| e.clone())
        .collect();
    let mut upstream_results = Vec::new();
    if !passing.is_empty() {
        let mut forwarded = request.clone();
        forwarded["Records"] = Value::Array(passing);
        let _serial = state.forward_lock.lock().await;
        let resp = forward(&state, &parts, Bytes::from(forwarded.to_string())).await;
        if resp.status() != 200 {
            return Ok(resp);
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        upstream_results = v["Records"].as_array().cloned().unwrap_or_default();
    }
    let mut upstream = upstream_results.into_iter();
    let mut failed = 0;
    let results: Vec<Value> = fails
        .iter()
        .map(|f| {
            if *f {
                failed += 1;
                json!({"ErrorCode": "ProvisionedThroughputExceededException",
                       "ErrorMessage": "Rate exceeded for shard (injected by the test proxy)"})
            } else {
                upstream
                    .next()
                    .unwrap_or(json!({"ErrorCode": "InternalFailure", "ErrorMessage": "missing"}))
            }
        })
        .collect();
    state
        .stats
        .entries_failed
        .fetch_add(failed, Ordering::SeqCst);
    let body = json!({"FailedRecordCount": failed, "Records": results}).to_string();
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

async fn forward(
    state: &ProxyState,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let uri = format!(
        "{}{}",
        state.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut builder = Request::builder().method(parts.method.clone()).uri(uri);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            builder = builder.header(name, value);
        }
    }
    let Ok(req) = builder.body(Full::new(body)) else {
        return Response::builder()
            .status(500)
            .body(Full::new(Bytes::new()))
            .unwrap_or_default();
    };
    match state.client.request(req).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Response::from_parts(parts, Full::new(body))
        }
        Err(e) => Response::builder()
            .status(502)
            .body(Full::new(Bytes::from(e.to_string())))
            .unwrap_or_default(),
    }
}
