//! The `cache-invalidate` task: after persist committed, raises the changed products' cache
//! fences and evicts their older entries in one Redis round trip, so no read is served, or
//! cached, older than the database (SPEC invariant 4).

use aws_config::SdkConfig;
use inventory::adapters::cache::{RedisConfig, RedisProductCache, fetch_auth_token};
use inventory::ports::ProductCache;
use inventory::{CacheInvalidateInput, CacheInvalidateOutput, PipelineError, usecase};
use lambda_runtime::Diagnostic;

/// What `cache-invalidate` reads from the environment: `REDIS_URL`, or `REDIS_HOST`,
/// `REDIS_PORT`, `REDIS_TLS`, `REDIS_AUTH_SECRET_ARN`; `CACHE_KEY_PREFIX`, `CACHE_FENCE_TTL_SECS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub redis: RedisConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, PipelineError> {
        Self::from_lookup(inventory::config::process_env)
    }

    /// Reads variables through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        Ok(Self {
            redis: RedisConfig::from_lookup(get)?,
        })
    }
}

/// The cache client: reads the AUTH token from Secrets Manager when one is configured, then
/// sets up the (lazily connecting) Redis connection manager. Call once per process.
pub async fn connect(config: &Config, sdk: &SdkConfig) -> Result<RedisProductCache, PipelineError> {
    let token = match config.redis.auth_secret_arn() {
        Some(_) => {
            fetch_auth_token(&aws_sdk_secretsmanager::Client::new(sdk), &config.redis).await?
        }
        None => None,
    };
    RedisProductCache::connect(&config.redis, token.as_ref())
}

/// One invocation: the products persist changed in, how many entries were evicted and
/// fences raised out. A payload that is not that list fails as `Inventory.InvalidPayload`.
pub async fn handle(
    payload: serde_json::Value,
    cache: &dyn ProductCache,
) -> Result<CacheInvalidateOutput, Diagnostic> {
    let input: CacheInvalidateInput = serde_json::from_value(payload).map_err(|e| {
        PipelineError::invalid_payload(format!(
            "the cache-invalidate input is not a product list: {e}"
        ))
    })?;
    Ok(usecase::invalidate_cache(&input, cache).await?)
}

#[cfg(test)]
mod tests;
