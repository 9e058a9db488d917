//! `inventory rebuild-projection`: the projection again from the event store alone, built
//! beside the live one and switched in (see `inventory::adapters::postgres::rebuild_projection`).

use crate::exit::{Outcome, WithOutcome as _};
use crate::target::{Outputs, connect_database, sdk_config};
use anyhow::{Context as _, Result};
use inventory::adapters::postgres::{
    RebuildFrom, SnapshotInfo, latest_snapshot, rebuild_projection_from,
};
use sea_orm::{ConnectionTrait as _, DatabaseConnection, Statement};
use std::path::PathBuf;

/// Options of `inventory rebuild-projection`.
#[derive(Debug, Clone, clap::Args)]
pub struct RebuildProjectionArgs {
    /// PostgreSQL URL. Default: LocalDatabaseUrl from --outputs, else the functions' variables
    /// (DATABASE_URL, or DB_HOST, DB_PORT, DB_NAME, DB_SECRET_ARN and DB_TLS_CA_FILE).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// A stack outputs file to read LocalDatabaseUrl from.
    #[arg(long, value_name = "FILE")]
    pub outputs: Option<PathBuf>,
    /// Only count the events and the current projection, and name the snapshot a rebuild
    /// would start from; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replay every event from the first, ignoring the snapshots. Not needed after a change
    /// of the projection rules (a rebuild uses only snapshots taken under its own rules).
    #[arg(long)]
    pub from_scratch: bool,
}

/// The newest snapshot this build would start from, or why none is known. The functions'
/// login may not read the snapshots (only the rebuild does), so a dry run with it says so.
async fn snapshot_line(db: &DatabaseConnection) -> Result<String> {
    let readable = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT CASE WHEN to_regclass('projection_snapshots') IS NULL THEN false \
             ELSE has_table_privilege('projection_snapshots', 'SELECT') END AS ok",
        ))
        .await
        .context("checking access to the snapshots")?
        .map(|r| r.try_get::<bool>("", "ok"))
        .transpose()?
        .unwrap_or(false);
    if !readable {
        return Ok(
            "the snapshots are not readable with this login (or the migrations are not current)"
                .to_owned(),
        );
    }
    Ok(
        match latest_snapshot(db).await.context("reading the snapshots")? {
            Some(s) => describe(&s),
            None => "no snapshot of these projection rules: a rebuild replays from the first event"
                .to_owned(),
        },
    )
}

fn describe(s: &SnapshotInfo) -> String {
    format!(
        "snapshot {} holds every event up to seq {} ({} offers of {} products, taken {})",
        s.id,
        s.up_to_seq,
        s.offers,
        s.products,
        s.taken_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Events, offers and products, as the tables hold them now.
async fn counts(db: &DatabaseConnection) -> Result<(i64, i64, i64)> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT (SELECT count(*) FROM inventory_events) AS events, \
                    (SELECT count(*) FROM product_offers) AS offers, \
                    (SELECT count(*) FROM product_summaries) AS products",
        ))
        .await
        .context("counting the event store and the projection")?
        .context("the count query returned no row")?;
    Ok((
        row.try_get("", "events")?,
        row.try_get("", "offers")?,
        row.try_get("", "products")?,
    ))
}

pub async fn run(args: RebuildProjectionArgs) -> Result<Outcome> {
    let target = crate::target::TargetArgs {
        outputs: args.outputs.clone(),
        ..Default::default()
    };
    let outputs = Outputs::read(&target)?;
    let conf = sdk_config(&target, &outputs).await;
    let db = connect_database(&args.database_url, &outputs, &conf).await?;
    let (events, offers, products) = counts(&db).await.or_exit(Outcome::ServiceFailed)?;
    eprintln!(
        "rebuild-projection: the event store holds {events} events; the projection {offers} offers of {products} products"
    );
    if args.dry_run {
        if !args.from_scratch {
            let line = snapshot_line(&db).await.or_exit(Outcome::ServiceFailed)?;
            eprintln!("rebuild-projection: {line}");
        }
        eprintln!("rebuild-projection: dry run, nothing changed");
        return Ok(Outcome::Done);
    }
    let from = if args.from_scratch {
        RebuildFrom::FirstEvent
    } else {
        RebuildFrom::LatestSnapshot
    };
    let started = std::time::Instant::now();
    let report = rebuild_projection_from(&db, from, |_| std::future::ready(()))
        .await
        .context("rebuilding the projection")
        .or_exit(Outcome::ServiceFailed)?;
    let origin = report.from_snapshot.map_or_else(
        || "the first event".to_owned(),
        |s| format!("snapshot {} (seq {})", s.id, s.up_to_seq),
    );
    eprintln!(
        "rebuild-projection: replayed {} events after {origin} ({} of them appended while it ran) into {} offers of {} products and switched over in {:.1} s (before: {offers} offers of {products} products)",
        report.events,
        report.caught_up,
        report.offers,
        report.products,
        started.elapsed().as_secs_f64()
    );
    if let Some(s) = &report.snapshot {
        eprintln!("rebuild-projection: {}, for the next rebuild", describe(s));
    }
    Ok(Outcome::Done)
}
