//! What `cache-invalidate` reads from its environment at cold start.

use inventory::PipelineError;
use inventory::adapters::cache::RedisConfig;
use inventory::config::FromEnv;

/// What `cache-invalidate` reads from the environment: `REDIS_URL`, or `REDIS_HOST`,
/// `REDIS_PORT`, `REDIS_TLS`, `REDIS_AUTH_SECRET_ARN`; `CACHE_KEY_PREFIX`, `CACHE_FENCE_TTL_SECS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub redis: RedisConfig,
}

impl FromEnv for Config {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        Ok(Self {
            redis: RedisConfig::from_lookup(get)?,
        })
    }
}
