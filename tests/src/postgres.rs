//! A fresh PostgreSQL database per test: created with a unique name on the local server,
//! migrated, and dropped afterwards (by [`TestDb::cleanup`], or by `Drop` as a fallback).
//!
//! The server is `TEST_PG_ADMIN_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`
//! over plain TCP); the harness connects there only to create and drop databases.

use anyhow::{Context, Result, bail};
use inventory::adapters::postgres::{DatabaseConfig, DatabaseTarget, TlsMode, connect_options};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

/// Plain TCP, as the functions connect locally (see `inventory::adapters::postgres::TlsMode`).
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database of one's own, with the project's migrations applied (unless made with
/// [`TestDb::empty`]).
#[derive(Debug)]
pub struct TestDb {
    /// A pool on the test database.
    pub db: DatabaseConnection,
    /// URL of the test database (no password: the local server trusts loopback).
    pub url: String,
    name: String,
    admin_url: String,
    dropped: bool,
}

impl TestDb {
    /// A new, migrated database.
    pub async fn new() -> Result<Self> {
        let t = Self::empty().await?;
        migration::run(&t.db)
            .await
            .context("migrating the test database")?;
        Ok(t)
    }

    /// A new database with no tables at all (to test the migrations themselves).
    pub async fn empty() -> Result<Self> {
        let admin_url =
            std::env::var("TEST_PG_ADMIN_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let name = unique_name();
        let url = url_for(&admin_url, &name)?;
        let admin = admin_connection(&admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        admin.close().await.ok();
        let db = Self::pool(&url, 5).await?;
        Ok(Self {
            db,
            url,
            name,
            admin_url,
            dropped: false,
        })
    }

    /// Another, independent pool on the same database (another "Lambda instance").
    pub async fn connect(&self, pool_max: u32) -> Result<DatabaseConnection> {
        Self::pool(&self.url, pool_max).await
    }

    /// A pool with exactly the options the functions use (see
    /// `inventory::adapters::postgres::connect_options`), so tests and benchmarks see what a
    /// Lambda sees.
    async fn pool(url: &str, pool_max: u32) -> Result<DatabaseConnection> {
        let config = DatabaseConfig {
            target: DatabaseTarget::Url(inventory::redact::SecretUrl::new(url.to_owned())),
            tls: TlsMode::AsConfigured,
            pool_max,
        };
        let opts = connect_options(&config, None)?;
        Database::connect(opts)
            .await
            .with_context(|| format!("connecting to {url}"))
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the pool and drops the database.
    pub async fn cleanup(mut self) -> Result<()> {
        self.dropped = true;
        self.db.clone().close().await.ok();
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for TestDb {
    /// A test that failed (or forgot `cleanup`) still leaves nothing behind: the drop runs on
    /// its own thread and runtime, since `Drop` cannot await.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let outcome = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(drop_database(&admin_url, &name))
        })
        .join();
        if let Ok(Err(e)) | Err(e) = outcome.map_err(|_| anyhow::anyhow!("drop thread panicked")) {
            eprintln!("could not drop test database {}: {e:#}", self.name);
        }
    }
}

async fn admin_connection(admin_url: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(admin_url.to_owned());
    opts.max_connections(1).sqlx_logging(false);
    Database::connect(opts)
        .await
        .with_context(|| format!("connecting to {admin_url} (is PostgreSQL running? see README)"))
}

async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let admin = admin_connection(admin_url).await?;
    // FORCE ends sessions still open on it (pools a test leaked).
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .with_context(|| format!("dropping database {name}"))?;
    admin.close().await.ok();
    Ok(())
}

/// `it_<pid>_<counter>_<random>`: unique across parallel tests and test processes.
fn unique_name() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let random = h.finish() & 0xff_ffff;
    format!(
        "it_{}_{}_{random:06x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The admin URL with its database name replaced.
fn url_for(admin_url: &str, name: &str) -> Result<String> {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let Some(slash) = base.rfind('/').filter(|i| *i > "postgres://".len()) else {
        bail!("TEST_PG_ADMIN_URL {admin_url:?} must end with /<database>");
    };
    let mut url = format!("{}/{name}", &base[..slash]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_safe_to_quote() {
        let (a, b) = (unique_name(), unique_name());
        assert_ne!(a, b);
        assert!(
            a.starts_with("it_") && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{a}"
        );
    }

    #[test]
    fn the_database_name_replaces_the_admin_one() {
        assert_eq!(
            url_for("postgres://u@h:1/postgres", "it_1").expect("valid"),
            "postgres://u@h:1/it_1"
        );
        assert_eq!(
            url_for("postgres://h/p?sslmode=disable", "x").expect("valid"),
            "postgres://h/x?sslmode=disable"
        );
        assert!(url_for("postgres://h", "x").is_err());
    }
}
