//! How the database is reached: a small connection pool built once per cold start and reused
//! by every invocation, with the credentials from the database secret when the configuration
//! names one, and TLS as the configuration says.

use super::config::{DatabaseConfig, DatabaseTarget, TlsMode};
use super::error::db_error;
use crate::config::DbCredentials;
use crate::error::{ErrorKind, PipelineError};
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
        // The pool is lazy: setting it up parses the settings and opens no connection, so a
        // failure here is the settings' fault (a URL the driver cannot parse), which no retry
        // mends.
        let e = PipelineError {
            kind: ErrorKind::Misconfigured,
            ..db_error("could not set up the database pool", e)
        };
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

    fn url_config(url: &str) -> DatabaseConfig {
        DatabaseConfig {
            target: DatabaseTarget::Url(crate::redact::SecretUrl::new(url)),
            tls: TlsMode::AsConfigured,
            pool_max: 3,
        }
    }

    fn rds_config() -> DatabaseConfig {
        DatabaseConfig {
            target: DatabaseTarget::Rds {
                host: "db.internal".into(),
                port: 6432,
                name: "inventory".into(),
                secret_arn: "arn:aws:secretsmanager:eu-west-1:1:secret:db".into(),
            },
            tls: TlsMode::VerifyFull {
                ca_file: "/opt/rds-ca/global-bundle.pem".into(),
            },
            pool_max: 2,
        }
    }

    fn credentials() -> DbCredentials {
        DbCredentials {
            username: "app".into(),
            password: "hunter2".into(),
        }
    }

    /// The driver options a lazily built pool will connect with (nothing is connected).
    async fn driver_options(
        config: &DatabaseConfig,
        credentials: Option<DbCredentials>,
    ) -> sea_orm::sqlx::postgres::PgConnectOptions {
        let db = connect(config, credentials).await.expect("a lazy pool");
        (*db.get_postgres_connection_pool().connect_options()).clone()
    }

    #[test]
    fn the_pool_is_small_lazy_quiet_and_pings_idle_connections() {
        let opts =
            connect_options(&url_config("postgres://u@127.0.0.1/inv"), None).expect("options");

        assert_eq!(opts.get_url(), "postgres://u@127.0.0.1/inv");
        assert_eq!(opts.get_max_connections(), Some(3));
        assert_eq!(opts.get_min_connections(), Some(0));
        assert_eq!(opts.get_connect_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(opts.get_acquire_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(
            opts.get_test_before_acquire_if_idle_for(),
            Some(Duration::from_secs(30))
        );
        assert!(
            opts.get_connect_lazy(),
            "a cold start never waits for the database"
        );
        assert!(!opts.get_sqlx_logging(), "statements are never logged");
    }

    #[tokio::test]
    async fn an_rds_pool_connects_with_the_secrets_credentials_and_verified_tls() {
        let opts = driver_options(&rds_config(), Some(credentials())).await;

        assert_eq!(
            (opts.get_host(), opts.get_port(), opts.get_database()),
            ("db.internal", 6432, Some("inventory"))
        );
        assert_eq!(opts.get_username(), "app");
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::VerifyFull));
        assert_eq!(opts.get_application_name(), Some("inventory-pipeline"));
        let shown = format!("{opts:?}");
        assert!(
            shown.contains("/opt/rds-ca/global-bundle.pem"),
            "the CA bundle is the trust root: {shown}"
        );
        assert!(
            shown.contains("\"hunter2\""),
            "the secret's password is used"
        );
    }

    #[tokio::test]
    async fn a_local_url_keeps_its_user_and_connects_without_tls_unless_it_asks() {
        let plain = driver_options(&url_config("postgres://dev@127.0.0.1:5433/inv"), None).await;
        let asked = driver_options(
            &url_config("postgres://dev@127.0.0.1:5433/inv?sslmode=require"),
            None,
        )
        .await;

        assert_eq!((plain.get_username(), plain.get_port()), ("dev", 5433));
        assert!(matches!(plain.get_ssl_mode(), PgSslMode::Disable));
        assert!(matches!(asked.get_ssl_mode(), PgSslMode::Require));
    }

    #[tokio::test]
    async fn a_url_the_driver_rejects_is_reported_without_its_password() {
        let e = connect(&url_config("postgres://app:hunter2@db:notaport/inv"), None)
            .await
            .expect_err("unparsable");
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(
            e.message.starts_with("could not set up the database pool"),
            "{}",
            e.message
        );
        assert!(
            !e.message.contains("hunter2") && e.message.contains("app:***@db"),
            "{}",
            e.message
        );

        let e = connect(
            &url_config("postgres://app:hunter2@db/inv?sslmode=sometimes"),
            None,
        )
        .await
        .expect_err("bad sslmode");
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[tokio::test]
    async fn an_rds_address_the_driver_rejects_is_reported_as_the_driver_said() {
        let mut config = rds_config();
        config.target = DatabaseTarget::Rds {
            host: "db internal".into(),
            port: 6432,
            name: "inventory".into(),
            secret_arn: "arn:db".into(),
        };

        let e = connect(&config, Some(credentials()))
            .await
            .expect_err("not a host name");

        let shown = e.detailed();
        assert!(
            shown.starts_with("could not set up the database pool: ")
                && shown.contains("postgres://db internal:6432/inventory"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn an_rds_target_without_credentials_is_refused_before_connecting() {
        let e = connect(&rds_config(), None)
            .await
            .expect_err("no credentials");

        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert!(e.message.contains("DB_SECRET_ARN"), "{}", e.message);
    }

    #[cfg(feature = "secrets")]
    mod secret {
        use super::*;
        use aws_sdk_secretsmanager::config::{
            BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
        };
        use aws_smithy_runtime_api::client::http::{
            HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
        };
        use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;
        use std::sync::{Arc, Mutex};

        /// Secrets Manager answering every request with `body`, keeping the request bodies.
        #[derive(Debug, Clone)]
        struct Canned {
            body: &'static str,
            asked: Arc<Mutex<Vec<String>>>,
        }

        impl HttpConnector for Canned {
            fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
                let asked = String::from_utf8_lossy(request.body().bytes().unwrap_or_default());
                self.asked
                    .lock()
                    .expect("not poisoned")
                    .push(asked.into_owned());
                let status = StatusCode::try_from(200u16).expect("a status");
                HttpConnectorFuture::ready(Ok(Response::new(status, SdkBody::from(self.body))))
            }
        }

        fn secrets_manager(canned: &Canned) -> aws_sdk_secretsmanager::Client {
            let canned = canned.clone();
            let conf = aws_sdk_secretsmanager::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("eu-west-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .http_client(http_client_fn(move |_, _| {
                    SharedHttpConnector::new(canned.clone())
                }))
                .build();
            aws_sdk_secretsmanager::Client::from_conf(conf)
        }

        fn answering(secret: &'static str) -> Canned {
            Canned {
                body: secret,
                asked: Arc::default(),
            }
        }

        #[tokio::test]
        async fn the_credentials_are_the_secrets_username_and_password() {
            let sm = answering(
                r#"{"ARN":"arn:aws:secretsmanager:eu-west-1:1:secret:db","Name":"db","SecretString":"{\"username\":\"app\",\"password\":\"hunter2\",\"engine\":\"postgres\"}"}"#,
            );

            let c = credentials_from_secret(
                &secrets_manager(&sm),
                "arn:aws:secretsmanager:eu-west-1:1:secret:db",
            )
            .await
            .expect("credentials");

            assert_eq!(c.username, "app");
            assert_eq!(c.password.expose_secret(), "hunter2");
            let asked = sm.asked.lock().expect("not poisoned").clone();
            assert_eq!(asked.len(), 1);
            assert!(
                asked[0].contains(r#""SecretId":"arn:aws:secretsmanager:eu-west-1:1:secret:db""#),
                "{}",
                asked[0]
            );
        }

        #[tokio::test]
        async fn a_secret_without_a_password_is_a_configuration_error_naming_the_field() {
            let sm = answering(r#"{"SecretString":"{\"username\":\"app\"}"}"#);

            let e = credentials_from_secret(&secrets_manager(&sm), "arn:db")
                .await
                .expect_err("no password");

            assert_eq!(e.kind, ErrorKind::Misconfigured);
            assert!(
                e.message.contains("arn:db") && e.message.contains("\"password\""),
                "{}",
                e.message
            );
        }

        #[tokio::test]
        async fn a_url_target_connects_without_reading_any_secret() {
            let sdk = aws_config::SdkConfig::builder().build();

            let db = connect_from_config(&url_config("postgres://dev@127.0.0.1/inv"), &sdk)
                .await
                .expect("a lazy pool");

            let opts = db.get_postgres_connection_pool().connect_options();
            assert_eq!(opts.get_username(), "dev");
        }

        #[tokio::test]
        async fn an_rds_target_reads_its_secret_before_connecting() {
            let sm =
                answering(r#"{"SecretString":"{\"username\":\"rds-app\",\"password\":\"pw\"}"}"#);
            let canned = sm.clone();
            let sdk = aws_config::SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("eu-west-1"))
                .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                    "test", "test", None, None, "test",
                )))
                .http_client(http_client_fn(move |_, _| {
                    SharedHttpConnector::new(canned.clone())
                }))
                .build();

            let db = connect_from_config(&rds_config(), &sdk)
                .await
                .expect("a lazy pool");

            let opts = db.get_postgres_connection_pool().connect_options();
            assert_eq!(opts.get_username(), "rds-app");
            assert_eq!(sm.asked.lock().expect("not poisoned").len(), 1);
        }
    }
}
