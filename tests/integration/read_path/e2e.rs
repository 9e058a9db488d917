//! The read API as the local stack serves it (`ProductApiUrl` in the outputs: the cargo-lambda
//! emulator's function URL in front of the real `product-api` binary), on the stack's own
//! database and cache prefix. Updates go through the real `persist` and `cache-invalidate`
//! handlers on those same services, so the test controls exactly when the pipeline's cache
//! step has run, and needs none of the stream machinery other e2e tests exercise.
//!
//! Named `e2e::` so `cargo xtask test` runs it in its stack pass; like the other e2e tests it
//! targets the stack `INVENTORY_OUTPUTS` names, and passes with a note when there is none
//! unless `INVENTORY_E2E_REQUIRED=1`.

use super::version_of;
use anyhow::{Context as _, Result, bail};
use inventory::adapters::cache::{RedisConfig, RedisEndpoint, RedisProductCache};
use inventory::adapters::postgres::PgEventStore;
use inventory::steps::payloads::{CacheInvalidateInput, PersistInput, PersistOutput};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The stack's outputs, or `None` when no stack is named and none is required.
fn outputs() -> Result<Option<Value>> {
    let required = std::env::var("INVENTORY_E2E_REQUIRED").is_ok_and(|v| v == "1");
    let Some(path) = std::env::var_os("INVENTORY_OUTPUTS") else {
        if required {
            bail!("INVENTORY_E2E_REQUIRED=1 but INVENTORY_OUTPUTS names no stack");
        }
        eprintln!(
            "read_path::e2e: skipped, INVENTORY_OUTPUTS names no stack (cargo xtask test runs one)"
        );
        return Ok(None);
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {path:?}"))?;
    Ok(Some(serde_json::from_slice(&bytes)?))
}

fn field<'a>(out: &'a Value, key: &str) -> Result<&'a str> {
    out[key]
        .as_str()
        .with_context(|| format!("the stack's outputs have no {key}"))
}

/// One `GET` over a fresh loopback connection: status, headers (lower-case names), body.
async fn get(
    url: &str,
    if_none_match: Option<&str>,
) -> Result<(u16, Vec<(String, String)>, Value)> {
    let rest = url.strip_prefix("http://").context("a local http:// URL")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let condition = if_none_match
        .map(|e| format!("If-None-Match: {e}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{condition}\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("status")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((
        status,
        headers,
        serde_json::from_str(body).unwrap_or(Value::Null),
    ))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

#[tokio::test]
async fn the_stack_serves_products_through_its_api_and_the_pipelines_cache_step_refreshes_them()
-> Result<()> {
    let Some(out) = outputs()? else { return Ok(()) };
    if out.get("LocalEndpointUrl").is_none() {
        eprintln!(
            "read_path::e2e: skipped on a deployed stack: needs the stack's database and cache \
             (private subnets) and an unsigned API URL"
        );
        return Ok(());
    }
    let api = field(&out, "ProductApiUrl").context("the local stack runs product-api")?;
    let db = sea_orm::Database::connect(field(&out, "LocalDatabaseUrl")?).await?;
    let store = PgEventStore::new(db.clone());
    let cache = RedisProductCache::connect(
        &RedisConfig {
            endpoint: RedisEndpoint::Url(inventory::redact::SecretUrl::new(
                field(&out, "LocalRedisUrl")?.to_owned(),
            )),
            key_prefix: field(&out, "LocalCachePrefix")?.to_owned(),
            fence_ttl_secs: 86_400,
        },
        None,
    )?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos()
        % 1_000_000_000_000;
    let id = format!("e2e-read-{nonce}");
    let pipeline = |quantity: i64, minute: u32| {
        let (store, cache, id) = (store.clone(), cache.clone(), id.clone());
        async move {
            let input = PersistInput {
                chunk: super::chunk(minute),
                updates: vec![super::update(&id, quantity, minute)],
            };
            let persisted: PersistOutput = inventory_persist::handle(
                serde_json::to_value(&input)?,
                &store,
                super::arrival(&input),
            )
            .await?;
            let changed = CacheInvalidateInput {
                products: persisted.changed.clone(),
            };
            inventory_cache_invalidate::handle(serde_json::to_value(&changed)?, &cache)
                .await
                .map_err(|d| anyhow::anyhow!("{}: {}", d.kind.name(), d.detailed()))?;
            version_of(&persisted, &id)
        }
    };
    let product = format!("{api}/products/{id}");

    let (unknown, _, problem) = get(&product, None).await?;
    let v1 = pipeline(100, 1).await?;
    let (created, _, first) = get(&product, None).await?;
    let (again, headers, _) = get(&product, None).await?;
    let (not_modified, _, _) = get(&product, Some(header(&headers, "etag"))).await?;
    let v2 = pipeline(7, 2).await?;
    let (_, refreshed_headers, refreshed) = get(&product, None).await?;
    let (batch_status, _, batch) =
        get(&format!("{api}/products?ids={id},e2e-read-nobody"), None).await?;
    let (_, _, history) = get(&format!("{product}/history"), None).await?;
    db.close().await.ok();

    assert_eq!(unknown, 404);
    assert_eq!(problem["type"], "urn:inventory:problem:unknown-product");
    assert_eq!(
        created, 200,
        "the cached 404 was evicted by the product's first invalidation"
    );
    assert_eq!(
        (first["version"].as_i64(), first["total_quantity"].as_i64()),
        (Some(v1), Some(100))
    );
    assert_eq!((again, header(&headers, "x-cache")), (200, "hit"));
    assert_eq!(not_modified, 304);
    assert_eq!(
        (
            refreshed["version"].as_i64(),
            refreshed["total_quantity"].as_i64()
        ),
        (Some(v2), Some(7)),
        "never the cached v1 after the cache step ran"
    );
    assert_eq!(header(&refreshed_headers, "x-cache"), "miss");
    assert_eq!(batch_status, 200);
    assert_eq!(batch["not_found"], serde_json::json!(["e2e-read-nobody"]));
    assert_eq!(batch["products"][0]["version"].as_i64(), Some(v2));
    assert_eq!(history["events"].as_array().map(Vec::len), Some(2));
    Ok(())
}
