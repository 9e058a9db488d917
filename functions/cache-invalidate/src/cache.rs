//! The Redis client the function fences and evicts through, set up once per process.

use crate::Config;
use aws_config::SdkConfig;
use inventory::PipelineError;
use inventory::adapters::cache::{RedisProductCache, fetch_auth_token};

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
