//! What every request needs, built once per process: the catalog reads on the database pool
//! and the cache client, and the metrics.

use crate::Config;
use crate::handler::NoCache;
use crate::metrics::Metrics;
use inventory::PipelineError;
use inventory::adapters::cache::{RedisProductCache, fetch_auth_token};
use inventory::adapters::postgres::{self, PgProductReader};
use inventory::ports::{CacheRead, ProductReader};
use inventory::read::{ProductReads, ReadPolicy};
use std::sync::Arc;

/// Everything an invocation needs, built once per process.
#[derive(Debug)]
pub struct App {
    pub reads: ProductReads,
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
            reads: ProductReads::new(reader, cache, policy),
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
            Arc::new(NoCache(e.detailed()))
        }
    };
    Ok(App::new(
        Arc::new(PgProductReader::new(db)),
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
