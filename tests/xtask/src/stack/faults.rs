//! The router's fault switch: tests make chosen Lambda invocations or AWS API calls fail, time
//! out or slow down, and read how often each fault fired.
//!
//! `POST /_faults` with a [`FaultSpec`] adds a fault; `GET /_faults` lists them with their
//! counters; `DELETE /_faults` clears them all, `DELETE /_faults/{id}` one.
//!
//! ```json
//! {"function": "persist", "match": "SKU-e2e-17", "count": 2, "error_type": "Inventory.DependencyUnavailable"}
//! {"service": "s3", "count": 5}
//! {"function": "validate", "mode": "delay", "delay_ms": 3000}
//! {"function": "persist", "error_type": "Inventory.Internal", "delay_ms": 1500}
//! ```

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// What a fault does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultMode {
    /// A function returns an error (`error_type`); an API call gets HTTP 503.
    #[default]
    Error,
    /// The request waits `delay_ms`, then goes through.
    Delay,
    /// A function times out (Lambda's `Sandbox.Timedout`), without running.
    Timeout,
}

/// A fault as a test asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FaultSpec {
    /// A function's binary name (`persist`), for Lambda invocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// An AWS service's signing name (`s3`, `kinesis`, `states`, `sqs`), for API calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only requests whose body contains this text (a test's own product ids, say).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// How many matching requests it hits; absent: every one until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default)]
    pub mode: FaultMode,
    /// The function error's `errorType` (default `Inventory.DependencyUnavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// How long a `delay` holds the request (default 1 s), or an `error` waits before it is
    /// answered (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// A fault and how often it fired.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    pub fired: u64,
}

/// What the router must do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Pass,
    /// Answer with the function error `error_type`, after `after` (an error's `delay_ms`: so
    /// that a failure can come after the work running beside it has ended).
    Fail {
        error_type: String,
        after: std::time::Duration,
    },
    Delay(std::time::Duration),
    Timeout,
}

/// The router's table of faults.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<(u64, Vec<Fault>)>,
}

/// The target of a request: a function invocation or an API call.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Function(&'a str),
    Service(&'a str),
}

impl Faults {
    pub fn add(&self, spec: FaultSpec) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let id = g.0;
        g.1.push(Fault { id, spec, fired: 0 });
        id
    }

    pub fn list(&self) -> Vec<Fault> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    pub fn clear(&self, id: Option<u64>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match id {
            Some(id) => g.1.retain(|f| f.id != id),
            None => g.1.clear(),
        }
    }

    /// The action for a request; the first matching fault with hits left fires.
    pub fn check(&self, target: Target<'_>, body: &[u8]) -> Action {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for f in g.1.iter_mut() {
            let aims = match target {
                Target::Function(name) => f.spec.function.as_deref() == Some(name),
                Target::Service(name) => {
                    f.spec.function.is_none() && f.spec.service.as_deref() == Some(name)
                }
            };
            let left = f.spec.count.is_none_or(|n| f.fired < n);
            let matches = f
                .spec
                .matches
                .as_deref()
                .is_none_or(|m| contains(body, m.as_bytes()));
            if aims && left && matches {
                f.fired += 1;
                return match f.spec.mode {
                    FaultMode::Error => Action::Fail {
                        error_type: f
                            .spec
                            .error_type
                            .clone()
                            .unwrap_or_else(|| "Inventory.DependencyUnavailable".into()),
                        after: std::time::Duration::from_millis(f.spec.delay_ms.unwrap_or(0)),
                    },
                    FaultMode::Delay => Action::Delay(std::time::Duration::from_millis(
                        f.spec.delay_ms.unwrap_or(1_000),
                    )),
                    FaultMode::Timeout => Action::Timeout,
                };
            }
        }
        Action::Pass
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persist(matches: Option<&str>, count: Option<u64>) -> FaultSpec {
        FaultSpec {
            function: Some("persist".into()),
            matches: matches.map(Into::into),
            count,
            ..FaultSpec::default()
        }
    }

    #[test]
    fn a_counted_fault_fires_that_many_times_then_passes() {
        let faults = Faults::default();
        faults.add(persist(None, Some(2)));
        let t = Target::Function("persist");
        assert!(matches!(faults.check(t, b"{}"), Action::Fail { .. }));
        assert!(matches!(faults.check(t, b"{}"), Action::Fail { .. }));
        assert_eq!(faults.check(t, b"{}"), Action::Pass);
        assert_eq!(faults.list()[0].fired, 2);
    }

    #[test]
    fn a_fault_hits_only_its_function_and_matching_bodies() {
        let faults = Faults::default();
        faults.add(persist(Some("SKU-e2e-1"), None));
        assert_eq!(
            faults.check(Target::Function("validate"), b"SKU-e2e-1"),
            Action::Pass
        );
        assert_eq!(
            faults.check(Target::Function("persist"), b"SKU-other"),
            Action::Pass
        );
        assert_eq!(
            faults.check(Target::Function("persist"), br#"{"p":"SKU-e2e-1"}"#),
            Action::Fail {
                error_type: "Inventory.DependencyUnavailable".into(),
                after: std::time::Duration::ZERO,
            }
        );
    }

    #[test]
    fn service_faults_and_clearing() {
        let faults = Faults::default();
        let id = faults.add(FaultSpec {
            service: Some("s3".into()),
            ..FaultSpec::default()
        });
        assert!(matches!(
            faults.check(Target::Service("s3"), b""),
            Action::Fail { .. }
        ));
        assert_eq!(faults.check(Target::Service("kinesis"), b""), Action::Pass);
        faults.clear(Some(id));
        assert_eq!(faults.check(Target::Service("s3"), b""), Action::Pass);
    }

    #[test]
    fn a_fault_spec_reads_from_the_documented_json() {
        let spec: FaultSpec =
            serde_json::from_str(r#"{"function":"validate","mode":"delay","delay_ms":3000}"#)
                .expect("valid");
        assert_eq!(spec.mode, FaultMode::Delay);
        assert_eq!(spec.delay_ms, Some(3000));
    }
}
