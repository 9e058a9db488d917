//! The read benchmark through a local HTTP endpoint: `cargo lambda watch --only-lambda-apis`
//! serves the Lambda runtime API and function URLs (`/lambda-url/<function>/...`, turned into
//! HTTP API v2 events), and the real `product-api` binary runs against it, as in the local
//! stack. Both are started here on loopback and killed by PID when done. The client is a
//! minimal keep-alive HTTP/1.1 client, so connection set-up is not measured.

use crate::{Popularity, Samples};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const FUNCTION: &str = "product-api";

pub struct Endpoint {
    port: u16,
    children: Vec<Child>,
}

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn cargo_lambda() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_LAMBDA") {
        return p.into();
    }
    let venv = root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("cargo-lambda")
    }
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PRODUCT_API_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("debug").join(FUNCTION)
}

fn log(name: &str) -> Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("bench-reads-{}-{name}.log", std::process::id()));
    std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
}

impl Endpoint {
    /// Starts the emulator and one instance of the function against `database_url`/`redis_url`.
    pub async fn start(database_url: &str, redis_url: &str, key_prefix: &str) -> Result<Self> {
        let binary = binary();
        if !binary.exists() {
            bail!(
                "{} is missing (cargo build -p inventory-product-api, or cargo xtask bench-reads)",
                binary.display()
            );
        }
        let port = test_support::free_port();
        let mut me = Self {
            port,
            children: Vec::new(),
        };
        let emulator = Command::new(cargo_lambda())
            .current_dir(root())
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--ignore-changes",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log("emulator")?)
            .stderr(log("emulator-err")?)
            .spawn()
            .context("could not run cargo-lambda (cargo xtask setup installs it in .venv)")?;
        me.children.push(emulator);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                bail!("cargo lambda watch did not listen on 127.0.0.1:{port}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let function = Command::new(&binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt/{FUNCTION}"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", redis_url)
            .env("CACHE_KEY_PREFIX", key_prefix)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log("function")?)
            .stderr(log("function-err")?)
            .spawn()
            .with_context(|| format!("could not run {}", binary.display()))?;
        me.children.push(function);
        Ok(me)
    }

    /// Kills both processes (by their PIDs) and reaps them.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        for mut c in self.children.drain(..).rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `reads` single-product reads through the function URL; latencies by `X-Cache`.
pub async fn run(
    endpoint: &Endpoint,
    reads: usize,
    mut popularity: Popularity,
) -> Result<(Samples, Samples, Duration)> {
    let mut client = Client::connect(endpoint.port).await?;
    // The first request waits for the function's cold start: not measured.
    let (status, _) = client
        .get(&format!("/lambda-url/{FUNCTION}/products/cold-start"))
        .await?;
    if status >= 500 {
        bail!(
            "the function answered {status} to its first request; see the bench-reads-*-function-err.log in the temp dir"
        );
    }
    let (mut hits, mut misses) = (Samples::default(), Samples::default());
    let started = Instant::now();
    for _ in 0..reads {
        let path = format!("/lambda-url/{FUNCTION}/products/{}", popularity.next_id());
        let t = Instant::now();
        let (status, x_cache) = client.get(&path).await?;
        let took = t.elapsed();
        if status >= 500 {
            bail!("{path} answered {status}");
        }
        match x_cache.as_deref() {
            Some("hit") => hits.0.push(took),
            _ => misses.0.push(took),
        }
    }
    Ok((hits, misses, started.elapsed()))
}

/// A keep-alive HTTP/1.1 client for one loopback server: `GET` only, `Content-Length` or
/// chunked bodies.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
        })
    }

    /// The status and the `X-Cache` header; the body is read and dropped.
    async fn get(&mut self, path: &str) -> Result<(u16, Option<String>)> {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let (mut length, mut chunked, mut x_cache) = (0usize, false, None);
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().context("content-length")?,
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "x-cache" => x_cache = Some(value.to_owned()),
                _ => {}
            }
        }
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                    .context("chunk size")?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut body = vec![0; length];
            self.stream.read_exact(&mut body).await?;
        }
        Ok((status, x_cache))
    }
}
