//! The quarantine on PostgreSQL: rejected records with their reason, kept once per stream
//! position, listed for ops.

use super::entity::quarantined_record::{self, ActiveModel, Column, Entity};
use super::error::db_error;
use crate::domain::rejection::{Rejection, RejectionCode};
use crate::error::{ErrorKind, PipelineError};
use crate::ports::{Quarantine, QuarantinedRecord};
use crate::steps::payloads::ObjectRef;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TryInsertResult,
};

/// [`Quarantine`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgQuarantine {
    db: DatabaseConnection,
}

impl PgQuarantine {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn row(r: &QuarantinedRecord) -> Result<ActiveModel, PipelineError> {
    let payload_ref = r
        .payload_ref
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| {
            PipelineError::with_source(
                ErrorKind::Internal,
                "could not encode a payload reference",
                e,
            )
        })?;
    Ok(ActiveModel {
        id: NotSet,
        stream: Set(r.stream.clone()),
        shard_id: Set(r.shard_id.clone()),
        sequence_number: Set(r.sequence_number.clone()),
        partition_key: Set(r.partition_key.clone()),
        arrived_at: Set(r.arrived_at),
        reason_code: Set(r.reason.code.as_str().to_owned()),
        reason_message: Set(r.reason.message.clone()),
        raw_payload: Set(r.raw.clone()),
        payload_ref: Set(payload_ref),
        quarantined_at: NotSet,
        replayed_at: NotSet,
    })
}

#[async_trait]
impl Quarantine for PgQuarantine {
    /// One multi-row insert; a stream position already quarantined is skipped, so a redelivered
    /// or retried chunk adds nothing.
    #[tracing::instrument(skip_all, fields(records = records.len()))]
    async fn quarantine(&self, records: &[QuarantinedRecord]) -> Result<usize, PipelineError> {
        if records.is_empty() {
            return Ok(0);
        }
        let rows = records.iter().map(row).collect::<Result<Vec<_>, _>>()?;
        let inserted = Entity::insert_many(rows)
            .on_conflict_do_nothing_on([Column::Stream, Column::ShardId, Column::SequenceNumber])
            .exec_without_returning(&self.db)
            .await
            .map_err(|e| db_error("could not quarantine records", e))?;
        let new = match inserted {
            TryInsertResult::Inserted(n) => usize::try_from(n).unwrap_or(usize::MAX),
            TryInsertResult::Conflicted | TryInsertResult::Empty => 0,
        };
        tracing::info!(
            new,
            already_kept = records.len().saturating_sub(new),
            "records quarantined"
        );
        Ok(new)
    }
}

/// A quarantined record as stored, with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    pub id: i64,
    pub record: QuarantinedRecord,
    pub quarantined_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

fn entry(m: quarantined_record::Model) -> Result<QuarantineEntry, PipelineError> {
    let code: RejectionCode =
        serde_json::from_value(serde_json::Value::String(m.reason_code.clone())).map_err(|_| {
            PipelineError::new(
                ErrorKind::Internal,
                format!(
                    "quarantine row {} has unknown reason code {:?}",
                    m.id, m.reason_code
                ),
            )
        })?;
    let payload_ref: Option<ObjectRef> = m
        .payload_ref
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| {
            PipelineError::with_source(
                ErrorKind::Internal,
                format!("quarantine row {} has a bad payload_ref", m.id),
                e,
            )
        })?;
    Ok(QuarantineEntry {
        id: m.id,
        record: QuarantinedRecord {
            stream: m.stream,
            shard_id: m.shard_id,
            sequence_number: m.sequence_number,
            partition_key: m.partition_key,
            arrived_at: m.arrived_at,
            reason: Rejection::new(code, m.reason_message),
            raw: m.raw_payload,
            payload_ref,
        },
        quarantined_at: m.quarantined_at,
        replayed_at: m.replayed_at,
    })
}

/// Quarantined records with an id above `after_id`, oldest first, at most `limit`. Page with
/// the last entry's id.
#[tracing::instrument(skip(db))]
pub async fn list_quarantine(
    db: &DatabaseConnection,
    after_id: i64,
    limit: u64,
) -> Result<Vec<QuarantineEntry>, PipelineError> {
    Entity::find()
        .filter(Column::Id.gt(after_id))
        .order_by_asc(Column::Id)
        .limit(limit)
        .all(db)
        .await
        .map_err(|e| db_error("could not list quarantined records", e))?
        .into_iter()
        .map(entry)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::postgres::mock::{
        affected, parameters, postgres, sent, sql, statement_failed,
    };
    use sea_orm::{DbErr, Value};

    fn stored(
        reason_code: &str,
        payload_ref: Option<serde_json::Value>,
    ) -> quarantined_record::Model {
        quarantined_record::Model {
            id: 17,
            stream: "inventory-updates".into(),
            shard_id: "shardId-000000000000".into(),
            sequence_number: "4960".into(),
            partition_key: "p-1".into(),
            arrived_at: DateTime::UNIX_EPOCH,
            reason_code: reason_code.into(),
            reason_message: "why".into(),
            raw_payload: Some(b"{}".to_vec()),
            payload_ref,
            quarantined_at: DateTime::UNIX_EPOCH,
            replayed_at: None,
        }
    }

    #[test]
    fn a_row_is_read_back_with_its_reason() {
        let e = entry(stored("not_json", None)).expect("valid row");
        assert_eq!(e.id, 17);
        assert_eq!(e.record.reason.code, RejectionCode::NotJson);
        assert_eq!(e.record.raw.as_deref(), Some(&b"{}"[..]));
    }

    /// A row the listing cannot read stops the listing with an internal error naming the row,
    /// so an operator can find it; it is never shown with a guessed reason.
    #[test]
    fn a_row_with_an_unknown_reason_or_a_bad_payload_ref_is_an_internal_error_naming_it() {
        let e = entry(stored("gremlins", None)).expect_err("unknown code");
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(
            e.message.contains("row 17") && e.message.contains("\"gremlins\""),
            "{}",
            e.message
        );
        let e = entry(stored("not_json", Some(serde_json::json!("s3://nowhere"))))
            .expect_err("bad payload_ref");
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(
            e.message.contains("row 17") && e.message.contains("payload_ref"),
            "{}",
            e.message
        );
    }

    fn record(sequence_number: &str, payload_ref: Option<ObjectRef>) -> QuarantinedRecord {
        QuarantinedRecord {
            stream: "inventory-updates".into(),
            shard_id: "shardId-000000000001".into(),
            sequence_number: sequence_number.into(),
            partition_key: "p-1".into(),
            arrived_at: DateTime::UNIX_EPOCH,
            reason: Rejection::new(RejectionCode::NotJson, "expected value at line 1"),
            raw: payload_ref.is_none().then(|| b"{oops".to_vec()),
            payload_ref,
        }
    }

    fn elsewhere() -> ObjectRef {
        ObjectRef {
            bucket: "oversize".into(),
            key: "chunks/1".into(),
            bytes: 2_000_000,
        }
    }

    #[tokio::test]
    async fn no_records_send_nothing() {
        let db = postgres().into_connection();

        let new = PgQuarantine::new(db.clone()).quarantine(&[]).await;

        assert_eq!(new.expect("nothing to do"), 0);
        assert!(sent(&db).is_empty());
    }

    #[tokio::test]
    async fn records_go_in_one_insert_that_skips_stream_positions_already_kept() {
        let db = postgres()
            .append_exec_results([affected(1)])
            .into_connection();
        let records = [record("1", None), record("2", Some(elsewhere()))];

        let new = PgQuarantine::new(db.clone()).quarantine(&records).await;

        assert_eq!(new.expect("inserted"), 1, "what the server inserted");
        let log = sent(&db);
        assert_eq!(log.len(), 1);
        let insert = &log[0][0];
        let text = sql(insert);
        assert!(
            text.starts_with(r#"INSERT INTO "quarantined_records" ("stream", "shard_id", "sequence_number", "partition_key", "arrived_at", "reason_code", "reason_message", "raw_payload", "payload_ref") VALUES"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#"ON CONFLICT ("stream", "shard_id", "sequence_number") DO NOTHING"#),
            "{text}"
        );
        let p = parameters(insert);
        assert_eq!(p.len(), 18, "nine columns per record");
        assert_eq!(p[2], Value::from("1"));
        assert_eq!(p[5], Value::from("not_json"));
        assert_eq!(p[6], Value::from("expected value at line 1"));
        assert_eq!(p[7], Value::from(b"{oops".to_vec()));
        assert_eq!(p[8], Value::Json(None));
        assert_eq!(p[11], Value::from("2"));
        assert_eq!(p[16], Value::Bytes(None));
        assert_eq!(
            p[17],
            Value::from(
                serde_json::json!({"bucket": "oversize", "key": "chunks/1", "bytes": 2_000_000})
            )
        );
    }

    #[tokio::test]
    async fn records_all_kept_already_add_nothing() {
        let db = postgres()
            .append_exec_results([affected(0)])
            .append_exec_errors([DbErr::RecordNotInserted])
            .into_connection();
        let q = PgQuarantine::new(db);

        assert_eq!(q.quarantine(&[record("1", None)]).await.expect("kept"), 0);
        assert_eq!(q.quarantine(&[record("1", None)]).await.expect("kept"), 0);
    }

    #[tokio::test]
    async fn a_failed_insert_is_an_error_of_the_databases_kind() {
        let db = postgres()
            .append_exec_errors([statement_failed("value too long")])
            .into_connection();

        let e = PgQuarantine::new(db)
            .quarantine(&[record("1", None)])
            .await
            .expect_err("failed");

        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(e.message, "could not quarantine records");
    }

    #[test]
    fn a_record_is_stored_with_its_reason_and_read_back_as_it_was() {
        let r = record("7", Some(elsewhere()));
        let m = row(&r).expect("encodable");
        let stored = quarantined_record::Model {
            id: 3,
            stream: m.stream.unwrap(),
            shard_id: m.shard_id.unwrap(),
            sequence_number: m.sequence_number.unwrap(),
            partition_key: m.partition_key.unwrap(),
            arrived_at: m.arrived_at.unwrap(),
            reason_code: m.reason_code.unwrap(),
            reason_message: m.reason_message.unwrap(),
            raw_payload: m.raw_payload.unwrap(),
            payload_ref: m.payload_ref.unwrap(),
            quarantined_at: DateTime::UNIX_EPOCH,
            replayed_at: None,
        };

        assert_eq!(entry(stored).expect("readable").record, r);
    }

    #[tokio::test]
    async fn the_listing_pages_by_id_oldest_first() {
        let mut later = stored("empty_record", None);
        later.id = 18;
        later.replayed_at = Some(DateTime::UNIX_EPOCH);
        let db = postgres()
            .append_query_results([vec![stored("not_json", None), later]])
            .into_connection();

        let page = list_quarantine(&db, 16, 2).await.expect("listed");

        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [17, 18]);
        assert_eq!(page[1].record.reason.code, RejectionCode::EmptyRecord);
        assert_eq!(page[1].replayed_at, Some(DateTime::UNIX_EPOCH));
        let log = sent(&db);
        let select = &log[0][0];
        let text = sql(select);
        assert!(
            text.ends_with(r#"FROM "quarantined_records" WHERE "quarantined_records"."id" > $1 ORDER BY "quarantined_records"."id" ASC LIMIT $2"#),
            "{text}"
        );
        assert_eq!(parameters(select), [Value::from(16i64), Value::from(2u64)]);
    }

    #[tokio::test]
    async fn a_failed_or_unreadable_listing_is_an_error() {
        let db = postgres()
            .append_query_errors([statement_failed("boom")])
            .append_query_results([vec![stored("gremlins", None)]])
            .into_connection();

        let failed = list_quarantine(&db, 0, 10).await.expect_err("failed");
        let unreadable = list_quarantine(&db, 0, 10).await.expect_err("bad row");

        assert_eq!(failed.message, "could not list quarantined records");
        assert_eq!(unreadable.kind, ErrorKind::Internal);
        assert!(
            unreadable.message.contains("row 17"),
            "{}",
            unreadable.message
        );
    }
}
