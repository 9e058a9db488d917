//! The `product-api` function: storefront reads of the product catalog over HTTP (API
//! Gateway HTTP API, or any Lambda HTTP event). The cache-aside rules live in
//! [`inventory::catalog_read`]; this crate maps requests onto them and results onto HTTP.
//!
//! - `GET /products/{product_id}`: the product's projected state.
//! - `GET /products?ids=a,b,c`: up to 100 products, one cache round trip.
//! - `GET /products/{product_id}/history?limit=N&before=SEQ`: recent events, newest first.
//! - `GET /openapi.json`: the OpenAPI 3.1 document of these routes ([`openapi`]), generated
//!   from the handlers and types; committed as `contract/product-api.openapi.json`.

pub mod metrics;
pub mod openapi;
pub mod respond;
pub mod routes;
mod serve;

#[cfg(test)]
mod tests;

pub use serve::{X_CACHE, handle};

use inventory::PipelineError;
use inventory::adapters::cache::{RedisConfig, RedisProductCache, fetch_auth_token};
use inventory::adapters::postgres::{self, DatabaseConfig, PgCatalogReader};
use inventory::catalog_read::{CatalogReads, ReadPolicy};
use inventory::config::Vars;
use inventory::ports::{CacheRead, ProductReader};
use metrics::Metrics;
use std::sync::Arc;

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

impl Config {
    pub fn from_env() -> Result<Self, PipelineError> {
        Self::from_lookup(inventory::config::process_env)
    }

    /// Reads variables through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        Ok(Self {
            database: DatabaseConfig::from_lookup(&get)?,
            redis: RedisConfig::from_lookup(&get)?,
            function_name: Vars::new(&get)
                .optional("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| "product-api".to_owned()),
        })
    }
}

/// Everything an invocation needs, built once per process.
#[derive(Debug)]
pub struct App {
    pub reads: CatalogReads,
    pub metrics: Metrics,
}

impl App {
    pub fn new(
        reader: Arc<dyn ProductReader>,
        cache: Arc<dyn CacheRead>,
        policy: ReadPolicy,
        metrics: Metrics,
    ) -> Self {
        Self {
            reads: CatalogReads::new(reader, cache, policy),
            metrics,
        }
    }
}

/// The database pool and the cache client, with secrets read once. Both connect lazily; the
/// connections are then opened here, so the first request does not pay for them. A cache
/// that cannot be set up is logged and read around (reads never fail because of the cache);
/// a database that cannot be set up fails the cold start.
pub async fn build(config: &Config) -> Result<App, PipelineError> {
    let needs_sdk =
        config.database.secret_arn().is_some() || config.redis.auth_secret_arn().is_some();
    let sdk = if needs_sdk {
        Some(inventory::adapters::aws::sdk_config().await)
    } else {
        None
    };
    let secrets = sdk.as_ref().map(aws_sdk_secretsmanager::Client::new);
    let credentials = match (config.database.secret_arn(), &secrets) {
        (Some(arn), Some(client)) => Some(postgres::credentials_from_secret(client, arn).await?),
        _ => None,
    };
    let db = postgres::connect(&config.database, credentials).await?;
    if let Err(e) = db.ping().await {
        tracing::warn!(error = %e, "database not reachable at cold start; the first reads will retry");
    }
    let cache: Arc<dyn CacheRead> = match connect_cache(config, secrets.as_ref()).await {
        Ok(cache) => {
            if let Err(e) = warm(&cache).await {
                tracing::warn!(error = %e.detailed(), "cache not reachable at cold start; reads go to the database until it is");
            }
            Arc::new(cache)
        }
        Err(e) => {
            tracing::error!(error_type = e.kind.name(), error = %e.detailed(), "no cache: every read goes to the database");
            Arc::new(serve::NoCache(e.detailed()))
        }
    };
    Ok(App::new(
        Arc::new(PgCatalogReader::new(db)),
        cache,
        ReadPolicy::default(),
        Metrics::new(config.function_name.clone(), Metrics::DEFAULT_EVERY),
    ))
}

async fn connect_cache(
    config: &Config,
    secrets: Option<&aws_sdk_secretsmanager::Client>,
) -> Result<RedisProductCache, PipelineError> {
    let token = match secrets {
        Some(client) => fetch_auth_token(client, &config.redis).await?,
        None => None,
    };
    RedisProductCache::connect(&config.redis, token.as_ref())
}

/// Opens the cache connection (the TLS handshake and AUTH) with one cheap read.
async fn warm(cache: &RedisProductCache) -> Result<(), PipelineError> {
    let probe = inventory::ProductId::parse("cold-start-probe")
        .map_err(|r| PipelineError::new(inventory::ErrorKind::Internal, r.to_string()))?;
    cache.get_many(&[probe]).await.map(|_| ())
}
