//! The demo's summary: throughput, executions, quarantine, archive, a few products read back,
//! and where the time went.

use super::check::EndState;
use super::progress::Executions;
use crate::stack::stats::Snapshot;
use inventory::CacheKeys;

pub struct Figures<'a> {
    pub pushed: u64,
    pub push_secs: f64,
    pub end_to_end_secs: f64,
    pub executions: &'a Executions,
    pub end: &'a EndState,
    pub stats: &'a Snapshot,
    pub cache_prefix: &'a str,
    pub sample_products: &'a [String],
}

pub fn print(f: &Figures<'_>) {
    let per_sec = f.pushed as f64 / f.end_to_end_secs.max(0.001);
    println!();
    println!("== Summary");
    println!(
        "  updates pushed        {} in {:.1} s (PutRecords)",
        f.pushed, f.push_secs
    );
    println!(
        "  end to end            {:.1} s: {:.0} updates/s = {:.0} updates/min (first record pushed -> last execution finished)",
        f.end_to_end_secs,
        per_sec,
        per_sec * 60.0
    );
    let ex = f.executions;
    println!(
        "  executions            {} succeeded, {} failed, {} other, {} in all",
        ex.count("SUCCEEDED"),
        ex.count("FAILED") + ex.count("TIMED_OUT") + ex.count("ABORTED"),
        ex.total()
            - ex.count("SUCCEEDED")
            - ex.count("FAILED")
            - ex.count("TIMED_OUT")
            - ex.count("ABORTED"),
        ex.total()
    );
    println!(
        "  event store           {} events; {} products, {} offers",
        f.end.events,
        f.end.summaries.len(),
        f.end.offers.len()
    );
    let q: Vec<String> = f
        .end
        .quarantined
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "  quarantined           {} ({})",
        f.end.quarantined.values().sum::<u64>(),
        q.join(", ")
    );
    println!(
        "  archive               {} objects, {} records ({} read from the stream, {} of them sent twice by producer retries)",
        f.end.archive_objects,
        f.end.archived_records,
        f.stats.poller.records_read,
        f.stats.poller.records_read.saturating_sub(f.pushed)
    );
    let p = &f.stats.poller;
    println!(
        "  event source mapping  {} batches, {} invocations, {} retries, {} bisections, {} records to the on-failure queue",
        p.batches, p.invocations, p.retries, p.bisections, p.records_to_destination
    );
    println!();
    println!(
        "== A few products (PostgreSQL product_summaries, Redis fence {}product:<id>:fence)",
        f.cache_prefix
    );
    let keys = CacheKeys::new(f.cache_prefix);
    for id in f.sample_products {
        if let Some(s) = f.end.summaries.get(id) {
            let fence = f
                .end
                .fences
                .get(id)
                .map_or("none".into(), |v| v.to_string());
            let price = match (
                &s.best_price,
                &s.best_price_currency,
                &s.best_price_supplier,
            ) {
                (Some(p), Some(c), Some(sup)) => format!("{} {c} from {sup}", p.normalize()),
                _ => "no offer in stock".into(),
            };
            println!(
                "  {id:<12} qty {:>6}  best {price:<24} suppliers {}  version {:>7}  fence {fence:>7}  ({})",
                s.total_quantity,
                s.supplier_count,
                s.version,
                inventory::ProductId::parse(id)
                    .map(|p| keys.fence(&p))
                    .unwrap_or_default()
            );
        }
    }
    println!();
    println!("== Where the time goes (busy time summed over concurrent calls)");
    for (name, t) in &f.stats.functions {
        println!(
            "  λ {name:<17} {:>6} calls  mean {:>7.1} ms  max {:>7.1} ms  total {:>7.1} s  errors {}",
            t.calls,
            t.mean_ms(),
            t.max_ms,
            t.total_ms / 1000.0,
            t.errors
        );
    }
    for (name, t) in &f.stats.services {
        println!(
            "  api {name:<15} {:>6} calls  mean {:>7.1} ms  max {:>7.1} ms  total {:>7.1} s",
            t.calls,
            t.mean_ms(),
            t.max_ms,
            t.total_ms / 1000.0
        );
    }
    if ex.finished > 0 {
        let mean_exec = ex.total_secs * 1000.0 / ex.finished as f64;
        let m = |n: &str| f.stats.functions.get(n).map_or(0.0, |t| t.mean_ms());
        let tasks = m("validate") + m("archive").max(m("persist")) + m("cache-invalidate");
        println!(
            "  execution (moto)      mean {mean_exec:.0} ms, of which tasks {tasks:.0} ms (validate + max(archive, persist) + cache-invalidate) and interpreter overhead {:.0} ms",
            (mean_exec - tasks).max(0.0)
        );
    }
}

/// The feed's most popular products (Zipf: the first ids), for the read-back.
pub fn sample_products(end: &EndState, n: usize) -> Vec<String> {
    end.summaries.keys().take(n).cloned().collect()
}

/// The rebuilds and reads of `--rebuild-during`.
pub fn print_under_load(rebuilds: &super::under_load::Rebuilds, reads: &super::under_load::Reads) {
    println!();
    println!("== Projection rebuilds while the feed flowed (inventory rebuild-projection)");
    println!(
        "  rebuilds              {} switched over, {} failed, longest {:.1} s",
        rebuilds.switched,
        rebuilds.failed.len(),
        rebuilds.longest.as_secs_f64()
    );
    if let Some(last) = &rebuilds.last_report {
        println!("  the last one said     {last}");
    }
    println!(
        "  reads (GET /products) {} found, {} not yet updated (404), {} failed, slowest {:.0} ms",
        reads.found,
        reads.not_found,
        reads.failed,
        reads.slowest.as_secs_f64() * 1000.0
    );
}
