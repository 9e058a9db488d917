//! The stack's own slice of the shared local services: a PostgreSQL database (created,
//! migrated with the project's migrations, dropped on the way down) and a Redis key prefix
//! (deleted on the way down). The shared services themselves are never reconfigured.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

pub fn database_url(name: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// Creates `name` (dropping a leftover of the same name first) and applies the migrations.
pub async fn create(name: &str) -> Result<()> {
    check_identifier(name)?;
    let admin = Database::connect(POSTGRES_ADMIN_URL)
        .await
        .context("connecting to PostgreSQL on 127.0.0.1:5432")?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .with_context(|| format!("creating database {name}"))?;
    admin.close().await.ok();
    let db = connect(name).await?;
    migration::run(&db)
        .await
        .with_context(|| format!("migrating database {name}"))?;
    db.close().await.ok();
    Ok(())
}

pub async fn connect(name: &str) -> Result<DatabaseConnection> {
    Database::connect(database_url(name))
        .await
        .with_context(|| format!("connecting to database {name}"))
}

/// Drops `name`, closing whatever connections still use it.
pub async fn drop(name: &str) -> Result<()> {
    check_identifier(name)?;
    let admin = Database::connect(POSTGRES_ADMIN_URL).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin.close().await.ok();
    Ok(())
}

/// Deletes every Redis key under `prefix`; returns how many.
pub async fn delete_prefix(prefix: &str) -> Result<usize> {
    anyhow::ensure!(
        prefix.len() >= 8 && prefix.ends_with(':'),
        "refusing to delete the too-broad prefix {prefix:?}"
    );
    let client = redis::Client::open(REDIS_URL)?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis on 127.0.0.1:6379")?;
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        if !keys.is_empty() {
            let n: usize = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut con)
                .await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Database names go into SQL unquoted, so allow only `[a-z0-9_]`.
fn check_identifier(name: &str) -> Result<()> {
    anyhow::ensure!(
        !name.is_empty()
            && name.len() < 60
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "bad database name {name:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_database_names_are_accepted() {
        assert!(check_identifier("inventory_local_123").is_ok());
        assert!(check_identifier("x; DROP DATABASE postgres").is_err());
        assert!(check_identifier("").is_err());
    }
}
