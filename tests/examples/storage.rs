//! Bytes on disk per accepted update, in real PostgreSQL: feeds N updates (the generator's
//! Zipf-popular products, no duplicates or bad records) through the real write path
//! (`PgEventStore::append`, persist's own statements, chunks of 1,000) into a database of its
//! own, then prints heap, TOAST and each index of the event store and the projection, from
//! `pg_relation_size`, `pg_indexes_size` and `pg_total_relation_size`, what an event row takes
//! on average (`pg_column_size`), and one stored event.
//!
//! With `--rebuild`, it then times a projection rebuild from the first event, which leaves a
//! snapshot, feeds 1% more updates, and times a rebuild from that snapshot.
//!
//! ```text
//! cargo run -p integration-tests --example storage -- --updates 1000000 --products 100000
//! cargo run -p integration-tests --example storage -- --updates 1000000 --products 100000 --rebuild
//! ```

use anyhow::Result;
use chrono::Utc;
use clap::Parser as _;
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::{PgEventStore, RebuildFrom, rebuild_projection_from};
use inventory::domain::update::{SourcePosition, parse_record};
use inventory::feed::{FeedSpec, RecordKind, generate};
use inventory::ports::EventStore;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use std::time::Instant;

/// The example's arguments (after `--`).
#[derive(Debug, clap::Parser)]
#[command(about = "Bytes on disk per accepted update, in real PostgreSQL")]
struct Args {
    /// Updates to feed through the write path.
    #[arg(long, default_value_t = 1_000_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    updates: u64,
    /// Products the updates are spread over (Zipf).
    #[arg(long, default_value_t = 100_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    products: u64,
    /// Updates per append, as persist gets them in a chunk.
    #[arg(long, default_value_t = 1_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    chunk: u64,
    /// Then time a rebuild from the first event, feed 1% more, and time a rebuild from the
    /// snapshot the first one left.
    #[arg(long)]
    rebuild: bool,
}

async fn rows(db: &DatabaseConnection, sql: &str) -> Result<Vec<sea_orm::QueryResult>> {
    Ok(db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (updates, products, chunk) = (
        usize::try_from(args.updates)?,
        usize::try_from(args.products)?,
        usize::try_from(args.chunk)?,
    );
    let rebuild = args.rebuild;
    let later = if rebuild { updates / 100 } else { 0 };
    let spec = FeedSpec {
        updates: updates + later,
        products,
        duplicate_share: 0.0,
        out_of_order_share: 0.0,
        bad_share: 0.0,
        ..FeedSpec::default()
    };
    let t = TestDb::new().await?;
    let store = PgEventStore::new(t.db.clone());
    let started = Instant::now();
    let records = generate(&spec);
    let (first, rest) = records.split_at(updates.min(records.len()));
    let accepted = append_all(&store, first, chunk, started).await?;
    rows(
        &t.db,
        "VACUUM ANALYZE inventory_events, inventory_update_key_ids, product_offers, product_summaries",
    )
    .await?;
    println!(
        "{accepted} accepted updates of {products} products through PgEventStore::append (chunks of {chunk}) in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<34} {:>14} {:>12} {:>14} {:>14} {:>10}",
        "relation", "heap B", "toast B", "indexes B", "total B", "rows"
    );
    let sizes = rows(
        &t.db,
        "WITH rels AS ( \
            SELECT 'inventory_events' AS rel, relid FROM pg_partition_tree('inventory_events') WHERE isleaf \
            UNION ALL SELECT c.relname::text, c.oid FROM pg_class c \
            WHERE c.relname IN ('inventory_update_key_ids', 'product_offers', 'product_summaries') \
              AND c.relnamespace = 'public'::regnamespace) \
         SELECT rel, sum(pg_relation_size(c.oid))::bigint AS heap, \
            sum(coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0))::bigint AS toast, \
            sum(pg_indexes_size(c.oid))::bigint AS idx, sum(pg_total_relation_size(c.oid))::bigint AS total, \
            sum(greatest(c.reltuples, 0))::bigint AS n \
         FROM rels JOIN pg_class c ON c.oid = rels.relid GROUP BY rel ORDER BY 1",
    )
    .await?;
    let mut totals = std::collections::BTreeMap::new();
    for r in &sizes {
        let rel: String = r.try_get("", "rel")?;
        let (heap, toast, idx, total, n): (i64, i64, i64, i64, i64) = (
            r.try_get("", "heap")?,
            r.try_get("", "toast")?,
            r.try_get("", "idx")?,
            r.try_get("", "total")?,
            r.try_get("", "n")?,
        );
        println!("{rel:<34} {heap:>14} {toast:>12} {idx:>14} {total:>14} {n:>10}");
        totals.insert(rel, total);
    }
    for r in rows(
        &t.db,
        "SELECT i.indexrelid::regclass::text AS idx, pg_relation_size(i.indexrelid) AS size \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
         WHERE c.relname IN ('inventory_update_key_ids', 'product_offers', 'product_summaries') \
           AND c.relnamespace = 'public'::regnamespace \
         UNION ALL SELECT 'inventory_events_pkey (every partition)', sum(pg_relation_size(relid))::bigint \
         FROM pg_partition_tree('inventory_events_pkey') ORDER BY 1",
    )
    .await?
    {
        let (idx, size): (String, i64) = (r.try_get("", "idx")?, r.try_get("", "size")?);
        println!("  index {idx:<40} {size:>14}");
    }
    let per = |rel: &str| totals.get(rel).copied().unwrap_or(0) as f64 / accepted.max(1) as f64;
    println!(
        "bytes per accepted update: events {:.1} + keys {:.1}, projection {:.1} (offers {:.1} + summaries {:.1}), all {:.1}",
        per("inventory_events"),
        per("inventory_update_key_ids"),
        per("product_offers") + per("product_summaries"),
        per("product_offers"),
        per("product_summaries"),
        per("inventory_events")
            + per("inventory_update_key_ids")
            + per("product_offers")
            + per("product_summaries")
    );
    let cols = rows(
        &t.db,
        "SELECT avg(pg_column_size(e.*))::float8 AS tuple FROM inventory_events e",
    )
    .await?;
    if let Some(r) = cols.first() {
        let tuple: f64 = r.try_get("", "tuple")?;
        println!(
            "event row on average: {tuple:.1} B, its 24 B tuple header included, before the 4 B line pointer"
        );
    }
    if let Some(r) = rows(
        &t.db,
        "SELECT jsonb_strip_nulls(to_jsonb(e))::text AS e FROM inventory_events e LIMIT 1",
    )
    .await?
    .first()
    {
        println!("a stored event: {}", r.try_get::<String>("", "e")?);
    }
    if rebuild {
        let began = Instant::now();
        let full = rebuild_projection_from(&t.db, RebuildFrom::FirstEvent, |_| async {}).await?;
        let full_secs = began.elapsed().as_secs_f64();
        let more = append_all(&store, rest, chunk, Instant::now()).await?;
        let began = Instant::now();
        let from =
            rebuild_projection_from(&t.db, RebuildFrom::LatestSnapshot, |_| async {}).await?;
        let from_secs = began.elapsed().as_secs_f64();
        println!(
            "rebuild from the first event: {} events in {full_secs:.1} s; after {more} more updates, from the snapshot at seq {}: {} events in {from_secs:.1} s ({:.2}x the time)",
            full.events,
            from.from_snapshot.map_or(0, |s| s.up_to_seq),
            from.events,
            from_secs / full_secs.max(0.001)
        );
    }
    t.cleanup().await
}

/// Appends the feed's valid updates through the real write path, in chunks; how many were new.
async fn append_all(
    store: &PgEventStore,
    records: &[inventory::feed::FeedRecord],
    chunk: usize,
    started: Instant,
) -> Result<usize> {
    let mut accepted = 0;
    for (i, batch) in records.chunks(chunk).enumerate() {
        let source = SourcePosition {
            shard_id: "shardId-000000000000".into(),
            sequence_number: format!("{i}"),
            arrived_at: Utc::now(),
        };
        let parsed: Vec<_> = batch
            .iter()
            .filter(|r| r.kind == RecordKind::Update)
            .filter_map(|r| parse_record(&r.data, &source).ok())
            .collect();
        accepted += store.append(&parsed).await?.appended;
        if i % 100 == 0 {
            eprintln!(
                "{accepted} appended in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(accepted)
}
