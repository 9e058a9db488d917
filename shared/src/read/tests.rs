//! The read path on in-memory ports (`crate::testing`): a cache with the same fence rules as
//! the Redis scripts, and a projection that counts its queries and can run a writer between
//! load and fill.

use super::*;
use crate::error::ErrorKind;
use crate::testing::{ABSENT_VERSION, CacheEntry, MemoryProductCache, MemoryProductReader};
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};

fn pid(s: &str) -> ProductId {
    ProductId::parse(s).expect("valid id")
}

fn view(id: &str, version: i64) -> ProductView {
    ProductView {
        product_id: pid(id),
        version,
        updated_at: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid"),
        total_quantity: version * 10,
        best_price: None,
        best_price_currency: None,
        best_price_supplier: None,
        supplier_count: 0,
        suppliers: Vec::new(),
    }
}

fn reads(projection: &Arc<MemoryProductReader>, cache: &Arc<MemoryProductCache>) -> ProductReads {
    ProductReads::new(projection.clone(), cache.clone(), ReadPolicy::default())
}

fn version_of(read: &BatchRead, i: usize) -> Option<i64> {
    read.products[i].product.as_ref().map(|p| p.version)
}

#[tokio::test]
async fn a_miss_reads_the_database_once_and_caches_the_product_with_its_version() {
    let projection = Arc::new(MemoryProductReader::with(&[view("a", 3)]));
    let cache = Arc::new(MemoryProductCache::default());

    let read = reads(&projection, &cache)
        .read_products(&[pid("a")])
        .await
        .expect("read");

    assert_eq!(read.products[0].source, Source::Database);
    assert_eq!(version_of(&read, 0), Some(3));
    assert_eq!(
        (read.stats.misses, read.stats.db_queries, read.stats.stored),
        (1, 1, 1)
    );
    let entry = cache.entry(&pid("a")).expect("cached");
    assert_eq!(
        (entry.version, entry.ttl),
        (3, ReadPolicy::default().entry_ttl)
    );
    let Cached::Product { json, .. } = entry.state else {
        panic!("a product entry")
    };
    assert_eq!(json, view("a", 3).to_json().expect("json"));
    assert_eq!(
        read.products[0].product.as_ref().map(|p| p.json.clone()),
        Some(json)
    );
}

#[tokio::test]
async fn a_hit_is_served_from_the_cache_without_the_database() {
    let projection = Arc::new(MemoryProductReader::with(&[view("a", 3)]));
    let cache = Arc::new(MemoryProductCache::default());
    let reads = reads(&projection, &cache);
    reads.read_products(&[pid("a")]).await.expect("warm");

    let read = reads.read_products(&[pid("a")]).await.expect("read");

    assert_eq!(read.products[0].source, Source::Cache);
    assert_eq!(version_of(&read, 0), Some(3));
    assert_eq!(projection.queries(), 1, "only the first read queried");
    assert_eq!(
        (read.stats.hits, read.stats.misses, read.stats.db_queries),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn an_unknown_product_is_cached_as_absent_for_the_short_ttl_and_then_answered_by_the_cache() {
    let projection = Arc::new(MemoryProductReader::default());
    let cache = Arc::new(MemoryProductCache::default());
    let reads = reads(&projection, &cache);

    let first = reads.read_products(&[pid("ghost")]).await.expect("read");
    let second = reads.read_products(&[pid("ghost")]).await.expect("read");

    assert_eq!(first.products[0].product, None);
    assert_eq!(
        cache.entry(&pid("ghost")),
        Some(CacheEntry {
            version: ABSENT_VERSION,
            state: Cached::Absent,
            ttl: ReadPolicy::default().absent_ttl
        })
    );
    assert_eq!(second.products[0].product, None);
    assert_eq!(second.products[0].source, Source::Cache);
    assert_eq!((second.stats.absent_hits, second.stats.db_queries), (1, 0));
}

#[tokio::test]
async fn a_product_created_after_a_negative_entry_shows_once_its_invalidation_ran() {
    let projection = Arc::new(MemoryProductReader::default());
    let cache = Arc::new(MemoryProductCache::default());
    let reads = reads(&projection, &cache);
    reads
        .read_products(&[pid("new")])
        .await
        .expect("negative cached");

    projection.put(view("new", 1));
    cache.invalidate(&pid("new"), 1);
    let read = reads.read_products(&[pid("new")]).await.expect("read");

    assert_eq!(version_of(&read, 0), Some(1));
}

#[tokio::test]
async fn a_negative_loaded_before_the_product_was_created_is_fenced() {
    let projection = Arc::new(MemoryProductReader::default());
    let cache = Arc::new(MemoryProductCache::default());
    let (p, c) = (projection.clone(), cache.clone());
    projection.after_next_load(move || {
        p.put(view("late", 1));
        c.invalidate(&pid("late"), 1);
    });
    let reads = reads(&projection, &cache);

    let racing = reads.read_products(&[pid("late")]).await.expect("read");
    let next = reads.read_products(&[pid("late")]).await.expect("read");

    assert_eq!(
        racing.products[0].product, None,
        "it answers what it loaded"
    );
    assert_eq!(racing.stats.fenced, 1);
    assert_eq!(
        version_of(&next, 0),
        Some(1),
        "and caches nothing that would hide the product"
    );
}

#[tokio::test]
async fn a_reader_that_loaded_an_old_version_before_an_invalidation_caches_nothing() {
    let projection = Arc::new(MemoryProductReader::with(&[view("a", 1)]));
    let cache = Arc::new(MemoryProductCache::default());
    let (p, c) = (projection.clone(), cache.clone());
    projection.after_next_load(move || {
        p.put(view("a", 2));
        c.invalidate(&pid("a"), 2);
    });
    let reads = reads(&projection, &cache);

    let racing = reads.read_products(&[pid("a")]).await.expect("read");
    let next = reads.read_products(&[pid("a")]).await.expect("read");

    assert_eq!(version_of(&racing, 0), Some(1));
    assert_eq!(racing.stats.fenced, 1);
    assert_eq!(
        cache.entry(&pid("a")).map(|e| e.version),
        Some(2),
        "the next reader cached 2"
    );
    assert_eq!(version_of(&next, 0), Some(2));
}

#[tokio::test]
async fn a_batch_reads_the_cache_once_and_the_database_once_for_all_misses_in_the_order_asked() {
    let projection = Arc::new(MemoryProductReader::with(&[
        view("a", 1),
        view("b", 2),
        view("c", 3),
    ]));
    let cache = Arc::new(MemoryProductCache::default());
    let reads = reads(&projection, &cache);
    reads.read_products(&[pid("b")]).await.expect("warm b");
    let (gets, queries) = (cache.gets(), projection.queries());

    let read = reads
        .read_products(&[pid("c"), pid("b"), pid("x"), pid("a"), pid("c")])
        .await
        .expect("read");

    let ids: Vec<&str> = read
        .products
        .iter()
        .map(|p| p.product_id.as_str())
        .collect();
    assert_eq!(ids, ["c", "b", "x", "a"], "duplicates once, order kept");
    let versions: Vec<Option<i64>> = (0..4).map(|i| version_of(&read, i)).collect();
    assert_eq!(versions, [Some(3), Some(2), None, Some(1)]);
    assert_eq!(read.products[1].source, Source::Cache);
    assert_eq!(cache.gets() - gets, 1);
    assert_eq!(projection.queries() - queries, 1);
    assert_eq!(
        (read.stats.hits, read.stats.misses, read.stats.stored),
        (1, 3, 3)
    );
}

#[tokio::test]
async fn more_than_the_batch_limit_is_refused_before_any_io() {
    let projection = Arc::new(MemoryProductReader::default());
    let cache = Arc::new(MemoryProductCache::default());
    let ids: Vec<ProductId> = (0..=MAX_BATCH_PRODUCTS)
        .map(|i| pid(&format!("p{i}")))
        .collect();

    let e = reads(&projection, &cache)
        .read_products(&ids)
        .await
        .expect_err("too many");

    assert_eq!(e.kind, ErrorKind::InvalidPayload);
    assert_eq!(cache.gets(), 0);
}

#[tokio::test]
async fn a_cache_that_is_down_is_read_around_and_skipped_for_the_pause() {
    let projection = Arc::new(MemoryProductReader::with(&[view("a", 1)]));
    let cache = Arc::new(MemoryProductCache::default());
    cache.fail(Some(ErrorKind::DependencyUnavailable));
    let reads = reads(&projection, &cache);

    let first = reads.read_products(&[pid("a")]).await.expect("served");
    let second = reads.read_products(&[pid("a")]).await.expect("served");

    assert_eq!(version_of(&first, 0), Some(1));
    assert_eq!(
        (first.stats.cache_errors, first.stats.cache_skipped),
        (1, false)
    );
    assert_eq!(cache.fills(), 0, "no fill after a failed read");
    assert_eq!(version_of(&second, 0), Some(1));
    assert!(second.stats.cache_skipped);
    assert_eq!(cache.gets(), 1, "paused: the second read skipped it");
}

#[tokio::test]
async fn after_the_pause_the_cache_is_used_again() {
    let projection = Arc::new(MemoryProductReader::with(&[view("a", 1)]));
    let cache = Arc::new(MemoryProductCache::default());
    let policy = ReadPolicy {
        cache_pause: Duration::ZERO,
        ..ReadPolicy::default()
    };
    let reads = ProductReads::new(projection.clone(), cache.clone(), policy);
    cache.fail(Some(ErrorKind::DependencyUnavailable));
    reads.read_products(&[pid("a")]).await.expect("served");

    cache.fail(None);
    let read = reads.read_products(&[pid("a")]).await.expect("served");

    assert!(!read.stats.cache_skipped);
    assert_eq!(read.stats.stored, 1);
}

#[tokio::test]
async fn a_failing_fill_still_serves_the_product_and_a_bug_does_not_pause_the_cache() {
    let projection = Arc::new(MemoryProductReader::with(&[view("a", 1)]));
    let cache = Arc::new(MemoryProductCache::default());
    let reads = reads(&projection, &cache);
    // get_many succeeds (nothing cached), then the fill fails with a non-transient error.
    let cache_for_hook = cache.clone();
    projection.after_next_load(move || cache_for_hook.fail(Some(ErrorKind::Internal)));

    let read = reads.read_products(&[pid("a")]).await.expect("served");
    cache.fail(None);
    let next = reads.read_products(&[pid("a")]).await.expect("served");

    assert_eq!(version_of(&read, 0), Some(1));
    assert_eq!(read.stats.cache_errors, 1);
    assert!(
        !next.stats.cache_skipped,
        "an Internal error is logged, not a reason to pause"
    );
}

#[tokio::test]
async fn a_database_failure_on_a_miss_is_the_reads_error() {
    let projection = Arc::new(MemoryProductReader::failing(
        ErrorKind::DependencyUnavailable,
    ));
    let cache = Arc::new(MemoryProductCache::default());

    let e = reads(&projection, &cache)
        .read_products(&[pid("a")])
        .await
        .expect_err("db down");

    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
}

fn history_event(seq: i64) -> HistoryEvent {
    HistoryEvent {
        seq,
        supplier_id: crate::domain::ids::SupplierId::unspecified(),
        quantity: crate::domain::money::Quantity::new(seq).expect("valid"),
        price: crate::domain::money::Price::parse_decimal("1.5").expect("valid"),
        currency: crate::domain::money::Currency::USD,
        occurred_at: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid"),
        recorded_at: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 1)
            .single()
            .expect("valid"),
    }
}

#[tokio::test]
async fn history_pages_go_newest_first_and_say_where_the_next_page_starts() {
    let projection = Arc::new(
        MemoryProductReader::default()
            .with_history(pid("h"), [3, 8, 5, 13, 21].map(history_event).to_vec()),
    );
    let reads = reads(&projection, &Arc::new(MemoryProductCache::default()));
    let q = |before, limit| HistoryQuery::new(before, limit).expect("valid query");

    let first = reads
        .read_history(&pid("h"), q(None, 2))
        .await
        .expect("read")
        .expect("known");
    let second = reads
        .read_history(&pid("h"), q(first.next_before, 2))
        .await
        .expect("read")
        .expect("known");
    let last = reads
        .read_history(&pid("h"), q(second.next_before, 2))
        .await
        .expect("read")
        .expect("known");
    let past_the_end = reads
        .read_history(&pid("h"), q(Some(3), 2))
        .await
        .expect("read");
    let unknown = reads
        .read_history(&pid("nobody"), q(None, 2))
        .await
        .expect("read");

    let seqs = |p: &HistoryPage| p.events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!((seqs(&first), first.next_before), (vec![21, 13], Some(13)));
    assert_eq!((seqs(&second), second.next_before), (vec![8, 5], Some(5)));
    assert_eq!((seqs(&last), last.next_before), (vec![3], None));
    assert_eq!(
        past_the_end.map(|p| p.events.len()),
        Some(0),
        "a known cursor past the end is an empty page"
    );
    assert_eq!(unknown, None);
}

#[tokio::test]
async fn once_days_left_the_database_the_last_page_says_since_when_events_are_held() {
    let since = Utc
        .with_ymd_and_hms(2026, 11, 6, 0, 0, 0)
        .single()
        .expect("valid");
    let projection = Arc::new(
        MemoryProductReader::with(&[view("gone", 4)])
            .with_history(pid("h"), [3, 8].map(history_event).to_vec())
            .with_retained_since(since),
    );
    let reads = reads(&projection, &Arc::new(MemoryProductCache::default()));
    let q = |before, limit| HistoryQuery::new(before, limit).expect("valid query");

    let first = reads
        .read_history(&pid("h"), q(None, 1))
        .await
        .expect("read")
        .expect("known");
    let last = reads
        .read_history(&pid("h"), q(first.next_before, 1))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(first.retained_since, None, "only the last page says it");
    assert_eq!(last.retained_since, Some(since));
    assert!(
        serde_json::to_string(&last)
            .expect("json")
            .contains("\"retained_since\":\"2026-11-06T00:00:00Z\"")
    );

    let all_retired = reads
        .read_history(&pid("gone"), q(None, 5))
        .await
        .expect("read");
    assert_eq!(
        all_retired.map(|p| (p.events.len(), p.retained_since)),
        Some((0, Some(since))),
        "a product whose every event left has a page that says so, not a 404"
    );
    let unknown = reads
        .read_history(&pid("nobody"), q(None, 5))
        .await
        .expect("read");
    assert_eq!(unknown, None, "an unknown product is still unknown");
}

#[test]
fn history_queries_are_bounded() {
    assert_eq!(HistoryQuery::new(None, 0), Err(HistoryQueryError::Limit(0)));
    let too_many = HistoryQuery::new(None, MAX_HISTORY_LIMIT + 1).expect_err("too many");
    assert_eq!(too_many.parameter(), "limit");
    let before = HistoryQuery::new(Some(0), 10).expect_err("before the first event");
    assert_eq!(before.parameter(), "before");
    assert_eq!(
        before.to_string(),
        "before must be a positive event position, got 0"
    );
    assert_eq!(HistoryQuery::default().limit, DEFAULT_HISTORY_LIMIT);
    assert!(HistoryQuery::new(Some(1), MAX_HISTORY_LIMIT).is_ok());
}

#[test]
fn a_view_lists_only_its_own_offers_by_supplier() {
    use crate::domain::projection::ProductSummary;
    let summary = ProductSummary {
        product_id: pid("a"),
        total_quantity: 3,
        best_price: None,
        best_price_currency: None,
        best_price_supplier: None,
        supplier_count: 2,
        version: 9,
        updated_at: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid"),
    };
    let offer = |product: &str, supplier: &str| crate::domain::projection::Offer {
        product_id: pid(product),
        supplier_id: crate::domain::ids::SupplierId::parse(supplier).expect("valid"),
        quantity: crate::domain::money::Quantity::new(1).expect("valid"),
        price: crate::domain::money::Price::parse_decimal("2.50").expect("valid"),
        currency: crate::domain::money::Currency::USD,
        occurred_at: summary.updated_at,
        update_key: crate::domain::event::UpdateKey::try_from("a".repeat(64)).expect("valid"),
        event_seq: 9,
    };

    let offers = [offer("a", "z"), offer("b", "x"), offer("a", "m")];
    let v = ProductView::new(summary, &offers);

    let suppliers: Vec<&str> = v.suppliers.iter().map(|s| s.supplier_id.as_str()).collect();
    assert_eq!(suppliers, ["m", "z"]);
    let json: serde_json::Value = serde_json::from_str(&v.to_json().expect("json")).expect("valid");
    assert_eq!(json["version"], 9);
    assert_eq!(
        json["suppliers"][0]["price"], "2.5",
        "prices are exact decimal strings"
    );
}

/// A cache that answers every read with no entries at all, whatever it was asked.
#[derive(Default)]
struct ShortAnsweringCache {
    gets: AtomicUsize,
}

#[async_trait]
impl CacheRead for ShortAnsweringCache {
    async fn get_many(&self, _: &[ProductId]) -> Result<Vec<Option<Cached>>, PipelineError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(Vec::new())
    }

    async fn fill(&self, fills: &[CacheFill]) -> Result<Vec<FillOutcome>, PipelineError> {
        Ok(fills.iter().map(|_| FillOutcome::Stored).collect())
    }
}

#[tokio::test]
async fn a_cache_answer_for_the_wrong_number_of_products_is_not_trusted_and_the_database_answers() {
    let projection = Arc::new(MemoryProductReader::with(&[view("a", 2), view("b", 5)]));
    let cache = Arc::new(ShortAnsweringCache::default());
    let reads = ProductReads::new(projection.clone(), cache.clone(), ReadPolicy::default());
    assert_eq!(reads.policy(), &ReadPolicy::default());

    let read = reads
        .read_products(&[pid("b"), pid("a")])
        .await
        .expect("served from the database");

    assert_eq!(
        read.products
            .iter()
            .map(|p| (p.source, p.product.as_ref().map(|v| v.version)))
            .collect::<Vec<_>>(),
        vec![(Source::Database, Some(5)), (Source::Database, Some(2))],
        "every product from the database, in the order asked"
    );
    assert_eq!((read.stats.cache_errors, read.stats.hits), (1, 0));
    assert_eq!(projection.queries(), 1);

    // A wrong-sized answer is a bug to log, not an outage: the cache is not paused.
    let again = reads.read_products(&[pid("a")]).await.expect("served");
    assert!(!again.stats.cache_skipped);
    assert_eq!(cache.gets.load(Ordering::SeqCst), 2);
    assert!(format!("{reads:?}").contains("ProductReads"));
}
