//! The yardstick the pipeline is measured against, run on the same machine in the same
//! minute: the straightforward design with no event store. Per chunk: parse the brief's
//! records, one single-connection batch upsert of the latest value per product, one gzip
//! S3 object, one multi-key `DEL`. Nothing is validated, nothing is quarantined, no history is
//! kept, and a redelivered chunk is applied twice; that is what the pipeline adds, and what
//! the ratio between the two figures costs.

use anyhow::{Context, Result};
use flate2::Compression;
use flate2::write::GzEncoder;
use integration_tests::cpu::CpuTimes;
use integration_tests::postgres::TestDb;
use integration_tests::redis::TestRedis;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

#[derive(Deserialize)]
struct BriefRecord {
    product_id: String,
    inventory: i64,
    price: serde_json::Number,
}

const CREATE: &str = "CREATE TABLE reference_products (product_id TEXT PRIMARY KEY, \
    quantity BIGINT NOT NULL, price NUMERIC(20, 4) NOT NULL, updated_at TIMESTAMPTZ NOT NULL)";

const UPSERT: &str = r#"
INSERT INTO reference_products (product_id, quantity, price, updated_at)
SELECT product_id, quantity, price, now()
FROM jsonb_to_recordset($1::jsonb) AS x(product_id text, quantity bigint, price numeric)
ON CONFLICT (product_id) DO UPDATE SET
    quantity = EXCLUDED.quantity, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at"#;

/// What the reference did with the chunks: wall time and per-chunk times.
#[derive(Debug)]
pub struct ReferenceRun {
    pub wall: Duration,
    pub per_chunk: Vec<Duration>,
    /// CPU time the run used, per process group (`None` where `/proc` cannot be read).
    pub cpu: Option<CpuTimes>,
}

/// Runs the reference over `records` in chunks of `batch`, one after another; `emulator` is the
/// S3 emulator's PID, for the CPU figures.
pub async fn run(
    records: &[Vec<u8>],
    batch: usize,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    emulator: u32,
) -> Result<ReferenceRun> {
    let db = TestDb::empty().await?;
    let conn = db.connect(1).await?;
    conn.execute_unprepared(CREATE).await?;
    let redis = TestRedis::new()?;
    let mut cache = redis.connection().await?;

    let cpu_before = CpuTimes::now(emulator);
    let started = Instant::now();
    let mut per_chunk = Vec::new();
    for (i, chunk) in records.chunks(batch).enumerate() {
        let t = Instant::now();
        upsert(&conn, chunk).await?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        for r in chunk {
            gz.write_all(r)?;
            gz.write_all(b"\n")?;
        }
        s3.put_object()
            .bucket(bucket)
            .key(format!("reference/{batch}/{i:08}.jsonl.gz"))
            .body(gz.finish()?.into())
            .send()
            .await
            .context("reference archive put")?;
        let keys: Vec<String> = chunk
            .iter()
            .filter_map(|r| serde_json::from_slice::<BriefRecord>(r).ok())
            .map(|r| format!("{}product:{}", redis.prefix(), r.product_id))
            .collect();
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut cache)
            .await
            .context("reference cache DEL")?;
        per_chunk.push(t.elapsed());
    }
    let wall = started.elapsed();
    let cpu = CpuTimes::used_since(cpu_before, emulator);
    drop(conn);
    db.cleanup().await?;
    per_chunk.sort();
    Ok(ReferenceRun {
        wall,
        per_chunk,
        cpu,
    })
}

/// The latest record per product in the chunk, in one upsert.
async fn upsert(conn: &DatabaseConnection, chunk: &[Vec<u8>]) -> Result<()> {
    let mut latest: HashMap<String, serde_json::Value> = HashMap::with_capacity(chunk.len());
    for r in chunk {
        let rec: BriefRecord = serde_json::from_slice(r).context("reference record")?;
        latest.insert(
            rec.product_id.clone(),
            serde_json::json!({"product_id": rec.product_id, "quantity": rec.inventory, "price": rec.price}),
        );
    }
    let rows: Vec<serde_json::Value> = latest.into_values().collect();
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        UPSERT,
        vec![serde_json::to_string(&rows)?.into()],
    ))
    .await
    .context("reference upsert")?;
    Ok(())
}
