//! The fault scenarios: what each pushes, what it breaks mid-stream, and the poison records.

use inventory::domain::rejection::RejectionCode;
use inventory::feed::{self, FeedRecord, FeedSpec, RecordKind};
use serde_json::{Value, json};
use std::time::Duration;

/// What a scenario breaks once a third of its feed went through the fan-out, and for how long.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Nothing but the feed itself (poison records, storms).
    None,
    /// The suite's own PostgreSQL cluster shut down immediately (a crash), started again later.
    PostgresDown { down: Duration },
    /// The suite's own Redis stopped, started again later.
    RedisDown { down: Duration },
    /// Faults on the router's switch (S3 errors, function crashes and timeouts), then cleared:
    /// the "fix" ops deploy before they redrive.
    Router { specs: Vec<Value>, hold: Duration },
    /// The whole feed pushed a second time, starting mid-stream.
    PushAgain,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub what: &'static str,
    /// What is pushed first, in this order.
    pub feed: Vec<FeedRecord>,
    pub fault: Fault,
    /// How many times recovery, after redriving a failed execution, also starts its input again
    /// under a new name (the path for executions past the redrive window, which must change
    /// nothing), and then redrives it a second time (which must be refused).
    pub reruns: u32,
    /// The only functions a redrive may invoke, when every failure is at a known state: a
    /// redrive resumes at the failed state, so the states before it must not run again.
    pub redrive_invokes_only: Option<&'static [&'static str]>,
    /// Whether a failed execution before recovery is itself a failure of the scenario.
    pub failures_allowed: bool,
}

pub const NAMES: &[&str] = &[
    "poison",
    "duplicate-storm",
    "out-of-order-storm",
    "s3-errors",
    "function-crash",
    "redrive-after-partial",
    "redis-outage",
    "postgres-restart",
];

/// The scenarios named (all of them for an empty list), on feeds of `updates` records.
pub fn select(names: &[String], updates: usize) -> anyhow::Result<Vec<Scenario>> {
    for n in names {
        anyhow::ensure!(
            NAMES.contains(&n.as_str()),
            "unknown scenario {n:?} (known: {})",
            NAMES.join(", ")
        );
    }
    Ok(NAMES
        .iter()
        .enumerate()
        .filter(|(_, n)| names.is_empty() || names.iter().any(|m| m == *n))
        .map(|(i, n)| scenario(n, updates, 100 + i as u64))
        .collect())
}

fn spec(updates: usize, seed: u64) -> FeedSpec {
    FeedSpec {
        seed,
        updates,
        products: (updates / 6).max(30),
        ..FeedSpec::default()
    }
}

fn scenario(name: &'static str, updates: usize, seed: u64) -> Scenario {
    let base = feed::generate(&spec(updates, seed));
    let s = |what, feed, fault, reruns, failures_allowed| Scenario {
        name,
        what,
        feed,
        fault,
        reruns,
        redrive_invokes_only: None,
        failures_allowed,
    };
    match name {
        "poison" => s(
            "poison records (non-JSON, wrong types, huge, invalid UTF-8, deep nesting, unicode ids) spliced into the middle of the feed",
            with_poison(base),
            Fault::None,
            0,
            false,
        ),
        "duplicate-storm" => s(
            "the same feed pushed a second time, starting mid-stream",
            base,
            Fault::PushAgain,
            0,
            false,
        ),
        "out-of-order-storm" => s(
            "a feed with 30% late updates, pushed newest first: every product's older updates arrive after its newer ones",
            {
                let mut f = feed::generate(&FeedSpec {
                    out_of_order_share: 0.3,
                    ..spec(updates, seed)
                });
                f.reverse();
                f
            },
            Fault::None,
            0,
            false,
        ),
        "s3-errors" => s(
            "every S3 call answers 503 for 20 s",
            base,
            Fault::Router {
                specs: vec![json!({"service": "s3"})],
                hold: Duration::from_secs(20),
            },
            0,
            true,
        ),
        "function-crash" => s(
            "for 30 s persist crashes (Runtime.ExitError) on one product, archive times out on another, the fan-out crashes on a third",
            base,
            Fault::Router {
                specs: vec![
                    json!({"function": "persist", "match": "SKU-000009", "error_type": "Runtime.ExitError"}),
                    json!({"function": "archive", "match": "SKU-000017", "mode": "timeout"}),
                    json!({"function": "fanout", "match": "SKU-000023", "error_type": "Runtime.ExitError"}),
                ],
                hold: Duration::from_secs(30),
            },
            0,
            true,
        ),
        "redrive-after-partial" => Scenario {
            redrive_invokes_only: Some(&["cache-invalidate"]),
            ..s(
                "cache-invalidate fails permanently for 15 s, after Archive and Persist applied; each failed execution is redriven (it resumes at CacheInvalidate), its input then re-run once more, and a second redrive refused",
                base,
                Fault::Router {
                    specs: vec![
                        json!({"function": "cache-invalidate", "error_type": "Inventory.Internal"}),
                    ],
                    hold: Duration::from_secs(15),
                },
                1,
                true,
            )
        },
        "redis-outage" => s(
            "the suite's own Redis is stopped for 20 s, then started again",
            base,
            Fault::RedisDown {
                down: Duration::from_secs(20),
            },
            0,
            true,
        ),
        _ => s(
            "the suite's own PostgreSQL cluster is shut down immediately (as a crash) for 20 s, then started again",
            base,
            Fault::PostgresDown {
                down: Duration::from_secs(20),
            },
            0,
            true,
        ),
    }
}

/// The feed with every poison record spread over its middle third.
fn with_poison(mut feed: Vec<FeedRecord>) -> Vec<FeedRecord> {
    let poison = poison_records();
    let (start, end) = (feed.len() / 3, 2 * feed.len() / 3);
    let step = ((end - start) / poison.len().max(1)).max(1);
    for (i, p) in poison.into_iter().enumerate().rev() {
        feed.insert((start + i * step).min(feed.len()), p);
    }
    feed
}

fn rec(partition_key: &str, data: impl Into<Vec<u8>>) -> FeedRecord {
    FeedRecord {
        partition_key: partition_key.to_owned(),
        data: data.into(),
        // The code each must get is the parser's to say; the suite checks quarantine against it.
        kind: RecordKind::Bad(RejectionCode::NotJson),
    }
}

/// Records that break the data contract in every way the stream can carry, plus a few valid
/// ones with unusual but legal content.
pub fn poison_records() -> Vec<FeedRecord> {
    let at = FeedSpec::default()
        .start
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ok = |pid: &str, extra: &str| {
        format!(
            r#"{{"product_id":"{pid}","quantity":1,"price":"9.99","occurred_at":"{at}"{extra}}}"#
        )
    };
    let deep_array = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let deep_object = format!(
        r#"{{"product_id":"SKU-000001","quantity":1,"price":{}1{}}}"#,
        r#"{"a":"#.repeat(2_000),
        "}".repeat(2_000)
    );
    let mut out = vec![
        // Not JSON.
        rec("SKU-000001", "not json at all"),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":5,"price":"#,
        ),
        rec("SKU-000001", vec![0u8, 1, 2, 3]),
        rec("SKU-000001", "{}{}"),
        // JSON, wrong shapes and types.
        rec("SKU-000001", "null"),
        rec("SKU-000001", "[1,2,3]"),
        rec("SKU-000001", r#""a string""#),
        rec("SKU-000001", "{}"),
        rec(
            "SKU-000001",
            r#"{"product_id":12,"quantity":1,"price":"9.99"}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":"5","price":"9.99"}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":1,"price":true}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":1.5,"price":"9.99"}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":1e400,"price":"9.99"}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":1,"price":"1e5"}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":1,"price":"9.99","currency":840}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":1,"price":"9.99","supplier_id":{}}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":1,"price":"9.99","occurred_at":12345}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","product_id":"SKU-000002","quantity":1,"price":"9.99"}"#,
        ),
        rec(
            "SKU-000001",
            r#"{"product_id":"SKU-000001","quantity":99999999999999999999999,"price":"9.99"}"#,
        ),
        // Huge: over the record limit, and one big enough that the fan-out must put it aside.
        rec(
            "SKU-000001",
            ok(
                "SKU-000001",
                &format!(r#","note":"{}""#, "x".repeat(20_000)),
            ),
        ),
        rec("SKU-000002", vec![b'{'; 900_000]),
        // Invalid UTF-8: a stray byte, an overlong encoding, an encoded surrogate.
        rec("SKU-000001", vec![0xff, 0xfe, b'{', b'}']),
        rec(
            "SKU-000001",
            [b"{\"product_id\":\"SKU-\xc0\xaf\"}" as &[u8]].concat(),
        ),
        rec(
            "SKU-000001",
            [b"{\"product_id\":\"\xed\xa0\x80\"}" as &[u8]].concat(),
        ),
        // Deep nesting.
        rec("SKU-000001", deep_array),
        rec("SKU-000001", deep_object),
    ];
    // Unicode edge cases in ids (the partition key carries them too).
    for pid in [
        "SKU-é1",
        "ＳＫＵ-000001",
        "SKU-000001\u{200b}",
        "SKU-\u{202e}100000",
        "SKU-😀",
        "SKU-e\u{301}",
        "SKU-ı",
        "\u{feff}SKU-000001",
    ] {
        out.push(rec(pid, ok(pid, "")));
    }
    out.push(rec("SKU-000001", ok(r"SKU-000001\u0000", "")));
    out.push(rec("SKU-000001", ok(r"\ud800", "")));
    out.push(rec(
        "SKU-000001",
        ok("SKU-000001", r#","supplier_id":"acmé""#),
    ));
    // Valid, with unicode where the contract allows it (the update id).
    for (i, uid) in ["über-✓-1", "供应商-更新-2", "emoji-😀-3"]
        .iter()
        .enumerate()
    {
        let pid = format!("SKU-00000{}", i + 1);
        out.push(rec(
            &pid,
            ok(
                &pid,
                &format!(r#","supplier_id":"unicode","update_id":"{uid}""#),
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::domain::update::{SourcePosition, parse_record};

    #[test]
    fn every_poison_record_is_rejected_but_the_unicode_update_ids() {
        let source = SourcePosition {
            shard_id: "s".into(),
            sequence_number: "1".into(),
            arrived_at: chrono::Utc::now(),
        };
        let results: Vec<_> = poison_records()
            .iter()
            .map(|r| parse_record(&r.data, &source))
            .collect();
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 3, "only the valid unicode update ids pass");
        assert!(results.len() > 30);
    }

    #[test]
    fn poison_goes_into_the_middle_third_and_every_scenario_has_a_name() {
        let feed = feed::generate(&spec(600, 1));
        let mixed = with_poison(feed.clone());
        assert_eq!(mixed.len(), feed.len() + poison_records().len());
        assert_eq!(mixed[..200], feed[..200]);
        let all = select(&[], 60).expect("all");
        assert_eq!(all.len(), NAMES.len());
        assert!(select(&["nope".into()], 60).is_err());
    }
}
