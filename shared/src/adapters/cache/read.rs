//! The read path's port ([`CacheRead`]) on the fenced, versioned Redis cache: reads go
//! through [`RedisProductCache::get_many`] (one `MGET`), fills through the same `populate.lua`
//! script as [`RedisProductCache::populate`], pipelined so a batch of misses costs one round
//! trip. A negative entry is [`ABSENT_VERSION`] with the JSON `null`.
//!
//! Every call is bounded by [`CACHE_CALL_BUDGET`]: the read path would rather serve from the
//! database than wait on a slow cache.

use super::errors::from_redis;
use super::{ABSENT_VERSION, CacheEntry, POPULATE, PopulateOutcome, RedisProductCache};
use crate::domain::ids::ProductId;
use crate::error::{ErrorKind, PipelineError};
use crate::ports::{CacheFill, CacheRead, Cached, FillOutcome};
use async_trait::async_trait;
use std::future::Future;
use std::time::Duration;

/// Longest a read-path cache call may take before the read goes to the database. A cached
/// read is well under a millisecond in the same VPC; this only bounds a sick cache.
pub const CACHE_CALL_BUDGET: Duration = Duration::from_millis(250);

const ABSENT_JSON: &str = "null";

async fn within_budget<T>(
    what: &'static str,
    call: impl Future<Output = Result<T, PipelineError>>,
) -> Result<T, PipelineError> {
    tokio::time::timeout(CACHE_CALL_BUDGET, call)
        .await
        .unwrap_or_else(|_| {
            Err(PipelineError::new(
                ErrorKind::DependencyUnavailable,
                format!(
                    "the cache took longer than {} ms to {what}",
                    CACHE_CALL_BUDGET.as_millis()
                ),
            ))
        })
}

fn cached(entry: CacheEntry) -> Cached {
    if entry.is_absent() {
        Cached::Absent
    } else {
        Cached::Product {
            version: entry.version,
            json: entry.json,
        }
    }
}

fn outcome(code: i64, other: i64) -> Result<FillOutcome, PipelineError> {
    match code {
        1 => Ok(FillOutcome::Stored),
        0 => Ok(FillOutcome::Fenced { fence: other }),
        2 => Ok(FillOutcome::AlreadyCurrent { cached: other }),
        _ => Err(PipelineError::new(
            ErrorKind::Internal,
            format!("populate script answered {code}"),
        )),
    }
}

fn version_and_json(state: &Cached) -> (i64, &str) {
    match state {
        Cached::Product { version, json } => (*version, json.as_str()),
        Cached::Absent => (ABSENT_VERSION, ABSENT_JSON),
    }
}

#[async_trait]
impl CacheRead for RedisProductCache {
    async fn get_many(&self, products: &[ProductId]) -> Result<Vec<Option<Cached>>, PipelineError> {
        let entries = within_budget("read", RedisProductCache::get_many(self, products)).await?;
        Ok(entries.into_iter().map(|e| e.map(cached)).collect())
    }

    #[tracing::instrument(skip_all, fields(fills = fills.len()))]
    async fn fill(&self, fills: &[CacheFill]) -> Result<Vec<FillOutcome>, PipelineError> {
        match fills {
            [] => Ok(Vec::new()),
            [one] => {
                let (version, json) = version_and_json(&one.state);
                let done = within_budget(
                    "fill",
                    self.populate(&one.product_id, version, json, one.ttl),
                )
                .await?;
                Ok(vec![match done {
                    PopulateOutcome::Stored => FillOutcome::Stored,
                    PopulateOutcome::Fenced { fence } => FillOutcome::Fenced { fence },
                    PopulateOutcome::AlreadyCurrent { cached } => {
                        FillOutcome::AlreadyCurrent { cached }
                    }
                }])
            }
            many => within_budget("fill", self.fill_pipelined(many)).await,
        }
    }
}

impl RedisProductCache {
    /// Runs `populate.lua` once per fill in one pipeline (one round trip). The script is
    /// loaded first in the same pipeline, so a restarted server's empty script cache does not
    /// fail it. Each script call is atomic on its own product's keys.
    async fn fill_pipelined(&self, fills: &[CacheFill]) -> Result<Vec<FillOutcome>, PipelineError> {
        let mut pipe = redis::pipe();
        pipe.load_script(&POPULATE).ignore();
        for f in fills {
            let (version, json) = version_and_json(&f.state);
            super::check_version(version)?;
            let mut call = POPULATE.prepare_invoke();
            call.key(self.keys.entry(&f.product_id))
                .key(self.keys.fence(&f.product_id))
                .arg(version)
                .arg(json)
                .arg(f.ttl.as_secs().max(1));
            pipe.invoke_script(&call);
        }
        let answers: Vec<(i64, i64)> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| from_redis("could not populate the cache", e))?;
        answers
            .into_iter()
            .map(|(code, other)| outcome(code, other))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{command, product, scripted};
    use super::*;
    use test_support::resp::Reply;

    fn fill(id: &str, state: Cached, ttl_secs: u64) -> CacheFill {
        CacheFill {
            product_id: product(id),
            state,
            ttl: Duration::from_secs(ttl_secs),
        }
    }

    #[tokio::test]
    async fn reads_tell_a_cached_absence_from_a_cached_product_and_a_miss() {
        let (cache, _stub) = scripted(vec![Reply::Array(vec![
            Reply::bulk("0|null"),
            Reply::bulk(r#"4|{"sku":"b"}"#),
            Reply::nil(),
        ])])
        .await;

        let got = CacheRead::get_many(&cache, &[product("a"), product("b"), product("c")])
            .await
            .expect("read");

        assert_eq!(
            got,
            [
                Some(Cached::Absent),
                Some(Cached::Product {
                    version: 4,
                    json: r#"{"sku":"b"}"#.into()
                }),
                None
            ]
        );
    }

    #[tokio::test]
    async fn a_cache_that_does_not_answer_in_time_sends_the_read_to_the_database() {
        let (cache, _stub) = scripted(vec![Reply::Silence]).await;
        let started = std::time::Instant::now();

        let e = CacheRead::get_many(&cache, &[product("a")])
            .await
            .expect_err("too slow");

        assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
        assert_eq!(e.message, "the cache took longer than 250 ms to read");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "cut by the budget, not the connection's timeout: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn no_fill_sends_nothing_and_one_fill_is_one_script_call() {
        let (cache, stub) = scripted(vec![Reply::ints(&[0, 8])]).await;

        let none = cache.fill(&[]).await.expect("nothing to do");
        let one = cache
            .fill(&[fill("a", Cached::Absent, 30)])
            .await
            .expect("filled");

        assert!(none.is_empty());
        assert_eq!(one, [FillOutcome::Fenced { fence: 8 }]);
        let p = product("a");
        assert_eq!(
            stub.commands(),
            [command(&[
                "EVALSHA",
                POPULATE.get_hash(),
                "2",
                &cache.keys.entry(&p),
                &cache.keys.fence(&p),
                "0",
                "null",
                "30"
            ])]
        );
    }

    #[tokio::test]
    async fn one_fill_reports_what_the_script_did() {
        let (cache, _stub) = scripted(vec![Reply::ints(&[1, 3]), Reply::ints(&[2, 6])]).await;
        let product_3 = Cached::Product {
            version: 3,
            json: "{}".into(),
        };

        let stored = cache.fill(&[fill("a", product_3.clone(), 30)]).await;
        let current = cache.fill(&[fill("a", product_3, 30)]).await;

        assert_eq!(stored.expect("filled"), [FillOutcome::Stored]);
        assert_eq!(
            current.expect("filled"),
            [FillOutcome::AlreadyCurrent { cached: 6 }]
        );
    }

    #[tokio::test]
    async fn many_fills_load_the_script_then_call_it_once_each_in_one_pipeline() {
        let (cache, stub) = scripted(vec![
            Reply::bulk(POPULATE.get_hash()),
            Reply::ints(&[1, 3]),
            Reply::ints(&[0, 9]),
            Reply::ints(&[2, 5]),
        ])
        .await;
        let fills = [
            fill(
                "a",
                Cached::Product {
                    version: 3,
                    json: r#"{"sku":"a"}"#.into(),
                },
                30,
            ),
            fill("b", Cached::Absent, 0),
            fill(
                "c",
                Cached::Product {
                    version: 4,
                    json: "{}".into(),
                },
                30,
            ),
        ];

        let got = cache.fill(&fills).await.expect("filled");

        assert_eq!(
            got,
            [
                FillOutcome::Stored,
                FillOutcome::Fenced { fence: 9 },
                FillOutcome::AlreadyCurrent { cached: 5 }
            ]
        );
        let sent = stub.commands();
        assert_eq!(sent.len(), 4, "{sent:?}");
        assert_eq!(sent[0][..2], ["SCRIPT", "LOAD"]);
        assert_eq!(sent[0][2], include_str!("populate.lua"));
        let (a, b) = (product("a"), product("b"));
        let sha = POPULATE.get_hash();
        assert_eq!(
            sent[1],
            command(&[
                "EVALSHA",
                sha,
                "2",
                &cache.keys.entry(&a),
                &cache.keys.fence(&a),
                "3",
                r#"{"sku":"a"}"#,
                "30"
            ])
        );
        assert_eq!(
            sent[2],
            command(&[
                "EVALSHA",
                sha,
                "2",
                &cache.keys.entry(&b),
                &cache.keys.fence(&b),
                "0",
                "null",
                "1"
            ])
        );
    }

    #[tokio::test]
    async fn a_pipeline_with_an_unknown_answer_or_a_bad_version_fails_as_a_bug() {
        let (cache, stub) = scripted(vec![
            Reply::bulk(POPULATE.get_hash()),
            Reply::ints(&[1, 3]),
            Reply::ints(&[7, 0]),
        ])
        .await;
        let product_3 = Cached::Product {
            version: 3,
            json: "{}".into(),
        };
        let too_new = Cached::Product {
            version: super::super::MAX_VERSION + 1,
            json: "{}".into(),
        };

        let unknown = cache
            .fill(&[
                fill("a", product_3.clone(), 30),
                fill("b", product_3.clone(), 30),
            ])
            .await
            .expect_err("unknown answer");
        let sent_before = stub.commands().len();
        let refused = cache
            .fill(&[fill("a", product_3, 30), fill("b", too_new, 30)])
            .await
            .expect_err("version out of range");

        assert_eq!(unknown.kind, ErrorKind::Internal);
        assert_eq!(unknown.message, "populate script answered 7");
        assert_eq!(refused.kind, ErrorKind::Internal);
        assert_eq!(stub.commands().len(), sent_before, "nothing sent");
    }

    #[tokio::test]
    async fn a_busy_server_fails_a_pipelined_fill_as_transient() {
        let (cache, _stub) = scripted(vec![
            Reply::bulk(POPULATE.get_hash()),
            Reply::error("BUSY Redis is busy running a script"),
            Reply::ints(&[1, 3]),
        ])
        .await;
        let absent = || fill("a", Cached::Absent, 30);

        let e = cache.fill(&[absent(), absent()]).await.expect_err("busy");

        assert_eq!(e.kind, ErrorKind::DependencyUnavailable, "{}", e.detailed());
    }

    #[test]
    fn script_answers_map_to_fill_outcomes() {
        assert_eq!(outcome(1, 4).ok(), Some(FillOutcome::Stored));
        assert_eq!(outcome(0, 7).ok(), Some(FillOutcome::Fenced { fence: 7 }));
        assert_eq!(
            outcome(2, 9).ok(),
            Some(FillOutcome::AlreadyCurrent { cached: 9 })
        );
        assert_eq!(
            outcome(5, 0).expect_err("unknown").kind,
            ErrorKind::Internal
        );
    }

    #[test]
    fn a_negative_entry_is_the_absent_version_with_null() {
        assert_eq!(version_and_json(&Cached::Absent), (ABSENT_VERSION, "null"));
        assert_eq!(
            cached(CacheEntry::parse("0|null").expect("valid")),
            Cached::Absent
        );
        assert_eq!(
            cached(CacheEntry::parse("3|{}").expect("valid")),
            Cached::Product {
                version: 3,
                json: "{}".into()
            }
        );
    }
}
