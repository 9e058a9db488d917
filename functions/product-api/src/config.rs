//! What `product-api` reads from its environment at cold start.

use inventory::PipelineError;
use inventory::adapters::cache::RedisConfig;
use inventory::adapters::postgres::DatabaseConfig;
use inventory::config::FromEnv;
use inventory::config::Vars;

/// What the function reads from its environment at cold start: the database (`DATABASE_URL`,
/// or `DB_HOST`/`DB_PORT`/`DB_NAME`/`DB_SECRET_ARN`/`DB_TLS_CA_FILE`, `DB_POOL_MAX`) and the
/// cache (`REDIS_URL`, or `REDIS_HOST`/`REDIS_PORT`/`REDIS_TLS`/`REDIS_AUTH_SECRET_ARN`;
/// `CACHE_KEY_PREFIX`, `CACHE_FENCE_TTL_SECS`). Lambda sets `AWS_LAMBDA_FUNCTION_NAME`.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    /// The metrics' `FunctionName` dimension.
    pub function_name: String,
}

impl FromEnv for Config {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        Ok(Self {
            database: DatabaseConfig::from_lookup(&get)?,
            redis: RedisConfig::from_lookup(&get)?,
            function_name: Vars::new(&get)
                .optional("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| "product-api".to_owned()),
        })
    }
}
