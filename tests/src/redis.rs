//! Redis for the integration tests: a key prefix of its own per test on the shared local
//! Redis (its keys deleted on drop), and a private password-protected `redis-server` for the
//! AUTH path.

use anyhow::{Context as _, Result, bail};
use inventory::CacheKeys;
use inventory::adapters::cache::{RedisConfig, RedisEndpoint};
use redis::aio::ConnectionManager;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared local Redis: `$REDIS_URL`, else `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// A key prefix of this test's own on the shared Redis. Every key under it is deleted when
/// this is dropped.
#[derive(Debug)]
pub struct TestRedis {
    prefix: String,
    url: String,
    client: redis::Client,
}

impl TestRedis {
    /// Also installs the process's rustls crypto provider, as the binaries do in `main`, for
    /// the tests that connect with `rediss://`.
    pub fn new() -> Result<Self> {
        inventory::adapters::tls::install_crypto_provider();
        let url = redis_url();
        let client =
            redis::Client::open(url.as_str()).with_context(|| format!("REDIS_URL {url:?}"))?;
        Ok(Self {
            prefix: format!("{}:", crate::moto::unique_name("test")),
            url,
            client,
        })
    }

    /// e.g. `test-4242-3-123456789:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn keys(&self) -> CacheKeys {
        CacheKeys::new(self.prefix.clone())
    }

    /// The cache configuration for this prefix, as `REDIS_URL` + `CACHE_KEY_PREFIX` give it.
    pub fn cache_config(&self, fence_ttl_secs: u64) -> RedisConfig {
        RedisConfig {
            endpoint: RedisEndpoint::Url(inventory::redact::SecretUrl::new(self.url.clone())),
            key_prefix: self.prefix.clone(),
            fence_ttl_secs,
        }
    }

    /// A connection for the test's own reads and writes.
    pub async fn connection(&self) -> Result<ConnectionManager> {
        ConnectionManager::new(self.client.clone())
            .await
            .with_context(|| format!("connecting to Redis at {}", self.url))
    }

    fn delete_keys(&self) -> redis::RedisResult<()> {
        let mut conn = self
            .client
            .get_connection_with_timeout(Duration::from_secs(2))?;
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(&keys).exec(&mut conn)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Err(e) = self.delete_keys() {
            eprintln!(
                "could not delete the test's Redis keys under {}: {e}",
                self.prefix
            );
        }
    }
}

/// A `redis-server` of our own on a free loopback port, requiring a password. Killed by
/// PID on drop.
#[derive(Debug)]
pub struct PasswordRedis {
    port: u16,
    child: Child,
}

impl PasswordRedis {
    pub fn start(password: &str) -> Result<Self> {
        let port = test_support::free_port();
        // The password goes through stdin (a config file read from "-"), never argv, so
        // `ps` does not show it.
        let mut child = Command::new("redis-server")
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("could not run redis-server")?;
        let config = format!(
            "bind 127.0.0.1\nport {port}\nsave \"\"\nappendonly no\nrequirepass {password}\ndir {}\n",
            std::env::temp_dir().display()
        );
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, config.as_bytes())?;
        }
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
