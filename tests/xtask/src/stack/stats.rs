//! Counters the stack keeps while it runs (`GET /_stats` on the router): invocations and busy
//! time per function, calls per AWS service, and the Kinesis poller's progress. The demo reads
//! them to show where the time goes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Calls to one function or service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub calls: u64,
    pub errors: u64,
    pub total_ms: f64,
    pub max_ms: f64,
}

impl Timing {
    pub fn mean_ms(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.total_ms / self.calls as f64
        }
    }
}

/// The Kinesis poller's progress, summed over shards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PollerProgress {
    /// Records read from the stream.
    pub records_read: u64,
    /// Records whose batch completed (checkpointed past), successfully or to the destination.
    pub records_done: u64,
    pub batches: u64,
    pub invocations: u64,
    pub function_errors: u64,
    pub partial_failures: u64,
    pub retries: u64,
    pub bisections: u64,
    /// Records reported to the on-failure destination.
    pub records_to_destination: u64,
    /// Batches in flight now.
    pub in_flight: u64,
}

/// Everything `GET /_stats` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub functions: BTreeMap<String, Timing>,
    pub services: BTreeMap<String, Timing>,
    pub poller: PollerProgress,
}

#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Snapshot>,
}

impl Stats {
    pub fn record_function(&self, name: &str, took: Duration, error: bool) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        add(g.functions.entry(name.to_owned()).or_default(), took, error);
    }

    pub fn record_service(&self, name: &str, took: Duration, error: bool) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        add(g.services.entry(name.to_owned()).or_default(), took, error);
    }

    pub fn poller(&self, f: impl FnOnce(&mut PollerProgress)) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g.poller);
    }

    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Zeroes the call counters (not the poller's progress, which tracks the stream).
    pub fn reset_timings(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.functions.clear();
        g.services.clear();
    }
}

fn add(t: &mut Timing, took: Duration, error: bool) {
    let ms = took.as_secs_f64() * 1_000.0;
    t.calls += 1;
    t.errors += u64::from(error);
    t.total_ms += ms;
    t.max_ms = t.max_ms.max(ms);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_add_up_per_name() {
        let s = Stats::default();
        s.record_function("persist", Duration::from_millis(10), false);
        s.record_function("persist", Duration::from_millis(30), true);
        s.record_service("s3", Duration::from_millis(5), false);
        let snap = s.snapshot();
        let p = &snap.functions["persist"];
        assert_eq!((p.calls, p.errors), (2, 1));
        assert!((p.mean_ms() - 20.0).abs() < 0.5, "{}", p.mean_ms());
        assert_eq!(snap.services["s3"].calls, 1);
        s.reset_timings();
        assert!(s.snapshot().functions.is_empty());
    }
}
