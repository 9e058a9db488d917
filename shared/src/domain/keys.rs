//! Key schemes: where a chunk is archived in S3, where a supplier's rejections are written,
//! and where a product is cached in Redis.

use crate::domain::ids::ProductId;
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

/// The S3 key of one supplier's rejections from one chunk:
/// `rejections/{account}/{supplier}/{last arrival}-{shard}-{first sequence}.jsonl`.
///
/// The account prefix is what a supplier's AWS account may read (the bucket policy names
/// `rejections/${aws:PrincipalAccount}/`). The time is the arrival of the batch's *last*
/// record, written `YYYYMMDDTHHMMSS.ffffffZ` so keys sort by it: every record that arrived at
/// or after `t` is in an object whose key sorts at or after [`RejectionKey::since`]`(t)`, so a
/// reader lists from there. Deterministic per chunk: a retried validate overwrites its objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RejectionKey(String);

impl RejectionKey {
    pub const PREFIX: &'static str = "rejections/";
    const TIME: &'static str = "%Y%m%dT%H%M%S%.6fZ";

    pub fn for_batch(
        account: &str,
        supplier: &str,
        last_arrival: DateTime<Utc>,
        shard_id: &str,
        first_sequence: &str,
    ) -> Self {
        Self(format!(
            "{}{}-{shard_id}-{first_sequence}.jsonl",
            Self::supplier_prefix(account, supplier),
            last_arrival.format(Self::TIME),
        ))
    }

    /// Where one supplier's objects are: `rejections/{account}/{supplier}/`.
    pub fn supplier_prefix(account: &str, supplier: &str) -> String {
        format!("{}{account}/{supplier}/", Self::PREFIX)
    }

    /// The key to list after (S3 `StartAfter`) for the supplier's records that arrived at or
    /// after `since`: it sorts before every key of such a record and after every other key.
    pub fn since(account: &str, supplier: &str, since: DateTime<Utc>) -> String {
        format!(
            "{}{}",
            Self::supplier_prefix(account, supplier),
            since.format(Self::TIME)
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RejectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the event store's exports go in the archive bucket (the retention; see
/// [`crate::domain::retention`]): `event-store/inventory_events/YYYY/MM/DD/part-NNNNN.jsonl.gz` and
/// `.../manifest.json`. Only schema-migrate writes and reads under it.
pub const EXPORT_PREFIX: &str = "event-store/inventory_events";

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

    #[test]
    fn rejection_keys_sort_by_the_last_arrival_so_a_reader_can_list_from_a_time() {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        let key = RejectionKey::for_batch(
            "111122223333",
            "acme",
            at("2026-12-06T10:15:00.5Z"),
            "shardId-000000000001",
            "4960",
        );
        assert_eq!(
            key.as_str(),
            "rejections/111122223333/acme/20261206T101500.500000Z-shardId-000000000001-4960.jsonl"
        );
        assert!(
            key.as_str()
                .starts_with(&RejectionKey::supplier_prefix("111122223333", "acme"))
        );
        // Listing after `since(t)` finds the batches whose last record arrived at or after t.
        for (last, since, listed) in [
            ("2026-12-06T10:15:00.5Z", "2026-12-06T10:15:00.5Z", true),
            (
                "2026-12-06T10:15:00.5Z",
                "2026-12-06T10:15:00.499999Z",
                true,
            ),
            (
                "2026-12-06T10:15:00.5Z",
                "2026-12-06T10:15:00.500001Z",
                false,
            ),
            ("2026-12-06T10:15:00Z", "2026-12-06T09:00:00Z", true),
            ("2026-12-06T09:59:59.999999Z", "2026-12-06T10:00:00Z", false),
            ("2027-01-01T00:00:00Z", "2026-12-31T23:59:59Z", true),
        ] {
            let key = RejectionKey::for_batch(
                "111122223333",
                "acme",
                at(last),
                "shardId-000000000000",
                "1",
            );
            let after = RejectionKey::since("111122223333", "acme", at(since));
            assert_eq!(
                key.as_str() > after.as_str(),
                listed,
                "last {last}, since {since}"
            );
        }
    }
}
