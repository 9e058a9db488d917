//! The event store over years, in real PostgreSQL (pg_partman) with the S3 emulator: the
//! database's size month by month under retention, with the clock driven through the data.
//!
//! The feed (the generator's Zipf-popular products, no duplicates or bad records) is spread
//! evenly over `--months` months that end today. Each simulated day's events and idempotency
//! keys are written with the rows persist writes (the same typed columns, a key per update,
//! one statement per chunk) but recorded at the simulated day, since PostgreSQL's `now()`
//! cannot be moved; the day's partition is made by pg_partman
//! (`create_partition_time`). At each month's end, as of that time: the keys past the dedup
//! window's margin are forgotten (the daily maintenance's prune), the projection is rebuilt
//! from its newest snapshot (the real rebuild), the retention job runs (the real
//! export-verify-drop, into an emulated bucket), and `VACUUM` stands in for autovacuum. Then it
//! prints the database's size (`pg_database_size`), the events and keys held and the days
//! exported.
//!
//! ```text
//! cargo run -p integration-tests --example retention -- --updates 2000000 --months 24 --retention-days 365
//! ```

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use clap::Parser as _;
use integration_tests::moto::{MotoS3 as _, MotoServer};
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::{
    prune_update_keys_as_of, rebuild_projection, retain_event_store,
};
use inventory::adapters::s3::ArchiveConfig;
use inventory::adapters::s3_export::S3ExportStore;
use inventory::domain::retention::RetentionConfig;
use inventory::domain::update::{SourcePosition, parse_record};
use inventory::feed::{FeedSpec, RecordKind, generate};
use inventory::{InventoryUpdate, InventoryUpdateReceived};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use std::time::Instant;

/// The example's arguments (after `--`).
#[derive(Debug, clap::Parser)]
#[command(about = "The event store's size month by month under retention")]
struct Args {
    /// Updates spread evenly over the months.
    #[arg(long, default_value_t = 2_000_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    updates: u64,
    /// Products the updates are spread over (Zipf).
    #[arg(long, default_value_t = 100_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    products: u64,
    /// Months simulated, ending today.
    #[arg(long, default_value_t = 24, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    months: u32,
    /// Days of events kept in the database before they are exported and dropped.
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    retention_days: u32,
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("no row")?
        .try_get_by_index::<i64>(0)
        .map_err(Into::into)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (updates, products, months, retention_days) = (
        usize::try_from(args.updates)?,
        usize::try_from(args.products)?,
        args.months,
        args.retention_days,
    );
    let started = Instant::now();
    let spec = FeedSpec {
        updates,
        products,
        duplicate_share: 0.0,
        out_of_order_share: 0.0,
        bad_share: 0.0,
        // 50 ms apart: every update's occurred_at inside the contract's window of its arrival
        // (now), so none is refused as too old or in the future.
        start: Utc::now() - Duration::days(3),
        ..FeedSpec::default()
    };
    let source = SourcePosition {
        shard_id: "shardId-000000000000".into(),
        sequence_number: "1".into(),
        arrived_at: Utc::now(),
    };
    let feed: Vec<InventoryUpdate> = generate(&spec)
        .iter()
        .filter(|r| r.kind == RecordKind::Update)
        .filter_map(|r| parse_record(&r.data, &source).ok())
        .collect();

    let today = Utc::now().date_naive();
    let first_day = today
        .checked_sub_months(chrono::Months::new(months))
        .context("a start date")?;
    let days: Vec<NaiveDate> = first_day.iter_days().take_while(|d| *d < today).collect();
    let per_day = feed.len().div_ceil(days.len());

    let t = TestDb::new().await?;
    let moto = MotoServer::shared()?;
    let bucket = moto.create_bucket("retention-sim").await?;
    let store = S3ExportStore::new(
        moto.s3_client(),
        ArchiveConfig {
            bucket,
            kms_key_id: None,
        },
    );
    let config = RetentionConfig::new(retention_days)?;
    println!(
        "{} updates of {products} products over {} days ({first_day} to {today}), {per_day} a day; retention {retention_days} days",
        feed.len(),
        days.len()
    );
    println!(
        "{:<8} {:>8} {:>10} {:>8} {:>9} {:>8} {:>9} {:>10} {:>9} {:>10} {:>7}",
        "month",
        "db MB",
        "events MB",
        "keys MB",
        "proj. MB",
        "snap. MB",
        "events",
        "days held",
        "days gone",
        "exported",
        "secs"
    );

    let mut chunks = feed.chunks(per_day);
    let mut exported = 0u64;
    let mut month_start = 0;
    while month_start < days.len() {
        let month = days[month_start].month();
        let month_days: Vec<NaiveDate> = days[month_start..]
            .iter()
            .copied()
            .take_while(|d| d.month() == month)
            .collect();
        month_start += month_days.len();
        make_partitions(&t.db, &month_days).await?;
        for day in &month_days {
            if let Some(chunk) = chunks.next() {
                record_day(&t.db, *day, chunk).await?;
            }
        }
        let end = month_days
            .last()
            .context("a day")?
            .succ_opt()
            .context("a next day")?
            .and_hms_opt(0, 0, 0)
            .context("midnight")?
            .and_utc();
        let month_started = Instant::now();
        prune_update_keys_as_of(&t.db, end).await?;
        rebuild_projection(&t.db).await?;
        let report = retain_event_store(
            &t.db,
            &store,
            config,
            end,
            Instant::now() + std::time::Duration::from_secs(3600),
        )
        .await?;
        if !report.complete() {
            bail!("retention did not finish as of {end}: {report:?}");
        }
        exported += report.exported_events;
        t.db.execute_unprepared("VACUUM").await?;
        let mb = |sql: &'static str| {
            let db = t.db.clone();
            async move { Ok::<f64, anyhow::Error>(scalar(&db, sql).await? as f64 / 1e6) }
        };
        println!(
            "{:<8} {:>8.1} {:>10.1} {:>8.1} {:>9.1} {:>8.1} {:>9} {:>10} {:>9} {:>10} {:>7.1}",
            month_days[0].format("%Y-%m"),
            mb("SELECT pg_database_size(current_database())").await?,
            mb("SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM pg_inherits WHERE inhparent = 'inventory_events'::regclass").await?,
            mb("SELECT pg_total_relation_size('inventory_update_key_ids')").await?,
            mb("SELECT (pg_total_relation_size('product_offers') + pg_total_relation_size('product_summaries'))::bigint").await?,
            mb("SELECT (pg_total_relation_size('projection_snapshots') + pg_total_relation_size('projection_snapshot_offers') + pg_total_relation_size('projection_snapshot_summaries'))::bigint").await?,
            scalar(&t.db, "SELECT count(*) FROM inventory_events").await?,
            scalar(
                &t.db,
                &format!(
                    "SELECT count(*) FROM partman.show_partitions('public.inventory_events') p \
                     CROSS JOIN LATERAL partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename, p_parent_table => 'public.inventory_events') i \
                     WHERE i.child_start_time < '{}'",
                    end.to_rfc3339()
                )
            )
            .await?,
            scalar(&t.db, "SELECT count(*) FROM event_store_retired_days").await?,
            exported,
            month_started.elapsed().as_secs_f64()
        );
    }
    println!(
        "{exported} events exported, verified and dropped; every export read back with its count and checksum; {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    t.cleanup().await
}

/// The month's day partitions, made by pg_partman as its maintenance would have.
async fn make_partitions(db: &DatabaseConnection, days: &[NaiveDate]) -> Result<()> {
    let times: Vec<String> = days.iter().map(|d| format!("{d} 00:00:00+00")).collect();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT partman.create_partition_time('public.inventory_events', $1::text[]::timestamptz[], false)",
        [serde_json::to_string(&times)?
            .replace('[', "{")
            .replace(']', "}")
            .into()],
    ))
    .await?;
    Ok(())
}

/// One simulated day's updates: their keys first seen and their events recorded at noon that
/// day, in one statement per thousand (keys first, events for the new keys, as persist appends
/// them; persist locks the products in the statement that inserts the events).
async fn record_day(
    db: &DatabaseConnection,
    day: NaiveDate,
    updates: &[InventoryUpdate],
) -> Result<()> {
    let at: DateTime<Utc> = day.and_hms_opt(12, 0, 0).context("noon")?.and_utc() + Duration::zero();
    for batch in updates.chunks(1_000) {
        let rows: Vec<serde_json::Value> = batch
            .iter()
            .map(|u| {
                Ok(serde_json::json!({
                    "update_key": u.update_key.as_str(),
                    "product_id": u.product_id.as_str(),
                    "supplier_id": u.supplier_id.as_str(),
                    "occurred_at": u.occurred_at,
                    "quantity": u.quantity.get(),
                    "price": u.price.get().to_string(),
                    "currency": u.currency.as_str(),
                    "occurred_at_from_supplier": u.occurred_at_from_supplier,
                    "update_id": u.update_id.as_ref().map(|i| i.as_str()),
                    "source_shard_id": u.source.shard_id,
                    "source_sequence_number": u.source.sequence_number,
                    "source_arrived_at": u.source.arrived_at,
                }))
            })
            .collect::<Result<_>>()?;
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "WITH u AS (SELECT * FROM jsonb_to_recordset($1::jsonb) \
                 AS x(update_key text, product_id text, supplier_id text, occurred_at timestamptz, quantity bigint, \
                      price numeric, currency text, occurred_at_from_supplier boolean, update_id text, \
                      source_shard_id text, source_sequence_number text, source_arrived_at timestamptz)), \
             k AS (INSERT INTO inventory_update_key_ids (key_id, first_seen) \
                   SELECT left(update_key, 32)::uuid, $2 FROM u ON CONFLICT DO NOTHING RETURNING key_id) \
             INSERT INTO inventory_events (update_key, event_type, event_version, product_id, supplier_id, occurred_at, \
                 recorded_at, quantity, price, currency, occurred_at_from_supplier, update_id, source_shard_id, \
                 source_sequence_number, source_arrived_at) \
             SELECT u.update_key, $3, $4, u.product_id, u.supplier_id, u.occurred_at, $2, u.quantity, u.price, \
                 u.currency, u.occurred_at_from_supplier, u.update_id, u.source_shard_id, u.source_sequence_number, \
                 u.source_arrived_at \
             FROM u JOIN k ON k.key_id = left(u.update_key, 32)::uuid",
            [
                serde_json::Value::Array(rows).to_string().into(),
                at.into(),
                InventoryUpdateReceived::EVENT_TYPE.into(),
                InventoryUpdateReceived::EVENT_VERSION.into(),
            ],
        ))
        .await?;
    }
    Ok(())
}
