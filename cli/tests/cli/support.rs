//! Test support: a Kinesis stream on moto, reading the stream back, and running the
//! `inventory` binary; the fault-injecting proxy in front of moto is `test_support`'s.

use anyhow::{Context as _, Result};
use aws_sdk_kinesis::types::ShardIteratorType;
pub use integration_tests::moto::{MotoS3, MotoServer};
use serde_json::Value;
use std::path::Path;
use std::process::Output;
pub use test_support::fault_proxy::{FaultPlan, FaultProxy};

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
