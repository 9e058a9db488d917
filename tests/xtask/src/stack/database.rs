//! The stack's own slice of the shared local services: a PostgreSQL database (created,
//! migrated with the project's migrations, dropped on the way down) and a Redis key prefix
//! (deleted on the way down). The shared services themselves are never reconfigured. A stack
//! can also be pointed at other servers (the fault suite's own PostgreSQL cluster and Redis).

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, Database};

/// The shared PostgreSQL server (no database in the URL).
pub const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `server` (`postgres://user@host:port`) with database `name`.
pub fn database_url(server: &str, name: &str) -> String {
    format!("{}/{name}", server.trim_end_matches('/'))
}

/// Creates `name` on `server` (dropping a leftover of the same name first) and applies the
/// migrations.
pub async fn create(server: &str, name: &str) -> Result<()> {
    check_identifier(name)?;
    let admin = Database::connect(database_url(server, "postgres"))
        .await
        .with_context(|| format!("connecting to PostgreSQL at {server}"))?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .with_context(|| format!("creating database {name}"))?;
    admin.close().await.ok();
    let db = Database::connect(database_url(server, name))
        .await
        .with_context(|| format!("connecting to database {name}"))?;
    migration::run(&db)
        .await
        .with_context(|| format!("migrating database {name}"))?;
    db.close().await.ok();
    Ok(())
}

/// Drops `name` on `server`, closing whatever connections still use it.
pub async fn drop(server: &str, name: &str) -> Result<()> {
    check_identifier(name)?;
    let admin = Database::connect(database_url(server, "postgres")).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin.close().await.ok();
    Ok(())
}

/// Deletes every Redis key under `prefix` on `redis_url`; returns how many.
pub async fn delete_prefix(redis_url: &str, prefix: &str) -> Result<usize> {
    anyhow::ensure!(
        prefix.len() >= 8 && prefix.ends_with(':'),
        "refusing to delete the too-broad prefix {prefix:?}"
    );
    let client = redis::Client::open(redis_url)?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to Redis at {redis_url}"))?;
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

    #[test]
    fn a_database_url_is_the_server_plus_the_name() {
        assert_eq!(
            database_url(POSTGRES_SERVER, "inventory_x"),
            "postgres://postgres@127.0.0.1:5432/inventory_x"
        );
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:6000/", "d"),
            "postgres://postgres@127.0.0.1:6000/d"
        );
    }
}
