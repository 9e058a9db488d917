//! The end state, read back from PostgreSQL, Redis and the S3 emulator, and its comparison
//! with what the feed must give (the domain's own projection of the feed).

use crate::stack::Outputs;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use flate2::read::GzDecoder;
use inventory::feed::Expectation;
use inventory::{CacheKeys, ProductId};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use std::collections::BTreeMap;
use std::io::Read as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRow {
    pub quantity: i64,
    pub price: Decimal,
    pub currency: String,
    pub occurred_at: DateTime<Utc>,
    pub update_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    pub total_quantity: i64,
    pub best_price: Option<Decimal>,
    pub best_price_currency: Option<String>,
    pub best_price_supplier: Option<String>,
    pub supplier_count: i32,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// What the pipeline left behind.
#[derive(Debug, Clone, Default)]
pub struct EndState {
    pub offers: BTreeMap<(String, String), OfferRow>,
    pub summaries: BTreeMap<String, SummaryRow>,
    pub events: u64,
    pub quarantined: BTreeMap<String, u64>,
    /// Cache fences (lowest cacheable version) per product that has one.
    pub fences: BTreeMap<String, i64>,
    pub archive_objects: u64,
    pub archived_records: u64,
}

fn q(sql: &str) -> Statement {
    Statement::from_string(DbBackend::Postgres, sql.to_owned())
}

pub async fn read(outputs: &Outputs, s3: &aws_sdk_s3::Client) -> Result<EndState> {
    let mut st = EndState::default();
    let db = Database::connect(&outputs.local_database_url)
        .await
        .context("connecting to the stack's database")?;
    for row in db.query_all_raw(q("SELECT product_id, supplier_id, quantity, price, currency, occurred_at, update_key FROM product_offers")).await? {
        st.offers.insert(
            (row.try_get("", "product_id")?, row.try_get("", "supplier_id")?),
            OfferRow {
                quantity: row.try_get("", "quantity")?,
                price: row.try_get("", "price")?,
                currency: row.try_get("", "currency")?,
                occurred_at: row.try_get("", "occurred_at")?,
                update_key: row.try_get("", "update_key")?,
            },
        );
    }
    let summaries = "SELECT product_id, total_quantity, best_price, best_price_currency, best_price_supplier, supplier_count, updated_at, version FROM product_summaries WHERE version > 0";
    for row in db.query_all_raw(q(summaries)).await? {
        st.summaries.insert(
            row.try_get("", "product_id")?,
            SummaryRow {
                total_quantity: row.try_get("", "total_quantity")?,
                best_price: row.try_get("", "best_price")?,
                best_price_currency: row.try_get("", "best_price_currency")?,
                best_price_supplier: row.try_get("", "best_price_supplier")?,
                supplier_count: row.try_get("", "supplier_count")?,
                updated_at: row.try_get("", "updated_at")?,
                version: row.try_get("", "version")?,
            },
        );
    }
    if let Some(row) = db
        .query_one_raw(q("SELECT count(*) AS n FROM inventory_events"))
        .await?
    {
        st.events = u64::try_from(row.try_get::<i64>("", "n")?).unwrap_or(0);
    }
    for row in db
        .query_all_raw(q(
            "SELECT reason_code, count(*) AS n FROM quarantined_records GROUP BY reason_code",
        ))
        .await?
    {
        st.quarantined.insert(
            row.try_get("", "reason_code")?,
            u64::try_from(row.try_get::<i64>("", "n")?).unwrap_or(0),
        );
    }
    db.close().await.ok();
    st.fences = fences(outputs, st.summaries.keys()).await?;
    (st.archive_objects, st.archived_records) = archive(s3, &outputs.archive_bucket_name).await?;
    Ok(st)
}

async fn fences<'a>(
    outputs: &Outputs,
    products: impl Iterator<Item = &'a String>,
) -> Result<BTreeMap<String, i64>> {
    let keys = CacheKeys::new(outputs.local_cache_prefix.clone());
    let client = redis::Client::open(outputs.local_redis_url.as_str())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let products: Vec<&String> = products.collect();
    let mut out = BTreeMap::new();
    for chunk in products.chunks(1_000) {
        let names: Vec<String> = chunk
            .iter()
            .filter_map(|p| ProductId::parse(p).ok())
            .map(|p| keys.fence(&p))
            .collect();
        let values: Vec<Option<i64>> = redis::cmd("MGET").arg(&names).query_async(&mut con).await?;
        for (p, v) in chunk.iter().zip(values) {
            if let Some(v) = v {
                out.insert((*p).clone(), v);
            }
        }
    }
    Ok(out)
}

/// Every archive object under `raw/`, as its key and its decompressed text (gzip JSON lines).
pub async fn archive_texts(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix("raw/")
            .set_continuation_token(token)
            .send()
            .await?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            let body = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes();
            let mut text = String::new();
            GzDecoder::new(&body[..])
                .read_to_string(&mut text)
                .with_context(|| format!("{key} is not gzip text"))?;
            out.push((key.to_owned(), text));
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Archive objects and the records in them.
async fn archive(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(u64, u64)> {
    let texts = archive_texts(s3, bucket).await?;
    let records = texts
        .iter()
        .map(|(_, text)| text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .sum();
    Ok((texts.len() as u64, records))
}

/// One way the end state differs from the expectation, by what differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A row of the projection (an offer or a product summary) is missing, not expected, or
    /// different.
    Projection(String),
    /// A count differs: events, quarantined records, records read or archived.
    Count(String),
    /// A product's cache fence is missing or below its version.
    CacheFence {
        product: String,
        fence: Option<i64>,
        version: i64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Projection(m) | Problem::Count(m) => f.write_str(m),
            Problem::CacheFence {
                product,
                fence,
                version,
            } => write!(
                f,
                "cache fence of {product} is {fence:?}, below its version {version}"
            ),
        }
    }
}

/// Every way the end state differs from the expectation (empty: it matches).
///
/// `pushed` records were accepted by `PutRecords`; `on_stream` were read from the stream. A
/// producer retry after a lost response puts records twice (Kinesis is at-least-once), so
/// `on_stream` may be larger: each copy is archived, and a bad one is quarantined per copy
/// (quarantine keeps stream positions), while events stay unique by update key.
pub fn compare(exp: &Expectation, st: &EndState, pushed: u64, on_stream: u64) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut expected_offers = BTreeMap::new();
    for o in exp.projection.offers() {
        let key = (o.product_id.to_string(), o.supplier_id.to_string());
        let row = OfferRow {
            quantity: o.quantity.get(),
            price: o.price.get(),
            currency: o.currency.as_str().to_owned(),
            occurred_at: o.occurred_at,
            update_key: o.update_key.to_string(),
        };
        expected_offers.insert(key, row);
    }
    diff("offer", &expected_offers, &st.offers, &mut problems);
    let mut expected_summaries = BTreeMap::new();
    for s in exp.projection.summaries() {
        let product = s.product_id.to_string();
        let version = st.summaries.get(&product).map_or(0, |r| r.version);
        let row = SummaryRow {
            total_quantity: s.total_quantity,
            best_price: s.best_price.map(|p| p.get()),
            best_price_currency: s.best_price_currency.map(|c| c.as_str().to_owned()),
            best_price_supplier: s.best_price_supplier.as_ref().map(|s| s.to_string()),
            supplier_count: s.supplier_count,
            updated_at: s.updated_at,
            version, // assigned by the store; compared through the cache fences below
        };
        expected_summaries.insert(product, row);
    }
    diff(
        "product summary",
        &expected_summaries,
        &st.summaries,
        &mut problems,
    );
    if st.events != exp.distinct_updates as u64 {
        problems.push(Problem::Count(format!(
            "the event store holds {} events; the feed has {} distinct updates",
            st.events, exp.distinct_updates
        )));
    }
    let expected_rejected: BTreeMap<String, u64> = exp
        .rejected
        .iter()
        .map(|(code, n)| {
            (
                serde_json::to_value(code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                *n as u64,
            )
        })
        .collect();
    let producer_duplicates = on_stream.saturating_sub(pushed);
    let reasons: std::collections::BTreeSet<&String> = expected_rejected
        .keys()
        .chain(st.quarantined.keys())
        .collect();
    for reason in reasons {
        let (want, got) = (
            expected_rejected.get(reason).copied().unwrap_or(0),
            st.quarantined.get(reason).copied().unwrap_or(0),
        );
        if got < want || got > want + producer_duplicates {
            problems.push(Problem::Count(format!("quarantine holds {got} records for {reason}; the feed has {want} (+ up to {producer_duplicates} sent twice)")));
        }
    }
    if on_stream < pushed {
        problems.push(Problem::Count(format!(
            "{pushed} records were put on the stream, but only {on_stream} were read from it"
        )));
    }
    if st.archived_records != on_stream {
        problems.push(Problem::Count(format!(
            "the archive holds {} records; {on_stream} were read from the stream",
            st.archived_records
        )));
    }
    for (product, s) in &st.summaries {
        match st.fences.get(product) {
            Some(fence) if *fence >= s.version => {}
            other => problems.push(Problem::CacheFence {
                product: product.clone(),
                fence: other.copied(),
                version: s.version,
            }),
        }
    }
    problems
}

fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    want: &BTreeMap<K, V>,
    got: &BTreeMap<K, V>,
    out: &mut Vec<Problem>,
) {
    for (k, w) in want {
        match got.get(k) {
            None => out.push(Problem::Projection(format!("{what} {k:?} is missing"))),
            Some(g) if g != w => out.push(Problem::Projection(format!(
                "{what} {k:?} is {g:?}, expected {w:?}"
            ))),
            Some(_) => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(k)) {
        out.push(Problem::Projection(format!("{what} {k:?} is not expected")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_that_differs_is_a_projection_problem_and_a_low_fence_a_cache_problem() {
        let want = BTreeMap::from([("a", 1), ("b", 2)]);
        let got = BTreeMap::from([("b", 3), ("c", 4)]);
        let mut out = Vec::new();
        diff("offer", &want, &got, &mut out);
        let texts: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                r#"offer "a" is missing"#,
                r#"offer "b" is 3, expected 2"#,
                r#"offer "c" is not expected"#
            ]
        );
        assert!(out.iter().all(|p| matches!(p, Problem::Projection(_))));
        let fence = Problem::CacheFence {
            product: "SKU-1".into(),
            fence: Some(2),
            version: 3,
        };
        assert_eq!(
            fence.to_string(),
            "cache fence of SKU-1 is Some(2), below its version 3"
        );
    }
}
