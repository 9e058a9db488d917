//! Where the Redis cache is and how its keys are named, from the environment: either
//! `REDIS_URL`, or `REDIS_HOST`/`REDIS_PORT`/`REDIS_TLS`/`REDIS_AUTH_SECRET_ARN`; plus
//! `CACHE_KEY_PREFIX` and `CACHE_FENCE_TTL_SECS`.

use crate::config::FromEnv;
use crate::config::Vars;
use crate::domain::keys::CacheKeys;
use crate::error::PipelineError;
use crate::redact::{SecretUrl, redact_url};

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisEndpoint {
    /// A `redis://` or `rediss://` URL (local runs and tests). May carry a password.
    Url(SecretUrl),
    /// ElastiCache: host and port, TLS on or off, and the secret holding the AUTH token.
    Host {
        host: String,
        port: u16,
        tls: bool,
        auth_secret_arn: Option<String>,
    },
}

/// The cache's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub endpoint: RedisEndpoint,
    /// Prefix of every key, e.g. `inventory:dev:`.
    pub key_prefix: String,
    /// How long a fence outlives its last raise. It must exceed the longest time a reader
    /// can take between reading the database and populating the cache.
    pub fence_ttl_secs: u64,
}

impl RedisConfig {
    pub const DEFAULT_KEY_PREFIX: &'static str = "inventory:";
    pub const DEFAULT_FENCE_TTL_SECS: u64 = 86_400;
    pub const DEFAULT_PORT: u16 = 6379;

    pub fn keys(&self) -> CacheKeys {
        CacheKeys::new(self.key_prefix.clone())
    }

    /// The secret holding the AUTH token, when there is one.
    pub fn auth_secret_arn(&self) -> Option<&str> {
        match &self.endpoint {
            RedisEndpoint::Host {
                auth_secret_arn, ..
            } => auth_secret_arn.as_deref(),
            RedisEndpoint::Url(_) => None,
        }
    }
}

impl FromEnv for RedisConfig {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        let vars = Vars::new(get);
        let get = |name: &str| vars.optional(name);
        let endpoint = match get("REDIS_URL") {
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => RedisEndpoint::Url(SecretUrl::new(url)),
            Some(url) => {
                return Err(PipelineError::misconfigured(format!(
                    "environment variable REDIS_URL={:?} must start with redis:// or rediss://",
                    redact_url(&url)
                )));
            }
            None => RedisEndpoint::Host {
                host: get("REDIS_HOST").ok_or_else(|| {
                    PipelineError::misconfigured("environment variable REDIS_URL or REDIS_HOST is required but neither is set")
                })?,
                port: vars.parsed_or("REDIS_PORT", Self::DEFAULT_PORT)?,
                tls: vars.parsed_or("REDIS_TLS", true)?,
                auth_secret_arn: get("REDIS_AUTH_SECRET_ARN"),
            },
        };
        let fence_ttl_secs =
            vars.parsed_or("CACHE_FENCE_TTL_SECS", Self::DEFAULT_FENCE_TTL_SECS)?;
        if fence_ttl_secs == 0 {
            return Err(PipelineError::misconfigured(
                "environment variable CACHE_FENCE_TTL_SECS must be at least 1",
            ));
        }
        Ok(Self {
            endpoint,
            key_prefix: get("CACHE_KEY_PREFIX")
                .unwrap_or_else(|| Self::DEFAULT_KEY_PREFIX.to_owned()),
            fence_ttl_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<RedisConfig, PipelineError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RedisConfig::from_lookup(|n| vars.get(n).cloned())
    }

    #[test]
    fn a_url_wins_and_defaults_fill_the_rest() {
        let c = config(&[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_HOST", "ignored"),
        ])
        .expect("valid");
        assert_eq!(
            c.endpoint,
            RedisEndpoint::Url(SecretUrl::new("redis://127.0.0.1:6379"))
        );
        assert_eq!(c.key_prefix, "inventory:");
        assert_eq!(c.fence_ttl_secs, 86_400);
        assert_eq!(c.auth_secret_arn(), None);
    }

    #[test]
    fn elasticache_settings_default_to_tls_on_6379() {
        let c = config(&[
            ("REDIS_HOST", "master.cache.example"),
            (
                "REDIS_AUTH_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:redis",
            ),
            ("CACHE_KEY_PREFIX", "inventory:dev:"),
            ("CACHE_FENCE_TTL_SECS", "600"),
        ])
        .expect("valid");
        assert_eq!(
            c.endpoint,
            RedisEndpoint::Host {
                host: "master.cache.example".into(),
                port: 6379,
                tls: true,
                auth_secret_arn: Some("arn:aws:secretsmanager:us-east-1:1:secret:redis".into()),
            }
        );
        assert_eq!(
            c.auth_secret_arn(),
            Some("arn:aws:secretsmanager:us-east-1:1:secret:redis")
        );
        assert_eq!(c.keys().prefix(), "inventory:dev:");
        assert_eq!(c.fence_ttl_secs, 600);
        let plain = config(&[
            ("REDIS_HOST", "h"),
            ("REDIS_PORT", "7000"),
            ("REDIS_TLS", "false"),
        ])
        .expect("valid");
        assert!(matches!(
            plain.endpoint,
            RedisEndpoint::Host {
                port: 7000,
                tls: false,
                ..
            }
        ));
    }

    #[test]
    fn bad_settings_name_their_variable() {
        let message = |vars: &[(&str, &str)]| {
            let e = config(vars).expect_err("invalid");
            assert_eq!(e.kind, ErrorKind::Misconfigured);
            e.message
        };
        assert!(message(&[]).contains("REDIS_HOST"));
        assert!(message(&[("REDIS_URL", "http://x")]).contains("REDIS_URL"));
        assert!(message(&[("REDIS_HOST", "h"), ("REDIS_PORT", "seventy")]).contains("REDIS_PORT"));
        assert!(message(&[("REDIS_HOST", "h"), ("REDIS_TLS", "yes please")]).contains("REDIS_TLS"));
        assert!(
            message(&[("REDIS_HOST", "h"), ("CACHE_FENCE_TTL_SECS", "0")])
                .contains("CACHE_FENCE_TTL_SECS")
        );
    }

    #[test]
    fn passwords_never_show_in_debug_or_errors() {
        let c =
            config(&[("REDIS_URL", "rediss://:s3cret-token@cache.example:6379")]).expect("valid");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret-token") && shown.contains("rediss://:***@cache.example:6379"),
            "{shown}"
        );
        let e = config(&[("REDIS_URL", "tcp://:s3cret-token@h")]).expect_err("bad scheme");
        assert!(!e.message.contains("s3cret-token"), "{}", e.message);
    }
}
