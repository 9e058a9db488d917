//! `inventory rebuild-projection`: the projection again from the event store alone, built
//! beside the live one and switched in (see `inventory::adapters::postgres::rebuild_projection`).

use crate::exit::{Outcome, WithOutcome as _};
use crate::target::{Outputs, connect_database};
use anyhow::{Context as _, Result};
use inventory::adapters::postgres::rebuild_projection;
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
    /// Only count the events and the current projection; change nothing.
    #[arg(long)]
    pub dry_run: bool,
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
    let outputs = Outputs::read(&crate::target::TargetArgs {
        outputs: args.outputs.clone(),
        ..Default::default()
    })?;
    let db = connect_database(&args.database_url, &outputs).await?;
    let (events, offers, products) = counts(&db).await.or_exit(Outcome::ServiceFailed)?;
    eprintln!(
        "rebuild-projection: the event store holds {events} events; the projection {offers} offers of {products} products"
    );
    if args.dry_run {
        eprintln!("rebuild-projection: dry run, nothing changed");
        return Ok(Outcome::Done);
    }
    let started = std::time::Instant::now();
    let report = rebuild_projection(&db)
        .await
        .context("rebuilding the projection")
        .or_exit(Outcome::ServiceFailed)?;
    eprintln!(
        "rebuild-projection: replayed {} events ({} of them appended while it ran) into {} offers of {} products and switched over in {:.1} s (before: {offers} offers of {products} products)",
        report.events,
        report.caught_up,
        report.offers,
        report.products,
        started.elapsed().as_secs_f64()
    );
    Ok(Outcome::Done)
}
