//! Key schemes: where a chunk is archived in S3, and where a product is cached in Redis.

use crate::ids::ProductId;
use chrono::{DateTime, Utc};
use std::fmt;

/// The S3 key of one chunk's archive object:
/// `raw/{stream}/dt=YYYY-MM-DD/hour=HH/{chunk}.jsonl.gz`.
///
/// Partitioned by the first record's arrival time (Athena/Glue style `dt=`/`hour=`), and
/// deterministic per chunk: a retried or redriven archive step overwrites its own object
/// instead of adding a second one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArchiveKey(String);

impl ArchiveKey {
    pub const PREFIX: &'static str = "raw/";

    pub fn for_chunk(stream: &str, first_arrival: DateTime<Utc>, chunk_name: &str) -> Self {
        Self(format!(
            "{}{stream}/dt={}/hour={}/{chunk_name}.jsonl.gz",
            Self::PREFIX,
            first_arrival.format("%Y-%m-%d"),
            first_arrival.format("%H"),
        ))
    }

    /// Where the fan-out parks a record too large to pass inline.
    pub fn for_oversized_record(stream: &str, shard_id: &str, sequence_number: &str) -> Self {
        Self(format!(
            "oversized/{stream}/{shard_id}/{sequence_number}.bin"
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArchiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Redis keys for the product cache, under a prefix per environment (or per test).
///
/// Per product there are two keys: the cached entry, and a *fence* holding the lowest version
/// that may still be cached. `cache-invalidate` raises the fence; a reader may populate the
/// entry only with a version at or above it. Product ids never contain `:`, so the keys of
/// two products never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKeys {
    prefix: String,
}

impl CacheKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn entry(&self, product: &ProductId) -> String {
        format!("{}product:{}", self.prefix, product)
    }

    pub fn fence(&self, product: &ProductId) -> String {
        format!("{}product:{}:fence", self.prefix, product)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn archive_keys_are_date_partitioned_and_deterministic() {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 24, 7, 30, 0)
            .single()
            .expect("valid");
        let k = ArchiveKey::for_chunk("inventory-updates-dev", t, "shard-0-c0");
        assert_eq!(
            k.as_str(),
            "raw/inventory-updates-dev/dt=2026-11-24/hour=07/shard-0-c0.jsonl.gz"
        );
        assert_eq!(
            k,
            ArchiveKey::for_chunk("inventory-updates-dev", t, "shard-0-c0")
        );
    }

    #[test]
    fn cache_keys_carry_the_prefix() {
        let keys = CacheKeys::new("dev:");
        let p = ProductId::parse("sku-1").expect("valid");
        assert_eq!(keys.entry(&p), "dev:product:sku-1");
        assert_eq!(keys.fence(&p), "dev:product:sku-1:fence");
    }
}
