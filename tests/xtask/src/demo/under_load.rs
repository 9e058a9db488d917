//! `cargo xtask demo --rebuild-during`: `inventory rebuild-projection` run again and again
//! while the feed flows, and the read API read all the while. A rebuild builds the new
//! projection beside the live one and switches over in one short transaction, so the feed's
//! executions must all succeed, every read must be answered, no product may go back (a `404`
//! after a `200`, or a lower version than one already read), and the end state must still be
//! the feed's expectation (the demo's own check). Reads go through the API as storefronts
//! make them: a cache hit does not reach the tables, a miss does.

use crate::stack::http::{self, Body, HttpClient};
use anyhow::{Context as _, Result};
use hyper::Request;
use hyper::StatusCode;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Pause between two rebuilds, so the pipeline also runs with no rebuild at all in between.
const BETWEEN_REBUILDS: Duration = Duration::from_millis(500);

/// Readers of the read API at once.
const READERS: usize = 2;

/// The longest one `inventory rebuild-projection` may take before it counts as failed.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a reader waits before reading again a product that seemed to go back. The cache
/// pauses itself for a few seconds after a slow call (reads then come from the database), and
/// a cache hit just after such a pause may briefly lag the database until the pipeline's cache
/// step runs; a product that is still behind after this is a real regression.
const RECHECK_AFTER: Duration = Duration::from_secs(3);

/// What the rebuilds did.
#[derive(Debug, Default)]
pub struct Rebuilds {
    /// Rebuilds that ended with their switch committed.
    pub switched: u64,
    /// Each failed rebuild's exit status and last lines.
    pub failed: Vec<String>,
    pub longest: Duration,
    /// The last successful run's report line.
    pub last_report: Option<String>,
}

/// Failed reads described in full (the rest are counted).
const FAILURES_KEPT: usize = 5;

/// What the readers saw.
#[derive(Debug, Default)]
pub struct Reads {
    /// `200` with the product asked for.
    pub found: u64,
    /// `404`: the product has no update yet.
    pub not_found: u64,
    /// Anything else: a transport error, another status, a body that is not the product.
    pub failed: u64,
    pub first_failures: Vec<String>,
    pub slowest: Duration,
}

impl Reads {
    fn merge(&mut self, other: Reads) {
        self.found += other.found;
        self.not_found += other.not_found;
        self.failed += other.failed;
        self.slowest = self.slowest.max(other.slowest);
        self.first_failures.extend(other.first_failures);
        self.first_failures.truncate(FAILURES_KEPT);
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.first_failures.len() < FAILURES_KEPT {
            self.first_failures.push(why);
        }
    }
}

/// Rebuilds running until most of the feed is through the fan-out, and readers until
/// [`UnderLoad::finish`].
pub struct UnderLoad {
    stop_rebuilds: Arc<AtomicBool>,
    stop_reads: Arc<AtomicBool>,
    rebuilds: JoinHandle<Rebuilds>,
    readers: Vec<JoinHandle<Reads>>,
}

impl UnderLoad {
    /// Starts rebuilding with the `inventory` binary `cli` (the stack's outputs file names the
    /// database) until `enough` says so, and reading `products` through the read API at
    /// `api_url`.
    ///
    /// Rebuilds stop while the pipeline still appends: the last one then overlaps the
    /// pipeline's tail, and the executions still running append to the tables it switched in.
    /// A rebuild after the feed would replay what an earlier switch lost (from the snapshot
    /// taken before that switch) and hide it from the end-state check.
    pub fn start(
        cli: PathBuf,
        outputs: PathBuf,
        api_url: &str,
        products: Vec<String>,
        enough: impl Fn() -> bool + Send + 'static,
    ) -> Self {
        let stop_rebuilds = Arc::new(AtomicBool::new(false));
        let stop_reads = Arc::new(AtomicBool::new(false));
        let rebuilds = tokio::spawn(rebuild_until(cli, outputs, enough, stop_rebuilds.clone()));
        let products = Arc::new(products);
        let readers = (0..READERS)
            .map(|i| {
                tokio::spawn(read_until(
                    http::client(),
                    api_url.trim_end_matches('/').to_owned(),
                    products.clone(),
                    i,
                    stop_reads.clone(),
                ))
            })
            .collect();
        Self {
            stop_rebuilds,
            stop_reads,
            rebuilds,
            readers,
        }
    }

    /// Waits for the last rebuild (starting none after this, should the pipeline have stopped
    /// short of `enough`), then stops the reads (so that they overlap the last switch too), and
    /// says what they did.
    pub async fn finish(self) -> Result<(Rebuilds, Reads)> {
        self.stop_rebuilds.store(true, Ordering::Relaxed);
        let rebuilds = self.rebuilds.await?;
        self.stop_reads.store(true, Ordering::Relaxed);
        let mut reads = Reads::default();
        for r in self.readers {
            reads.merge(r.await?);
        }
        Ok((rebuilds, reads))
    }
}

async fn rebuild_until(
    cli: PathBuf,
    outputs: PathBuf,
    enough: impl Fn() -> bool + Send + 'static,
    stop: Arc<AtomicBool>,
) -> Rebuilds {
    let mut done = Rebuilds::default();
    while !enough() && !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let run = tokio::time::timeout(
            REBUILD_TIMEOUT,
            tokio::process::Command::new(&cli)
                .arg("rebuild-projection")
                .arg("--outputs")
                .arg(&outputs)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await;
        let took = began.elapsed();
        match run {
            Err(_) => done
                .failed
                .push(format!("no end within {REBUILD_TIMEOUT:?}; stopped")),
            Ok(Ok(out)) if out.status.success() => {
                done.switched += 1;
                done.longest = done.longest.max(took);
                done.last_report = String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rfind(|l| l.contains("switched over"))
                    .map(str::to_owned);
            }
            Ok(Ok(out)) => done.failed.push(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Ok(Err(e)) => done
                .failed
                .push(format!("could not run {}: {e}", cli.display())),
        }
        tokio::time::sleep(BETWEEN_REBUILDS).await;
    }
    done
}

/// Reads the products in turn, starting at `offset`, until told to stop.
async fn read_until(
    client: HttpClient,
    api_url: String,
    products: Arc<Vec<String>>,
    offset: usize,
    stop: Arc<AtomicBool>,
) -> Reads {
    let mut reads = Reads::default();
    // The newest version this reader has seen of each product: a product never goes back.
    let mut seen: HashMap<&str, i64> = HashMap::new();
    // A stride that is prime to any realistic product count visits them all in a mixed order.
    let mut i = offset;
    while !stop.load(Ordering::Relaxed) && !products.is_empty() {
        let product = products[i % products.len()].as_str();
        i = i.wrapping_add(7_919);
        let began = Instant::now();
        let mut outcome = read_one(&client, &api_url, product).await;
        reads.slowest = reads.slowest.max(began.elapsed());
        let before = seen.get(product).copied();
        let behind = |o: &Result<Option<i64>>| match (o, before) {
            (Ok(Some(version)), Some(was)) => *version < was,
            (Ok(None), Some(_)) => true,
            _ => false,
        };
        if behind(&outcome) {
            tokio::time::sleep(RECHECK_AFTER).await;
            outcome = read_one(&client, &api_url, product).await;
        }
        match (outcome, before) {
            (Ok(Some(version)), Some(was)) if version < was => reads.fail(format!(
                "GET /products/{product}: version {version} after version {was}, and still {RECHECK_AFTER:?} later"
            )),
            (Ok(Some(version)), _) => {
                reads.found += 1;
                seen.insert(product, version);
            }
            (Ok(None), Some(was)) => {
                reads.fail(format!(
                    "GET /products/{product}: 404 after version {was}, and still {RECHECK_AFTER:?} later"
                ))
            }
            (Ok(None), None) => reads.not_found += 1,
            (Err(e), _) => reads.fail(format!("GET /products/{product}: {e:#}")),
        }
    }
    reads
}

/// One `GET /products/{id}`: the product's version, or `None` for a `404`; any other answer,
/// or a `200` that is not that product, is an error.
async fn read_one(client: &HttpClient, api_url: &str, product: &str) -> Result<Option<i64>> {
    let req = Request::builder()
        .uri(format!("{api_url}/products/{product}"))
        .body(Body::default())?;
    let reply = tokio::time::timeout(Duration::from_secs(30), http::send(client, req))
        .await
        .context("no answer within 30 s")??;
    match reply.status {
        StatusCode::NOT_FOUND => Ok(None),
        StatusCode::OK => {
            let body = reply.json()?;
            anyhow::ensure!(
                body["product_id"] == product,
                "a 200 that is not the product: {}",
                reply.text()
            );
            body["version"]
                .as_i64()
                .map(Some)
                .with_context(|| format!("a 200 without a version: {}", reply.text()))
        }
        other => anyhow::bail!("HTTP {other}: {}", reply.text()),
    }
}

/// What makes the check fail: a rebuild that did not switch over, no rebuild at all, a read
/// that was not answered.
pub fn problems(rebuilds: &Rebuilds, reads: &Reads) -> Vec<String> {
    let mut out = Vec::new();
    if rebuilds.switched == 0 {
        out.push("no rebuild switched over while the feed flowed".to_owned());
    }
    for f in &rebuilds.failed {
        out.push(format!("a rebuild failed: {f}"));
    }
    if reads.found == 0 {
        out.push("no read found a product while the feed flowed".to_owned());
    }
    if reads.failed > 0 {
        out.push(format!(
            "{} reads failed, for example {:?}",
            reads.failed,
            reads.first_failures.first()
        ));
    }
    out
}
