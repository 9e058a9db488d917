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

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::config::FromEnv as _;
    use inventory::{ErrorKind, ProductId};
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    fn config(pairs: &[(&str, String)]) -> Config {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        Config::from_lookup(|n| vars.get(n).cloned()).expect("valid configuration")
    }

    fn probe() -> ProductId {
        ProductId::parse("sku-1").expect("valid id")
    }

    #[tokio::test]
    async fn an_unreachable_database_and_cache_do_not_fail_the_cold_start_and_reads_fail_as_transient()
     {
        let (db, db_offered) = test_support::closing_peer();
        let (cache, cache_offered) = test_support::closing_peer();
        let config = config(&[
            (
                "DATABASE_URL",
                format!("postgres://app:hunter2@{db}/inventory"),
            ),
            ("REDIS_URL", format!("redis://{cache}")),
            ("AWS_LAMBDA_FUNCTION_NAME", "product-api-dev".to_owned()),
        ]);

        let app = build(&config).await.expect("the cold start goes on");

        assert!(
            db_offered.load(Ordering::SeqCst) >= 1,
            "the database connection is opened at cold start"
        );
        assert!(
            cache_offered.load(Ordering::SeqCst) >= 1,
            "the cache connection is opened at cold start"
        );
        let e = app
            .reads
            .read_products(&[probe()])
            .await
            .expect_err("no database to read from");
        assert_eq!(e.kind, ErrorKind::DependencyUnavailable, "{e:?}");
        assert!(!e.detailed().contains("hunter2"), "{}", e.detailed());
    }

    #[tokio::test]
    async fn a_cache_that_cannot_be_set_up_is_read_around_and_the_database_answers_reads() {
        let (db, db_offered) = test_support::closing_peer();
        let config = config(&[
            ("DATABASE_URL", format!("postgres://app@{db}/inventory")),
            // Not a port: the cache client cannot be built.
            ("REDIS_URL", "redis://127.0.0.1:99999".to_owned()),
        ]);

        let app = build(&config).await.expect("the cold start goes on");
        let before = db_offered.load(Ordering::SeqCst);
        let e = app
            .reads
            .read_products(&[probe()])
            .await
            .expect_err("the database does not answer either");

        assert_eq!(e.kind, ErrorKind::DependencyUnavailable, "{e:?}");
        assert!(
            db_offered.load(Ordering::SeqCst) > before,
            "the read went to the database"
        );
    }

    #[tokio::test]
    async fn a_database_that_cannot_be_set_up_fails_the_cold_start_without_its_password() {
        let config = config(&[
            (
                "DATABASE_URL",
                "postgres://app:hunter2@127.0.0.1:notaport/inventory".to_owned(),
            ),
            ("REDIS_URL", "redis://127.0.0.1:1".to_owned()),
        ]);

        let e = build(&config).await.expect_err("no pool");

        assert!(
            e.detailed().contains("could not set up the database pool"),
            "{}",
            e.detailed()
        );
        assert!(!e.detailed().contains("hunter2"), "{}", e.detailed());
    }
}
