//! How the database is reached: a small connection pool built once per cold start and reused
//! by every invocation, with the credentials from the database secret when the configuration
//! names one, and TLS as the configuration says.

use super::config::{DatabaseConfig, DatabaseTarget, TlsMode};
use super::error::db_error;
use crate::config::DbCredentials;
use crate::error::PipelineError;
use crate::redact::{ExposeSecret as _, without_url_password};
use sea_orm::sqlx::postgres::PgSslMode;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use std::time::Duration;

/// Reads `username` and `password` from the database secret.
#[cfg(feature = "secrets")]
pub async fn credentials_from_secret(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<DbCredentials, PipelineError> {
    let fields = crate::adapters::secrets::fetch(client, arn).await?;
    Ok(DbCredentials {
        username: fields.field(arn, "username")?.to_owned(),
        password: fields.field(arn, "password")?.into(),
    })
}

/// The pool for `config`, reading the credentials from the database secret (with the
/// caller's AWS configuration, loaded once per process) when the configuration names one.
/// What every function's cold start calls.
#[cfg(feature = "secrets")]
pub async fn connect_from_config(
    config: &DatabaseConfig,
    aws: &aws_config::SdkConfig,
) -> Result<DatabaseConnection, PipelineError> {
    let credentials = match config.secret_arn() {
        Some(arn) => {
            let client = aws_sdk_secretsmanager::Client::new(aws);
            Some(credentials_from_secret(&client, arn).await?)
        }
        None => None,
    };
    connect(config, credentials).await
}

/// The pool options for `config`: small, lazy (a cold start never fails because the database
/// is briefly unreachable; the first query reports it as a transient error instead), idle
/// connections pinged before reuse (a frozen Lambda may find them dead), no statement logs.
pub fn connect_options(
    config: &DatabaseConfig,
    credentials: Option<DbCredentials>,
) -> Result<ConnectOptions, PipelineError> {
    let url = match &config.target {
        DatabaseTarget::Url(url) => url.expose_secret().to_owned(),
        DatabaseTarget::Rds {
            host, port, name, ..
        } => {
            if credentials.is_none() {
                return Err(PipelineError::misconfigured(
                    "database credentials from DB_SECRET_ARN are needed to connect to DB_HOST",
                ));
            }
            format!("postgres://{host}:{port}/{name}")
        }
    };
    let ssl_mode = ssl_mode(&config.tls, &url);
    let ca_file = match &config.tls {
        TlsMode::VerifyFull { ca_file } => Some(ca_file.clone()),
        TlsMode::AsConfigured => None,
    };
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(config.pool_max)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .connect_lazy(true)
        .sqlx_logging(false)
        .set_application_name("inventory-pipeline")
        .map_sqlx_postgres_opts(move |mut o| {
            if let Some(c) = &credentials {
                o = o.username(&c.username).password(c.password.expose_secret());
            }
            if let Some(mode) = ssl_mode {
                o = o.ssl_mode(mode);
            }
            if let Some(ca_file) = &ca_file {
                o = o.ssl_root_cert(ca_file);
            }
            o
        });
    Ok(opts)
}

/// The TLS mode to force, if any: verify-full with a CA bundle; plain TCP for a URL that
/// names no `sslmode`; otherwise what the URL says.
fn ssl_mode(tls: &TlsMode, url: &str) -> Option<PgSslMode> {
    match tls {
        TlsMode::VerifyFull { .. } => Some(PgSslMode::VerifyFull),
        TlsMode::AsConfigured if !url.contains("sslmode=") => Some(PgSslMode::Disable),
        TlsMode::AsConfigured => None,
    }
}

/// Builds the pool. Call once per cold start and keep the connection for every invocation.
#[tracing::instrument(skip_all, fields(pool_max = config.pool_max))]
pub async fn connect(
    config: &DatabaseConfig,
    credentials: Option<DbCredentials>,
) -> Result<DatabaseConnection, PipelineError> {
    let opts = connect_options(config, credentials)?;
    match &config.target {
        DatabaseTarget::Url(_) => {
            tracing::info!(tls = ?config.tls, "database pool from DATABASE_URL")
        }
        DatabaseTarget::Rds {
            host, port, name, ..
        } => {
            tracing::info!(db_host = %host, db_port = port, db_name = %name, tls = ?config.tls, "database pool")
        }
    }
    Database::connect(opts).await.map_err(|e| {
        let e = db_error("could not set up the database pool", e);
        match &config.target {
            // The driver quotes a URL it cannot parse, password included.
            DatabaseTarget::Url(url) => PipelineError::new(
                e.kind,
                without_url_password(&e.detailed(), url.expose_secret()),
            ),
            DatabaseTarget::Rds { .. } => e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_verified_with_a_ca_bundle_and_off_for_a_plain_local_url() {
        let ca = TlsMode::VerifyFull {
            ca_file: "/ca.pem".into(),
        };
        assert!(matches!(
            ssl_mode(&ca, "postgres://h:5432/n"),
            Some(PgSslMode::VerifyFull)
        ));
        assert!(matches!(
            ssl_mode(&ca, "postgres://h/n?sslmode=disable"),
            Some(PgSslMode::VerifyFull)
        ));
        assert!(matches!(
            ssl_mode(&TlsMode::AsConfigured, "postgres://127.0.0.1/n"),
            Some(PgSslMode::Disable)
        ));
        assert!(ssl_mode(&TlsMode::AsConfigured, "postgres://h/n?sslmode=require").is_none());
    }

    #[test]
    fn rds_needs_credentials_and_credentials_never_show_the_password() {
        let c = DatabaseConfig {
            target: DatabaseTarget::Rds {
                host: "h".into(),
                port: 5432,
                name: "n".into(),
                secret_arn: "a".into(),
            },
            tls: TlsMode::VerifyFull {
                ca_file: "/ca.pem".into(),
            },
            pool_max: 2,
        };
        assert!(connect_options(&c, None).is_err());
        let creds = DbCredentials {
            username: "app".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
        let opts = connect_options(&c, Some(creds)).expect("options");
        assert_eq!(opts.get_url(), "postgres://h:5432/n");
        assert_eq!(opts.get_max_connections(), Some(2));
    }
}
