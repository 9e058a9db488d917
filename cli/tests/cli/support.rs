//! Test support: a Kinesis stream on moto, a fault-injecting proxy in front of it, reading
//! the stream back, and running the `inventory` binary.

use anyhow::{Context as _, Result};
use aws_sdk_kinesis::types::ShardIteratorType;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use integration_tests::moto::MotoServer;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub fn moto() -> Result<&'static MotoServer> {
    MotoServer::shared()
}

pub fn kinesis(moto: &MotoServer) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&moto.sdk_config())
}

/// A fresh stream with `shards` shards, active.
pub async fn create_stream(moto: &MotoServer, purpose: &str, shards: i32) -> Result<String> {
    let name = integration_tests::moto::unique_name(purpose);
    let k = kinesis(moto);
    k.create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .context("creating a stream in moto")?;
    Ok(name)
}

/// A record read back from the stream.
#[derive(Debug, Clone)]
pub struct Read {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Every record on the stream, shard by shard, in sequence order.
pub async fn read_stream(moto: &MotoServer, stream: &str) -> Result<Vec<Read>> {
    let k = kinesis(moto);
    let shards = k.list_shards().stream_name(stream).send().await?;
    let mut out = Vec::new();
    for shard in shards.shards() {
        let it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?;
        let mut next = it.shard_iterator().map(str::to_owned);
        while let Some(i) = next.take() {
            let page = k
                .get_records()
                .shard_iterator(i)
                .limit(10_000)
                .send()
                .await?;
            if page.records().is_empty() {
                break;
            }
            for r in page.records() {
                out.push(Read {
                    partition_key: r.partition_key().to_owned(),
                    data: r.data().as_ref().to_vec(),
                });
            }
            next = page.next_shard_iterator().map(str::to_owned);
        }
    }
    Ok(out)
}

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
    pub async fn start(moto: &MotoServer, plan: FaultPlan) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let stats = Arc::new(ProxyStats::default());
        let state = Arc::new(ProxyState {
            upstream: moto.endpoint_url().to_owned(),
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

/// Runs `inventory ARGS` with moto's credentials and region, feeding `stdin`.
pub async fn inventory(args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    use tokio::io::AsyncWriteExt as _;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_inventory"));
    cmd.args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("running the inventory binary")?;
    if let Some(mut input) = child.stdin.take() {
        if let Some(bytes) = stdin {
            input.write_all(bytes).await?;
        }
        drop(input);
    }
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        child.wait_with_output(),
    )
    .await
    .context("inventory did not finish in 5 minutes")??;
    Ok(out)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// A valid record for `product` with a sequence number in its update_id, so order can be read
/// back from the stream. Its `occurred_at` is a day before now (on the hour), inside the
/// pipeline's dedup window.
pub fn update(product: &str, n: usize) -> String {
    let at = inventory::feed::FeedSpec::default()
        .start
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"{{"product_id":"{product}","quantity":{n},"price":"1.00","supplier_id":"acme","update_id":"u-{n:06}","occurred_at":"{at}"}}"#
    )
}

/// The `n` of a record made by [`update`].
pub fn update_number(data: &[u8]) -> usize {
    let v: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
    v["update_id"]
        .as_str()
        .and_then(|s| s.strip_prefix("u-"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX)
}

pub fn write(dir: &Path, name: &str, text: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.to_string_lossy().into_owned())
}
