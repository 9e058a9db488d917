//! The `archive` and `cache-invalidate` handlers end to end: built the way their `main`s
//! build them, against moto (S3, Secrets Manager) and real Redis.

use crate::archive::{chunk, keys, lines};
use anyhow::Result;
use integration_tests::moto::{MotoS3 as _, MotoServer};
use integration_tests::redis::{PasswordRedis, TestRedis};
use inventory::adapters::cache::{PopulateOutcome, RedisEndpoint};
use inventory::adapters::s3::{ArchiveConfig, S3ObjectStore};
use inventory::config::FromEnv;
use inventory::{CacheInvalidateOutput, ErrorKind, ProductId};
use std::collections::HashMap;
use std::time::Duration;

const CACHE_FIXTURE: &str = include_str!("../fixtures/cache-invalidate-input.json");

fn lookup(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[tokio::test]
async fn the_archive_handler_writes_the_chunk_to_the_configured_bucket() -> Result<()> {
    let moto = MotoServer::shared()?;
    let bucket = moto.create_bucket("fn-archive").await?;
    let config =
        inventory_archive::Config::from_lookup(lookup(&[("ARCHIVE_BUCKET", bucket.clone())]))?;
    let store = S3ObjectStore::new(
        inventory::adapters::aws::s3_client(&moto.sdk_config()),
        config.archive,
    );
    let payload = serde_json::to_value(chunk())?;

    let out = inventory_archive::handle(payload.clone(), &store)
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    let retried = inventory_archive::handle(payload, &store)
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;

    let s3 = moto.s3_client();
    assert_eq!(out, retried);
    assert_eq!(out.bucket, bucket);
    assert_eq!(keys(&s3, &bucket).await?, std::slice::from_ref(&out.key));
    assert_eq!(
        lines(&s3, &bucket, &out.key).await?.len(),
        chunk().records.len()
    );
    Ok(())
}

#[tokio::test]
async fn the_archive_handler_refuses_a_malformed_payload_and_writes_nothing() -> Result<()> {
    let moto = MotoServer::shared()?;
    let bucket = moto.create_bucket("fn-archive-bad").await?;
    let store = S3ObjectStore::new(
        inventory::adapters::aws::s3_client(&moto.sdk_config()),
        ArchiveConfig {
            bucket: bucket.clone(),
            kms_key_id: None,
        },
    );

    let e = inventory_archive::handle(serde_json::json!({"records": "nope"}), &store)
        .await
        .expect_err("malformed");

    assert_eq!(e.kind.name(), "Inventory.InvalidPayload");
    assert!(keys(&moto.s3_client(), &bucket).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_cache_invalidate_handler_fences_and_evicts_the_changed_products() -> Result<()> {
    let redis = TestRedis::new()?;
    let config = inventory_cache_invalidate::Config::from_lookup(lookup(&[
        ("REDIS_URL", redis.url().to_owned()),
        ("CACHE_KEY_PREFIX", redis.prefix().to_owned()),
        ("CACHE_FENCE_TTL_SECS", "120".to_owned()),
    ]))?;
    let cache =
        inventory_cache_invalidate::connect(&config, &aws_config::SdkConfig::builder().build())
            .await?;
    let stale = ProductId::parse("product123")?;
    cache
        .populate(&stale, 40, "{}", Duration::from_secs(60))
        .await?;

    let out = inventory_cache_invalidate::handle(serde_json::from_str(CACHE_FIXTURE)?, &cache)
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;

    assert_eq!(
        out,
        CacheInvalidateOutput {
            evicted: 1,
            fenced: 2
        }
    );
    assert_eq!(cache.get_many(std::slice::from_ref(&stale)).await?, [None]);
    assert_eq!(
        cache
            .populate(&stale, 40, "{}", Duration::from_secs(60))
            .await?,
        PopulateOutcome::Fenced { fence: 41 }
    );
    let e = inventory_cache_invalidate::handle(serde_json::json!({"products": "all"}), &cache)
        .await
        .expect_err("malformed");
    assert_eq!(e.kind.name(), "Inventory.InvalidPayload");
    Ok(())
}

async fn secret_with_token(moto: &MotoServer, token: &str) -> Result<String> {
    let secrets = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let created = secrets
        .create_secret()
        .name(integration_tests::moto::unique_name("redis-auth"))
        .secret_string(serde_json::json!({ "auth_token": token }).to_string())
        .send()
        .await?;
    Ok(created.arn().unwrap_or_default().to_owned())
}

fn host_config(server: &PasswordRedis, arn: &str) -> Result<inventory_cache_invalidate::Config> {
    let config = inventory_cache_invalidate::Config::from_lookup(lookup(&[
        ("REDIS_HOST", "127.0.0.1".to_owned()),
        ("REDIS_PORT", server.port().to_string()),
        ("REDIS_TLS", "false".to_owned()),
        ("REDIS_AUTH_SECRET_ARN", arn.to_owned()),
        ("CACHE_KEY_PREFIX", "inventory:test:".to_owned()),
    ]))?;
    assert!(matches!(
        config.redis.endpoint,
        RedisEndpoint::Host { tls: false, .. }
    ));
    Ok(config)
}

#[tokio::test]
async fn the_auth_token_is_read_from_secrets_manager_and_opens_a_protected_redis() -> Result<()> {
    let moto = MotoServer::shared()?;
    let server = PasswordRedis::start("tok-8c41f2")?;
    let arn = secret_with_token(moto, "tok-8c41f2").await?;
    let config = host_config(&server, &arn)?;

    let cache = inventory_cache_invalidate::connect(&config, &moto.sdk_config()).await?;
    let out = inventory_cache_invalidate::handle(serde_json::from_str(CACHE_FIXTURE)?, &cache)
        .await
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;

    assert_eq!(
        out,
        CacheInvalidateOutput {
            evicted: 0,
            fenced: 2
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_auth_token_is_a_configuration_error_that_never_shows_the_token() -> Result<()> {
    let moto = MotoServer::shared()?;
    let server = PasswordRedis::start("the-right-one")?;
    let arn = secret_with_token(moto, "wrong-tok-93a7").await?;
    let config = host_config(&server, &arn)?;

    let cache = inventory_cache_invalidate::connect(&config, &moto.sdk_config()).await?;
    let e = inventory_cache_invalidate::handle(serde_json::from_str(CACHE_FIXTURE)?, &cache)
        .await
        .expect_err("bad token");
    // What the runtime sends back for it.
    let e = lambda_runtime::Diagnostic::from(e);

    assert_eq!(
        e.error_type,
        ErrorKind::Misconfigured.name(),
        "{}",
        e.error_message
    );
    assert!(
        !e.error_message.contains("wrong-tok-93a7"),
        "{}",
        e.error_message
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_auth_secret_fails_the_cold_start_as_misconfigured() -> Result<()> {
    let moto = MotoServer::shared()?;
    let server = PasswordRedis::start("unused")?;
    let config = host_config(
        &server,
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf",
    )?;

    let e = inventory_cache_invalidate::connect(&config, &moto.sdk_config())
        .await
        .expect_err("no such secret");

    assert_eq!(e.kind, ErrorKind::Misconfigured, "{}", e.detailed());
    Ok(())
}
