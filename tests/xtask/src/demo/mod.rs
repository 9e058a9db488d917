//! `cargo xtask demo`: the pipeline's main job, end to end on this machine.
//!
//! Sets up what it needs, starts the local stack, generates a realistic supplier feed and puts
//! it on the stream with the supplier CLI (`inventory generate`, `inventory push`: the one way
//! suppliers have), follows it through the fan-out and the state machine with a live progress
//! line, prints a summary, checks that the end state is exactly what the feed must give
//! (computed with the domain's own parser and projection), and stops what it started.

pub mod check;
mod progress;
pub mod push;
mod report;
mod under_load;

use crate::stack::{self, LocalStack};
use anyhow::{Context as _, Result, bail};
use inventory::feed::{self, FeedRecord, FeedSpec, RecordKind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt as _;

/// `cargo xtask demo`'s options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Records in the feed.
    #[arg(long, value_name = "N", default_value_t = FeedSpec::default().updates)]
    updates: usize,
    /// Products.
    #[arg(long, value_name = "N", default_value_t = FeedSpec::default().products)]
    products: usize,
    /// Suppliers.
    #[arg(long, value_name = "N", default_value_t = FeedSpec::default().suppliers)]
    suppliers: usize,
    /// Feed seed; the same seed gives the same feed.
    #[arg(long, value_name = "N", default_value_t = FeedSpec::default().seed)]
    seed: u64,
    /// Run `inventory rebuild-projection` again and again while the feed flows, and read
    /// the read API all the while: the check then also needs every rebuild to switch over and
    /// every read to be answered.
    #[arg(long)]
    rebuild_during: bool,
    /// Leave the stack up after the summary, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    #[command(flatten)]
    stack: stack::cli::StackArgs,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let spec = FeedSpec {
        seed: a.seed,
        updates: a.updates,
        products: a.products,
        suppliers: a.suppliers,
        ..FeedSpec::default()
    };
    let opts = a.stack.options();
    let keep_running = a.keep_running;
    let rebuild_during = a.rebuild_during;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stack = LocalStack::start(opts).await?;
        let result = demo(&stack, &spec, rebuild_during).await;
        if keep_running {
            eprintln!(
                "demo: the stack stays up (outputs in {}); Ctrl-C stops it",
                stack.outputs_path.display()
            );
            stack::cli::wait_for_stop(None).await;
        }
        let stopped = stack.stop().await;
        result.and(stopped)
    })
}

async fn demo(stack: &LocalStack, spec: &FeedSpec, rebuild_during: bool) -> Result<()> {
    let o = &stack.outputs;
    let cli = stack::lambda_watch::binary_path(&crate::shell::root(), "inventory");
    if !cli.is_file() {
        bail!(
            "{} is missing: build it with `cargo build -p inventory-cli` (or run the demo without --no-build)",
            cli.display()
        );
    }
    crate::shell::step(&format!(
        "inventory generate: {} updates, {} products, {} suppliers, seed {}",
        spec.updates, spec.products, spec.suppliers, spec.seed
    ));
    let feed_path = Path::new(&o.local_state_dir).join("demo-feed.jsonl");
    generate_with_cli(&cli, spec, &feed_path).await?;
    let records = read_feed(&feed_path)?;
    let expectation = feed::expected_state(&records, chrono::Utc::now());
    let conf = stack::moto::sdk_config(&o.local_endpoint_url).await;
    let sfn = aws_sdk_sfn::Client::new(&conf);
    let s3 = stack::moto::s3_client(&conf);
    stack.stats.reset_timings();

    crate::shell::step(&format!(
        "inventory push --send-invalid: {} records into {} (the bad ones on purpose, for the quarantine), following them through the pipeline",
        records.len(),
        o.stream_name
    ));
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let sent = Arc::new(AtomicU64::new(0));
    let push_done = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (cli, feed_path, sent, done) = (
            cli.clone(),
            feed_path.clone(),
            sent.clone(),
            push_done.clone(),
        );
        let (stream, endpoint, region) = (
            o.stream_name.clone(),
            o.local_endpoint_url.clone(),
            o.region.clone(),
        );
        tokio::spawn(async move {
            let r = push_with_cli(&cli, &feed_path, &stream, &endpoint, &region, &sent).await;
            done.store(true, Ordering::Relaxed);
            (r, started.elapsed())
        })
    };
    let under_load = if rebuild_during {
        let api = o
            .product_api_url
            .as_deref()
            .context("--rebuild-during reads the read API, but the stack has none: build product-api (or run without --no-build)")?;
        let products = expectation
            .projection
            .summaries()
            .map(|s| s.product_id.to_string())
            .collect();
        crate::shell::step(
            "meanwhile: inventory rebuild-projection again and again, and GET /products/{id} from two readers",
        );
        Some(under_load::UnderLoad::start(
            cli.clone(),
            stack.outputs_path.clone(),
            api,
            products,
            {
                // Until 90% of the records are through the fan-out: the last rebuild overlaps
                // the executions of the rest (see `UnderLoad::start`).
                let (stats, total) = (stack.stats.clone(), records.len() as u64);
                move || stats.snapshot().poller.records_done * 10 >= total * 9
            },
        ))
    } else {
        None
    };
    let timeout = Duration::from_secs(120 + spec.updates as u64 / 100);
    let total = records.len() as u64;
    let executions = progress::wait_until_drained(
        &sfn,
        &o.state_machine_arn,
        &stack.stats,
        &progress::Push {
            total,
            sent: sent.clone(),
            done: push_done.clone(),
        },
        started,
        timeout,
    )
    .await;
    let (pushed, push_took) = pusher.await?;
    let under_load = match under_load {
        Some(u) => Some(u.finish().await?),
        None => None,
    };
    let pushed = pushed?;
    let executions = executions?;
    let end_to_end = executions
        .last_stop
        .map(|stop| (stop - started_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or_else(|| started.elapsed().as_secs_f64());

    crate::shell::step("reading the end state back from PostgreSQL, Redis and S3");
    let end = check::read(o, &s3).await?;
    let stats = stack.stats.snapshot();
    let samples = report::sample_products(&end, 5);
    report::print(&report::Figures {
        pushed: pushed.sent,
        push_secs: push_took.as_secs_f64(),
        end_to_end_secs: end_to_end,
        executions: &executions,
        end: &end,
        stats: &stats,
        cache_prefix: &o.local_cache_prefix,
        sample_products: &samples,
    });
    let mut problems: Vec<String> =
        check::compare(&expectation, &end, pushed.sent, stats.poller.records_read)
            .iter()
            .map(ToString::to_string)
            .collect();
    if let Some((rebuilds, reads)) = &under_load {
        report::print_under_load(rebuilds, reads);
        problems.extend(under_load::problems(rebuilds, reads));
    }
    let failed =
        executions.count("FAILED") + executions.count("TIMED_OUT") + executions.count("ABORTED");
    if failed > 0 {
        problems.push(format!(
            "{failed} executions did not succeed, for example {:?}",
            executions.failed_arns.first()
        ));
    }
    println!();
    if problems.is_empty() {
        println!(
            "CHECK PASSED: the end state equals the feed's newest-per-product expectation ({} products, {} offers, {} events, {} quarantined, {} archived, every cache fence at its version)",
            end.summaries.len(),
            end.offers.len(),
            end.events,
            end.quarantined.values().sum::<u64>(),
            end.archived_records
        );
        Ok(())
    } else {
        println!(
            "CHECK FAILED: {} differences; the first ones:",
            problems.len()
        );
        for p in problems.iter().take(15) {
            println!("  - {p}");
        }
        bail!("the end state does not match the feed")
    }
}

/// Runs `inventory generate` into `path`.
async fn generate_with_cli(cli: &Path, spec: &FeedSpec, path: &Path) -> Result<()> {
    let status = tokio::process::Command::new(cli)
        .arg("generate")
        .args(["--seed", &spec.seed.to_string()])
        .args(["--updates", &spec.updates.to_string()])
        .args(["--products", &spec.products.to_string()])
        .args(["--suppliers", &spec.suppliers.to_string()])
        .arg("--out")
        .arg(path)
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {}", cli.display()))?;
    if !status.success() {
        bail!("inventory generate failed ({status})");
    }
    Ok(())
}

/// The feed's lines as records (the expectation needs only their bytes).
fn read_feed(path: &Path) -> Result<Vec<FeedRecord>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    Ok(lines
        .into_iter()
        .map(|data| FeedRecord {
            partition_key: String::new(),
            data: data.to_vec(),
            kind: RecordKind::Update,
        })
        .collect())
}

/// Runs `inventory push` on the feed, following its `progress sent=N` lines into `sent`.
async fn push_with_cli(
    cli: &Path,
    feed: &Path,
    stream: &str,
    endpoint: &str,
    region: &str,
    sent: &AtomicU64,
) -> Result<push::PushReport> {
    let mut child = tokio::process::Command::new(cli)
        .arg("push")
        .arg(feed)
        .args([
            "--send-invalid",
            "--progress",
            "lines",
            "--concurrency",
            "4",
        ])
        // Whole requests of one product: the feed is Zipf-skewed and every record has
        // occurred_at, so a copy sent again to restore order is absorbed (`push --help`).
        .args(["--per-product", "500"])
        .args([
            "--stream",
            stream,
            "--endpoint-url",
            endpoint,
            "--region",
            region,
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", cli.display()))?;
    let mut other = Vec::new();
    let mut last_sent = 0;
    if let Some(err) = child.stderr.take() {
        let mut lines = tokio::io::BufReader::new(err).lines();
        while let Some(line) = lines.next_line().await? {
            match progress_sent(&line) {
                Some(n) => {
                    last_sent = n;
                    sent.store(n, Ordering::Relaxed);
                }
                None => other.push(line),
            }
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("inventory push failed ({status}):\n{}", other.join("\n"));
    }
    Ok(push::PushReport { sent: last_sent })
}

/// `N` of a `progress sent=N ...` line.
fn progress_sent(line: &str) -> Option<u64> {
    line.strip_prefix("progress sent=")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
