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
    use super::*;

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
