//! The product cache on Redis, and the scheme that keeps it never staler than the database
//! (SPEC invariant 4).
//!
//! Per product there are two keys (see [`CacheKeys`]):
//! - the **entry**, `"<version>|<json>"` with a TTL: the product's projected state as the read
//!   path last loaded it;
//! - the **fence**, an integer with a TTL of `CACHE_FENCE_TTL_SECS`: the lowest version that
//!   may still be cached.
//!
//! [`RedisProductCache::invalidate`] (the `cache-invalidate` step) raises each fence to the
//! committed version (never lowers it) and deletes older entries, all in one script call.
//! [`RedisProductCache::populate`] (the read path, after a miss) stores an entry only if its
//! version is at or above the fence and newer than what is cached, in one script call. Since
//! both are atomic in Redis, a reader that loaded version `v` before version `v+1` committed
//! can never put `v` back after the invalidation for `v+1` ran.
//!
//! Versions are compared as Lua numbers, exact up to 2^53; the store's sequence numbers stay
//! far below that.

mod config;
mod errors;
mod read;

use crate::redact::{ExposeSecret as _, SecretString};
pub use config::{RedisConfig, RedisEndpoint};
pub use errors::kind_of;
pub use read::CACHE_CALL_BUDGET;

use crate::domain::ids::ProductId;
use crate::domain::keys::CacheKeys;
use crate::error::{ErrorKind, PipelineError};
use crate::ports::CacheInvalidator;
use crate::steps::payloads::{CacheInvalidateOutput, ChangedProduct};
use async_trait::async_trait;
use errors::from_redis;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Script};
use std::sync::LazyLock;
use std::time::Duration;

static INVALIDATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("invalidate.lua")));
static POPULATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("populate.lua")));

/// Largest version the scripts compare exactly (Lua numbers are doubles).
pub const MAX_VERSION: i64 = 1 << 53;
/// The version of a cached "not in the database" answer. Store versions start at 1, so the
/// first invalidation of a new product evicts it.
pub const ABSENT_VERSION: i64 = 0;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A cached product: the version it was loaded at and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub version: i64,
    pub json: String,
}

impl CacheEntry {
    /// Parses `"<version>|<json>"`; `None` for anything else.
    pub fn parse(stored: &str) -> Option<Self> {
        let (version, json) = stored.split_once('|')?;
        Some(Self {
            version: version.parse().ok()?,
            json: json.to_owned(),
        })
    }

    /// Whether this entry caches "the product does not exist".
    pub fn is_absent(&self) -> bool {
        self.version == ABSENT_VERSION
    }
}

/// What [`RedisProductCache::populate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopulateOutcome {
    /// The entry was stored.
    Stored,
    /// Refused: an invalidation for a newer version already ran; the fence is at `fence`.
    Fenced { fence: i64 },
    /// Not needed: the cache already holds version `cached`, at least as new.
    AlreadyCurrent { cached: i64 },
}

/// [`CacheInvalidator`] on Redis, plus the read path's side of the scheme. Cheap to clone; build
/// it once per process and reuse it across invocations.
#[derive(Clone)]
pub struct RedisProductCache {
    conn: ConnectionManager,
    keys: CacheKeys,
    fence_ttl_secs: u64,
}

impl std::fmt::Debug for RedisProductCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisProductCache")
            .field("keys", &self.keys)
            .field("fence_ttl_secs", &self.fence_ttl_secs)
            .finish_non_exhaustive()
    }
}

impl RedisProductCache {
    /// Builds the client from configuration. The connection opens on first use (and reopens
    /// after a failure), so a cold start succeeds even while Redis is unreachable and the
    /// invocation then fails as `DependencyUnavailable`. Must run inside a Tokio runtime. A
    /// TLS endpoint needs the process's crypto provider installed first
    /// ([`crate::adapters::tls::install_crypto_provider`], at the top of `main`).
    pub fn connect(
        config: &RedisConfig,
        token: Option<&SecretString>,
    ) -> Result<Self, PipelineError> {
        let client = connection_info(&config.endpoint, token)
            .and_then(redis::Client::open)
            .map_err(|e| {
                PipelineError::with_source(
                    ErrorKind::Misconfigured,
                    "the Redis settings are not valid",
                    e,
                )
            })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| from_redis("could not set up the Redis connection", e))?;
        Ok(Self::with_connection(
            conn,
            config.keys(),
            config.fence_ttl_secs,
        ))
    }

    /// Wraps an existing connection (tests, or a process sharing one connection).
    pub fn with_connection(conn: ConnectionManager, keys: CacheKeys, fence_ttl_secs: u64) -> Self {
        Self {
            conn,
            keys,
            fence_ttl_secs,
        }
    }

    pub fn keys(&self) -> &CacheKeys {
        &self.keys
    }

    /// The cached entries of `products`, in the same order (`None`: not cached), in one
    /// round trip. An entry that does not parse counts as not cached.
    #[tracing::instrument(skip_all, fields(products = products.len()))]
    pub async fn get_many(
        &self,
        products: &[ProductId],
    ) -> Result<Vec<Option<CacheEntry>>, PipelineError> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = products.iter().map(|p| self.keys.entry(p)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| from_redis("could not read the cache", e))?;
        Ok(values
            .into_iter()
            .zip(products)
            .map(|(value, product)| {
                let entry = value.as_deref().and_then(CacheEntry::parse);
                if value.is_some() && entry.is_none() {
                    tracing::warn!(product_id = %product, "unreadable cache entry treated as a miss");
                }
                entry
            })
            .collect())
    }

    /// Caches `json` as `product`'s state at `version` for `ttl`, unless an invalidation for
    /// a newer version already ran or the cache already holds this version or a newer one.
    /// One atomic script call.
    #[tracing::instrument(skip(self, json), fields(product_id = %product))]
    pub async fn populate(
        &self,
        product: &ProductId,
        version: i64,
        json: &str,
        ttl: Duration,
    ) -> Result<PopulateOutcome, PipelineError> {
        check_version(version)?;
        let (code, other): (i64, i64) = POPULATE
            .key(self.keys.entry(product))
            .key(self.keys.fence(product))
            .arg(version)
            .arg(json)
            .arg(ttl.as_secs().max(1))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| from_redis("could not populate the cache", e))?;
        let outcome = match code {
            1 => PopulateOutcome::Stored,
            0 => PopulateOutcome::Fenced { fence: other },
            2 => PopulateOutcome::AlreadyCurrent { cached: other },
            _ => {
                return Err(PipelineError::new(
                    ErrorKind::Internal,
                    format!("populate script answered {code}"),
                ));
            }
        };
        tracing::debug!(?outcome, "cache populate");
        Ok(outcome)
    }
}

#[async_trait]
impl CacheInvalidator for RedisProductCache {
    #[tracing::instrument(skip_all, fields(products = products.len()))]
    async fn invalidate(
        &self,
        products: &[ChangedProduct],
    ) -> Result<CacheInvalidateOutput, PipelineError> {
        if products.is_empty() {
            return Ok(CacheInvalidateOutput::default());
        }
        let mut call = INVALIDATE.prepare_invoke();
        call.arg(self.fence_ttl_secs);
        for p in products {
            check_version(p.version)?;
            call.key(self.keys.entry(&p.product_id))
                .key(self.keys.fence(&p.product_id))
                .arg(p.version);
        }
        let (evicted, fenced): (u64, u64) = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| from_redis("could not invalidate the cache", e))?;
        let (evicted, fenced) = (
            usize::try_from(evicted).unwrap_or(usize::MAX),
            usize::try_from(fenced).unwrap_or(usize::MAX),
        );
        tracing::info!(evicted, fenced, "cache invalidated");
        Ok(CacheInvalidateOutput { evicted, fenced })
    }
}

fn check_version(version: i64) -> Result<(), PipelineError> {
    if (0..=MAX_VERSION).contains(&version) {
        Ok(())
    } else {
        Err(PipelineError::new(
            ErrorKind::Internal,
            format!("version {version} is outside 0..=2^53"),
        ))
    }
}

/// Where and how to connect. The token, when given, replaces any password in a URL.
fn connection_info(
    endpoint: &RedisEndpoint,
    token: Option<&SecretString>,
) -> redis::RedisResult<ConnectionInfo> {
    let info = match endpoint {
        RedisEndpoint::Url(url) => url.expose_secret().into_connection_info()?,
        RedisEndpoint::Host {
            host,
            port,
            tls: true,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        }
        .into_connection_info()?,
        RedisEndpoint::Host {
            host,
            port,
            tls: false,
            ..
        } => ConnectionAddr::Tcp(host.clone(), *port).into_connection_info()?,
    };
    Ok(match token {
        Some(token) => {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(token.expose_secret());
            info.set_redis_settings(settings)
        }
        None => info,
    })
}

/// Reads the AUTH token from `REDIS_AUTH_SECRET_ARN`'s secret (field `auth_token`), when
/// one is configured. Call once at cold start.
#[cfg(feature = "secrets")]
pub async fn fetch_auth_token(
    client: &aws_sdk_secretsmanager::Client,
    config: &RedisConfig,
) -> Result<Option<SecretString>, PipelineError> {
    let Some(arn) = config.auth_secret_arn() else {
        return Ok(None);
    };
    let fields = crate::adapters::secrets::fetch(client, arn).await?;
    Ok(Some(fields.field(arn, "auth_token")?.into()))
}

#[cfg(test)]
mod tests;
