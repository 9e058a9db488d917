//! No secret values in logs: the functions' handlers run with a database password and a
//! Redis AUTH token configured, against services that refuse or are not there, while every
//! log line (down to `trace`, dependencies included) is captured; neither secret may appear
//! in the logs, in the errors the handlers return, or in the configuration's `Debug`.

use crate::quarantine::{mixed_chunk, soon_after};
use anyhow::Result;
use inventory::adapters::cache::{RedisConfig, RedisProductCache};
use inventory::adapters::postgres::{
    DatabaseConfig, DatabaseTarget, PgQuarantine, TlsMode, connect,
};
use inventory::config::DbCredentials;
use inventory::config::FromEnv;
use inventory::ports::CacheInvalidator;
use inventory::redact::{ExposeSecret as _, SecretString};
use inventory::{CacheInvalidateInput, PipelineError, ProductId};
use std::collections::HashMap;
use test_support::logs::CapturedLogs;

/// Installs a JSON subscriber like the functions' (`init_tracing`), at `trace`, writing to
/// `logs`, on this thread until the guard drops. `#[tokio::test]` runs every task on this
/// thread.
fn install(logs: &CapturedLogs) -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_current_span(true)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    tracing::subscriber::set_default(subscriber)
}

/// A secret no code could print by accident (unique per run, built at run time).
fn secret(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    format!("{kind}Zq8{nanos}xV")
}

fn lookup(vars: HashMap<&'static str, String>) -> impl Fn(&str) -> Option<String> {
    move |name| vars.get(name).cloned()
}

/// The error as the runtime reports it (the `Diagnostic` logs it too) and as people see it.
fn report(e: PipelineError) -> String {
    let shown = format!("{e} | {e:?} | {}", e.detailed());
    let diagnostic: lambda_runtime::Diagnostic = e.into();
    format!("{shown} | {}", diagnostic.error_message)
}

fn assert_hidden(secret: &str, logs: &str, shown: &[String]) {
    assert!(
        logs.contains("\"level\""),
        "the capture saw log lines: {logs:.300}"
    );
    assert!(!logs.contains(secret), "the logs hold the secret:\n{logs}");
    for s in shown {
        assert!(
            !s.contains(secret),
            "an error or Debug shows the secret: {s}"
        );
    }
}

#[tokio::test]
async fn a_database_password_never_reaches_the_logs_or_the_errors() -> Result<()> {
    let password = secret("db");
    let logs = CapturedLogs::default();
    let _guard = install(&logs);
    let port = test_support::free_port();
    let mut shown = Vec::new();

    // DATABASE_URL with a password, a server that is not there: validate's quarantine fails.
    let config = DatabaseConfig::from_lookup(lookup(HashMap::from([(
        "DATABASE_URL",
        format!("postgres://inventory_app:{password}@127.0.0.1:{port}/inventory"),
    )])))?;
    shown.push(format!("{config:?}"));
    let db = connect(&config, None).await?;
    let e = inventory_validate::handle(
        serde_json::to_value(mixed_chunk())?,
        &PgQuarantine::new(db),
        soon_after(&mixed_chunk()),
    )
    .await
    .expect_err("the database is not there");
    shown.push(report(e));

    // The RDS form: the password comes from the secret, TLS needs a CA bundle that is missing.
    let rds = DatabaseConfig {
        target: DatabaseTarget::Rds {
            host: "127.0.0.1".into(),
            port,
            name: "inventory".into(),
            secret_arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db".into(),
        },
        tls: TlsMode::VerifyFull {
            ca_file: "/nonexistent/rds-ca.pem".into(),
        },
        pool_max: 1,
    };
    let credentials = DbCredentials {
        username: "inventory_app".into(),
        password: password.clone().into(),
    };
    shown.push(format!("{credentials:?}"));
    let rds_db = connect(&rds, Some(credentials)).await?;
    let e = inventory_validate::handle(
        serde_json::to_value(mixed_chunk())?,
        &PgQuarantine::new(rds_db),
        soon_after(&mixed_chunk()),
    )
    .await
    .expect_err("no CA bundle, no server");
    shown.push(report(e));

    // A URL the driver cannot even parse (a port that is not a number).
    let broken = DatabaseConfig::from_lookup(lookup(HashMap::from([(
        "DATABASE_URL",
        format!("postgres://inventory_app:{password}@127.0.0.1:notaport/inventory"),
    )])))?;
    shown.push(format!("{broken:?}"));
    match connect(&broken, None).await {
        Ok(db) => {
            let e = inventory_validate::handle(
                serde_json::to_value(mixed_chunk())?,
                &PgQuarantine::new(db),
                soon_after(&mixed_chunk()),
            )
            .await
            .expect_err("a URL with no port number cannot connect");
            shown.push(report(e));
        }
        Err(e) => shown.push(report(e)),
    }

    assert_hidden(&password, &logs.text(), &shown);
    Ok(())
}

#[tokio::test]
async fn a_redis_auth_token_never_reaches_the_logs_or_the_errors() -> Result<()> {
    let token = secret("redis");
    let logs = CapturedLogs::default();
    let _guard = install(&logs);
    let mut shown = Vec::new();
    let payload: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/cache-invalidate-input.json"))?;
    let input: CacheInvalidateInput = serde_json::from_value(payload.clone())?;

    // ElastiCache's form (host, port, AUTH token from the secret): nothing listens there, then
    // the real local Redis, which refuses the token (it has no password set).
    for port in [test_support::free_port(), 6379] {
        let config = RedisConfig::from_lookup(lookup(HashMap::from([
            ("REDIS_HOST", "127.0.0.1".to_owned()),
            ("REDIS_PORT", port.to_string()),
            ("REDIS_TLS", "false".to_owned()),
            (
                "REDIS_AUTH_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:redis".to_owned(),
            ),
        ])))?;
        let auth = SecretString::from(token.clone());
        shown.push(format!("{config:?} {auth:?}"));
        match RedisProductCache::connect(&config, Some(&auth)) {
            Ok(cache) => {
                match inventory_cache_invalidate::handle(payload.clone(), &cache).await {
                    Ok(out) => shown.push(format!("{out:?}")),
                    Err(d) => shown.push(format!("{d:?}")),
                }
                if let Err(e) = cache.invalidate(&input.products).await {
                    shown.push(report(e));
                }
            }
            Err(e) => shown.push(report(e)),
        }
    }

    // A URL with the token in it.
    let port = test_support::free_port();
    let config = RedisConfig::from_lookup(lookup(HashMap::from([(
        "REDIS_URL",
        format!("redis://:{token}@127.0.0.1:{port}"),
    )])))?;
    shown.push(format!("{config:?}"));
    let cache = RedisProductCache::connect(&config, None)?;
    let probe = ProductId::parse("probe").map_err(anyhow::Error::msg)?;
    if let Err(e) = inventory::ports::CacheRead::get_many(&cache, &[probe]).await {
        shown.push(report(e));
    }

    assert!(
        shown.len() >= 5,
        "each case produced something to check: {shown:?}"
    );
    assert_hidden(&token, &logs.text(), &shown);
    Ok(())
}

#[tokio::test]
async fn the_read_api_keeps_both_secrets_out_of_its_logs_and_answers() -> Result<()> {
    let (password, token) = (secret("db"), secret("redis"));
    let logs = CapturedLogs::default();
    let _guard = install(&logs);
    let (db_port, redis_port) = (test_support::free_port(), test_support::free_port());
    let config = inventory_product_api::Config::from_lookup(lookup(HashMap::from([
        (
            "DATABASE_URL",
            format!("postgres://inventory_app:{password}@127.0.0.1:{db_port}/inventory"),
        ),
        (
            "REDIS_URL",
            format!("redis://:{token}@127.0.0.1:{redis_port}"),
        ),
    ])))?;
    let mut shown = vec![format!("{config:?}")];

    let app = inventory_product_api::build(&config).await?;
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/apigw-http-get-product.json"))?;
    event["rawPath"] = "/products/product123".into();
    event["requestContext"]["http"]["path"] = "/products/product123".into();
    let request = lambda_http::request::from_str(&event.to_string())?;
    let response = inventory_product_api::handle(&app, request).await;
    shown.push(format!("{response:?}"));

    assert_eq!(response.status(), 503, "{response:?}");
    assert_hidden(&password, &logs.text(), &shown);
    assert_hidden(&token, &logs.text(), &shown);
    Ok(())
}

async fn database_secret(
    moto: &integration_tests::moto::MotoServer,
    value: serde_json::Value,
) -> Result<String> {
    let secrets = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let created = secrets
        .create_secret()
        .name(integration_tests::moto::unique_name("db-credentials"))
        .secret_string(value.to_string())
        .send()
        .await?;
    Ok(created.arn().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn database_credentials_come_from_the_secret_and_a_missing_field_is_named() -> Result<()> {
    use inventory::ErrorKind;
    use inventory::adapters::postgres::credentials_from_secret;
    let moto = integration_tests::moto::MotoServer::shared()?;
    let client = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let password = secret("db");

    let arn = database_secret(
        moto,
        serde_json::json!({ "username": "inventory_app", "password": password, "engine": "postgres" }),
    )
    .await?;
    let creds = credentials_from_secret(&client, &arn).await?;
    assert_eq!(creds.username, "inventory_app");
    assert_eq!(creds.password.expose_secret(), password);

    // A secret without a password is the operator's to fix: a configuration error naming the
    // secret and the field, never retried as if Secrets Manager were down.
    let arn = database_secret(moto, serde_json::json!({ "username": "inventory_app" })).await?;
    let e = credentials_from_secret(&client, &arn)
        .await
        .expect_err("no password");
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(
        e.message.contains(&arn) && e.message.contains("\"password\""),
        "{}",
        e.message
    );
    Ok(())
}
