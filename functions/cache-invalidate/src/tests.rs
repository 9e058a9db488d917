//! The handler against an in-memory cache and the shared JSON fixture.

use crate::{Config, connect, handle};
use async_trait::async_trait;
use aws_config::SdkConfig;
use inventory::config::FromEnv;
use inventory::ports::CacheInvalidator;
use inventory::{CacheInvalidateOutput, ChangedProduct, ErrorKind, PipelineError};
use std::collections::HashMap;
use std::sync::Mutex;

const FIXTURE: &str = include_str!("../../../tests/fixtures/cache-invalidate-input.json");

/// Records every call; evicts nothing and raises every fence, or fails with `fail`.
#[derive(Default)]
struct MemoryCache {
    calls: Mutex<Vec<Vec<ChangedProduct>>>,
    fail: Option<ErrorKind>,
}

#[async_trait]
impl CacheInvalidator for MemoryCache {
    async fn invalidate(
        &self,
        products: &[ChangedProduct],
    ) -> Result<CacheInvalidateOutput, PipelineError> {
        if let Some(kind) = self.fail {
            return Err(PipelineError::new(kind, "cache failed"));
        }
        self.calls
            .lock()
            .expect("not poisoned")
            .push(products.to_vec());
        Ok(CacheInvalidateOutput {
            evicted: 1,
            fenced: products.len(),
        })
    }
}

fn fixture() -> serde_json::Value {
    serde_json::from_str(FIXTURE).expect("the fixture is JSON")
}

#[tokio::test]
async fn the_changed_products_are_invalidated_in_one_call() {
    let cache = MemoryCache::default();

    let out = handle(fixture(), &cache).await.expect("invalidated");

    assert_eq!(
        out,
        CacheInvalidateOutput {
            evicted: 1,
            fenced: 2
        }
    );
    let calls = cache.calls.lock().expect("not poisoned");
    assert_eq!(calls.len(), 1, "one round trip");
    let seen: Vec<(&str, i64)> = calls[0]
        .iter()
        .map(|p| (p.product_id.as_str(), p.version))
        .collect();
    assert_eq!(seen, [("product123", 41), ("sku-42", 42)]);
}

#[tokio::test]
async fn no_changed_products_means_no_call() {
    let cache = MemoryCache::default();

    let out = handle(serde_json::json!({"products": []}), &cache)
        .await
        .expect("nothing to do");

    assert_eq!(out, CacheInvalidateOutput::default());
    assert!(cache.calls.lock().expect("not poisoned").is_empty());
}

#[tokio::test]
async fn a_payload_that_is_not_a_product_list_is_an_invalid_payload() {
    let cache = MemoryCache::default();
    let payloads = [
        serde_json::Value::Null,
        serde_json::json!({}),
        serde_json::json!({"products": [{"product_id": "has space", "version": 1}]}),
        serde_json::json!({"products": [{"product_id": "sku-1", "version": "one"}]}),
        serde_json::json!({"products": [{"product_id": "sku-1"}]}),
    ];

    for payload in payloads {
        let e = handle(payload.clone(), &cache)
            .await
            .expect_err("not a product list");
        assert_eq!(e.kind.name(), "Inventory.InvalidPayload", "{payload}");
    }
    assert!(cache.calls.lock().expect("not poisoned").is_empty());
}

#[tokio::test]
async fn a_cache_failure_keeps_its_stable_name() {
    for (kind, name) in [
        (
            ErrorKind::DependencyUnavailable,
            "Inventory.DependencyUnavailable",
        ),
        (ErrorKind::Internal, "Inventory.Internal"),
    ] {
        let cache = MemoryCache {
            fail: Some(kind),
            ..MemoryCache::default()
        };

        let e = handle(fixture(), &cache).await.expect_err("cache fails");

        assert_eq!(e.kind.name(), name);
    }
}

#[test]
fn the_config_names_what_is_missing() {
    let e = Config::from_lookup(|_| None).expect_err("no redis");
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(
        e.message.contains("REDIS_URL") && e.message.contains("REDIS_HOST"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn without_an_auth_secret_no_secret_is_read_and_the_connection_opens_lazily() {
    // Nothing listens on port 1 and the SDK config points nowhere: set-up must still succeed,
    // and the first invocation must fail as transient.
    let vars: HashMap<&str, &str> = [
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("CACHE_KEY_PREFIX", "t:"),
    ]
    .into();
    let config = Config::from_lookup(|n| vars.get(n).map(|v| (*v).to_owned())).expect("valid");
    let sdk = SdkConfig::builder().build();

    let cache = connect(&config, &sdk).await.expect("lazy connection");
    let e = handle(fixture(), &cache)
        .await
        .expect_err("redis unreachable");

    assert_eq!(e.kind.name(), "Inventory.DependencyUnavailable");
}
