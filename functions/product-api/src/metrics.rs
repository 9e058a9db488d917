//! Read-path metrics as CloudWatch Embedded Metric Format (EMF) log lines: counts summed per
//! instance and written at most once a minute (one line per request would cost more in logs
//! than the API itself), and at once when the cache fails, so degradation shows promptly.
//! CloudWatch turns each line into metrics in the `InventoryPipeline` namespace, by function.
//! An instance's last, partial window is lost when Lambda retires it: these are for ratios and
//! trends (hit ratio, queries per read, degradation), not for counting every request.

use inventory::read::ReadStats;
use lambda_http::http::StatusCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const NAMESPACE: &str = "InventoryPipeline";

/// The counters, in the order they are emitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub negative_hits: u64,
    pub database_queries: u64,
    pub fenced_fills: u64,
    pub cache_errors: u64,
    pub cache_bypassed_reads: u64,
    pub not_modified: u64,
    pub client_errors: u64,
    pub server_errors: u64,
}

impl Counts {
    fn add(&mut self, stats: &ReadStats, status: StatusCode) {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        self.requests += 1;
        self.cache_hits += n(stats.hits);
        self.cache_misses += n(stats.misses);
        self.negative_hits += n(stats.absent_hits);
        self.database_queries += n(stats.db_queries);
        self.fenced_fills += n(stats.fenced);
        self.cache_errors += n(stats.cache_errors);
        self.cache_bypassed_reads += u64::from(stats.cache_skipped);
        self.not_modified += u64::from(status == StatusCode::NOT_MODIFIED);
        self.client_errors += u64::from(status.is_client_error());
        self.server_errors += u64::from(status.is_server_error());
    }

    fn named(&self) -> [(&'static str, u64); 11] {
        [
            ("Requests", self.requests),
            ("CacheHits", self.cache_hits),
            ("CacheMisses", self.cache_misses),
            ("NegativeHits", self.negative_hits),
            ("DatabaseQueries", self.database_queries),
            ("FencedFills", self.fenced_fills),
            ("CacheErrors", self.cache_errors),
            ("CacheBypassedReads", self.cache_bypassed_reads),
            ("NotModified", self.not_modified),
            ("ClientErrors", self.client_errors),
            ("ServerErrors", self.server_errors),
        ]
    }
}

/// Sums counts and says when to write them.
#[derive(Debug)]
pub struct Metrics {
    function: String,
    every: Duration,
    window: Mutex<(Instant, Counts)>,
}

impl Metrics {
    pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

    pub fn new(function: impl Into<String>, every: Duration) -> Self {
        Self {
            function: function.into(),
            every,
            window: Mutex::new((Instant::now(), Counts::default())),
        }
    }

    /// Adds one request; returns the EMF line to write when the window is over or the cache
    /// failed.
    pub fn record(&self, stats: &ReadStats, status: StatusCode) -> Option<String> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        w.1.add(stats, status);
        if stats.cache_errors == 0 && w.0.elapsed() < self.every {
            return None;
        }
        let counts = std::mem::take(&mut w.1);
        w.0 = Instant::now();
        Some(self.emf(&counts))
    }

    /// The counts so far (tests, and the benchmark's summary).
    pub fn snapshot(&self) -> Counts {
        self.window.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    fn emf(&self, counts: &Counts) -> String {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let named = counts.named();
        let definitions: Vec<serde_json::Value> = named
            .iter()
            .map(|(name, _)| serde_json::json!({ "Name": name, "Unit": "Count" }))
            .collect();
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": millis,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": definitions,
                }],
            },
            "FunctionName": self.function,
        });
        for (name, value) in named {
            doc[name] = value.into();
        }
        doc.to_string()
    }
}
