//! Where the database is: typed configuration from the environment.
//!
//! Either `DATABASE_URL` (local runs and tests), or `DB_HOST`, `DB_PORT`, `DB_NAME` and
//! `DB_SECRET_ARN` (an existing Secrets Manager secret with `username` and `password`).
//! `DB_TLS_CA_FILE` (the RDS CA bundle) turns on `sslmode=verify-full` with that bundle as the
//! only trust root; it is required with `DB_HOST`. `DB_POOL_MAX` sizes the pool (default 2).
//! Neither the password nor a full URL is ever logged or shown by `Debug`. How a pool is built
//! from it is in [`super::connect`].

use crate::config::FromEnv;
use crate::config::Vars;
use crate::error::PipelineError;
use crate::redact::SecretUrl;
use std::path::PathBuf;

/// Default pool size: a Lambda instance handles one invocation at a time.
pub const DEFAULT_POOL_MAX: u32 = 2;

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A full connection URL (`DATABASE_URL`), used as given.
    Url(SecretUrl),
    /// An RDS instance whose credentials are in a Secrets Manager secret.
    Rds {
        host: String,
        port: u16,
        name: String,
        secret_arn: String,
    },
}

/// How the connection is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Whatever the URL's `sslmode` says, and plain TCP when it says nothing (local runs: a
    /// silent `prefer` would turn TLS on against a local server that happens to offer it).
    AsConfigured,
    /// TLS with the server certificate checked against this CA bundle, host name included.
    VerifyFull { ca_file: PathBuf },
}

/// The database configuration of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub target: DatabaseTarget,
    pub tls: TlsMode,
    pub pool_max: u32,
}

impl DatabaseConfig {
    /// The secret to read credentials from, when the target needs one.
    pub fn secret_arn(&self) -> Option<&str> {
        match &self.target {
            DatabaseTarget::Rds { secret_arn, .. } => Some(secret_arn),
            DatabaseTarget::Url(_) => None,
        }
    }
}

impl FromEnv for DatabaseConfig {
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError> {
        let vars = Vars::new(get);
        let get = |name: &str| vars.optional(name);
        let required = |name: &str| vars.required_because(name, "when DATABASE_URL is not set");
        let pool_max = vars.parsed_or("DB_POOL_MAX", DEFAULT_POOL_MAX)?;
        if pool_max == 0 {
            return Err(PipelineError::misconfigured(
                "environment variable DB_POOL_MAX must be at least 1",
            ));
        }
        let tls = match get("DB_TLS_CA_FILE") {
            Some(path) => TlsMode::VerifyFull {
                ca_file: PathBuf::from(path),
            },
            None => TlsMode::AsConfigured,
        };
        let target = match get("DATABASE_URL") {
            Some(url) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(PipelineError::misconfigured(
                        "environment variable DATABASE_URL must start with postgres://",
                    ));
                }
                DatabaseTarget::Url(SecretUrl::new(url))
            }
            None => {
                let target = DatabaseTarget::Rds {
                    host: required("DB_HOST")?,
                    port: vars.parsed_or("DB_PORT", 5432u16)?,
                    name: required("DB_NAME")?,
                    secret_arn: required("DB_SECRET_ARN")?,
                };
                if tls == TlsMode::AsConfigured {
                    return Err(PipelineError::misconfigured(
                        "environment variable DB_TLS_CA_FILE is required with DB_HOST: connections to RDS use verified TLS",
                    ));
                }
                target
            }
        };
        Ok(Self {
            target,
            tls,
            pool_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<DatabaseConfig, PipelineError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DatabaseConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn a_database_url_is_used_as_given_and_never_shown() {
        let c = config(&[("DATABASE_URL", "postgres://app:hunter2@127.0.0.1/inv")]).expect("valid");
        assert_eq!(c.pool_max, DEFAULT_POOL_MAX);
        assert_eq!(c.tls, TlsMode::AsConfigured);
        assert_eq!(c.secret_arn(), None);
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn rds_settings_need_every_variable_and_name_the_missing_one() {
        let full = [
            ("DB_HOST", "db.example.internal"),
            ("DB_PORT", "5433"),
            ("DB_NAME", "inventory"),
            (
                "DB_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:db",
            ),
            ("DB_TLS_CA_FILE", "/opt/rds-ca/global-bundle.pem"),
            ("DB_POOL_MAX", "3"),
        ];
        let c = config(&full).expect("valid");
        assert_eq!(
            c.secret_arn(),
            Some("arn:aws:secretsmanager:us-east-1:1:secret:db")
        );
        assert_eq!(c.pool_max, 3);
        assert!(matches!(&c.target, DatabaseTarget::Rds { port: 5433, .. }));
        assert_eq!(
            c.tls,
            TlsMode::VerifyFull {
                ca_file: "/opt/rds-ca/global-bundle.pem".into()
            }
        );
        for missing in ["DB_HOST", "DB_NAME", "DB_SECRET_ARN", "DB_TLS_CA_FILE"] {
            let vars: Vec<_> = full
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let e = config(&vars).expect_err(missing);
            assert!(e.message.contains(missing), "{missing}: {}", e.message);
        }
    }

    #[test]
    fn bad_numbers_and_urls_are_configuration_errors() {
        let e = config(&[("DATABASE_URL", "postgres://x/y"), ("DB_POOL_MAX", "many")])
            .expect_err("bad");
        assert!(e.message.contains("DB_POOL_MAX"), "{}", e.message);
        let e =
            config(&[("DATABASE_URL", "postgres://x/y"), ("DB_POOL_MAX", "0")]).expect_err("zero");
        assert!(e.message.contains("DB_POOL_MAX"), "{}", e.message);
        let e = config(&[("DATABASE_URL", "mysql://x/y")]).expect_err("scheme");
        assert!(
            e.message.contains("DATABASE_URL") && !e.message.contains("mysql://x/y"),
            "{}",
            e.message
        );
        let e = config(&[]).expect_err("nothing set");
        assert!(e.message.contains("DB_HOST"), "{}", e.message);
    }

    #[test]
    fn an_rds_target_shows_where_it_connects_for_the_logs() {
        let c = config(&[
            ("DB_HOST", "db.internal"),
            ("DB_PORT", "6432"),
            ("DB_NAME", "inventory"),
            (
                "DB_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:db",
            ),
            ("DB_TLS_CA_FILE", "/opt/rds-ca.pem"),
        ])
        .expect("valid");
        assert_eq!(
            c.secret_arn(),
            Some("arn:aws:secretsmanager:eu-west-1:1:secret:db")
        );
        let shown = format!("{:?}", c.target);
        for part in [
            "db.internal",
            "6432",
            "inventory",
            "arn:aws:secretsmanager:eu-west-1:1:secret:db",
        ] {
            assert!(shown.contains(part), "{shown} lacks {part}");
        }
    }

    #[test]
    fn a_postgresql_url_is_accepted_and_a_ca_bundle_turns_on_verified_tls_for_it_too() {
        let c = config(&[
            ("DATABASE_URL", "postgresql://app@db.internal/inv"),
            ("DB_TLS_CA_FILE", "/opt/rds-ca.pem"),
        ])
        .expect("valid");

        assert_eq!(
            c.target,
            DatabaseTarget::Url(SecretUrl::new("postgresql://app@db.internal/inv"))
        );
        assert_eq!(
            c.tls,
            TlsMode::VerifyFull {
                ca_file: "/opt/rds-ca.pem".into()
            }
        );
    }

    #[test]
    fn an_rds_port_must_be_a_port_number_and_defaults_to_5432() {
        let mut vars = vec![
            ("DB_HOST", "db.internal"),
            ("DB_NAME", "inventory"),
            ("DB_SECRET_ARN", "arn:db"),
            ("DB_TLS_CA_FILE", "/opt/rds-ca.pem"),
        ];
        let c = config(&vars).expect("valid");
        assert!(matches!(c.target, DatabaseTarget::Rds { port: 5432, .. }));

        vars.push(("DB_PORT", "70000"));
        let e = config(&vars).expect_err("not a port");
        assert_eq!(e.kind, crate::error::ErrorKind::Misconfigured);
        assert!(e.message.contains("DB_PORT"), "{}", e.message);
    }
}
