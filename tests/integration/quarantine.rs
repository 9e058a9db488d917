//! Bad input never stops good input (SPEC invariant 5) and nothing is lost (1): a chunk with
//! bad records quarantines each with its reason and persists the rest, against real PostgreSQL.

use crate::event_store::{count, pid};
use anyhow::Result;
use integration_tests::postgres::TestDb;
use inventory::RejectionCode;
use inventory::adapters::postgres::{PgEventStore, PgQuarantine, list_quarantine, load_offers};
use inventory::ports::Quarantine;
use inventory::steps::payloads::{ChunkInput, PersistInput};
use inventory::steps::{persist_updates, validate_chunk};

/// When a test validates `input`: a minute after its newest record reached the stream, as the
/// pipeline would.
pub fn soon_after(input: &ChunkInput) -> chrono::DateTime<chrono::Utc> {
    input
        .records
        .iter()
        .map(|r| r.arrived_at)
        .max()
        .unwrap_or_default()
        + chrono::Duration::minutes(1)
}

pub fn mixed_chunk() -> ChunkInput {
    serde_json::from_str(include_str!("../fixtures/chunk-with-bad-records.json"))
        .expect("fixture parses")
}

#[tokio::test]
async fn a_chunk_with_bad_records_quarantines_them_with_reasons_and_persists_the_rest() -> Result<()>
{
    let t = TestDb::new().await?;
    let input = mixed_chunk();

    let validated =
        validate_chunk(&input, &PgQuarantine::new(t.db.clone()), soon_after(&input)).await?;
    let persisted = persist_updates(
        &PersistInput {
            chunk: input.chunk.clone(),
            updates: validated.valid.clone(),
        },
        &PgEventStore::new(t.db.clone()),
    )
    .await?;

    assert_eq!(
        validated.valid.len() + validated.rejected.len(),
        input.records.len(),
        "every record is accounted for"
    );
    let kept = list_quarantine(&t.db, 0, 100).await?;
    let codes: Vec<RejectionCode> = kept.iter().map(|e| e.record.reason.code).collect();
    assert_eq!(
        codes,
        [
            RejectionCode::NotJson,
            RejectionCode::QuantityNegative,
            RejectionCode::CurrencyUnknown,
            RejectionCode::PayloadUnavailable,
            RejectionCode::RecordTooLarge
        ]
    );
    assert!(
        kept.iter()
            .all(|e| !e.record.reason.message.is_empty() && e.replayed_at.is_none())
    );
    assert_eq!(
        kept[0].record.raw.as_deref(),
        Some(&b"{not json"[..]),
        "raw bytes are kept"
    );
    assert_eq!(kept[0].record.partition_key, "SKU-2");
    let by_ref = &kept[4].record;
    assert_eq!(by_ref.raw, None);
    assert_eq!(
        by_ref.payload_ref.as_ref().map(|r| r.bytes),
        Some(40_000),
        "an oversized record is kept by reference"
    );
    // Four valid records, one of them a duplicate send of another (same update_id).
    assert_eq!((persisted.appended, persisted.duplicates), (3, 1));
    assert_eq!(count(&t.db, "inventory_events").await?, 3);
    let sku1 = load_offers(&t.db, &pid("SKU-1")).await?;
    assert_eq!(
        sku1.iter()
            .map(|o| (o.supplier_id.as_str(), o.quantity.get()))
            .collect::<Vec<_>>(),
        [("acme", 5), ("globex", 7)]
    );
    t.cleanup().await
}

#[tokio::test]
async fn a_redelivered_chunk_quarantines_each_record_once() -> Result<()> {
    let t = TestDb::new().await?;
    let q = PgQuarantine::new(t.db.clone());
    let input = mixed_chunk();

    validate_chunk(&input, &q, soon_after(&input)).await?;
    let again = validate_chunk(&input, &q, soon_after(&input)).await?;

    assert_eq!(again.rejected.len(), 5, "the answer is the same on a retry");
    assert_eq!(
        count(&t.db, "quarantined_records").await?,
        5,
        "but nothing is stored twice"
    );
    t.cleanup().await
}

#[tokio::test]
async fn quarantine_reports_how_many_records_were_new() -> Result<()> {
    let t = TestDb::new().await?;
    let q = PgQuarantine::new(t.db.clone());
    let input = mixed_chunk();
    validate_chunk(&input, &q, soon_after(&input)).await?;
    let stored = list_quarantine(&t.db, 0, 100).await?;
    let mut records: Vec<_> = stored.iter().map(|e| e.record.clone()).collect();
    let mut fresh = records[0].clone();
    fresh.sequence_number.push('9');
    records.push(fresh.clone());
    records.push(fresh);

    let new = q.quarantine(&records).await?;

    assert_eq!(new, 1, "one new position, even though it is listed twice");
    let page = list_quarantine(&t.db, stored[2].id, 2).await?;
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        [stored[3].id, stored[4].id],
        "pages follow ids"
    );
    t.cleanup().await
}
