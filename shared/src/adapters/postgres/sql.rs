//! Small SQL helpers the PostgreSQL adapters share: raw statements and their parameters, the
//! one-row, one-column read, transaction-scoped advisory locks, and the live projection's
//! schema.

use super::error::db_error;
use crate::domain::ids::ProductId;
use crate::error::{ErrorKind, PipelineError};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement};
use serde::Serialize;

/// A value as a JSON text parameter (bound as text, cast to `jsonb` in SQL).
pub(crate) fn json_param<T: Serialize + ?Sized>(v: &T) -> Result<sea_orm::Value, PipelineError> {
    serde_json::to_string(v)
        .map(sea_orm::Value::from)
        .map_err(|e| {
            PipelineError::with_source(ErrorKind::Internal, "could not encode a query parameter", e)
        })
}

pub(crate) fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The column `column` of the one row `sql` answers (`None` if it answers none); `context`
/// names the read in errors.
pub(crate) async fn query_scalar<T: sea_orm::TryGetable>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<sea_orm::Value>,
    column: &str,
    context: &str,
) -> Result<Option<T>, PipelineError> {
    db.query_one_raw(stmt(sql, values))
        .await
        .map_err(|e| db_error(context, e))?
        .map(|r| r.try_get::<T>("", column))
        .transpose()
        .map_err(|e| db_error(context, e))
}

/// Product ids as a `text[]` parameter.
pub(crate) fn ids_param<'a>(ids: impl IntoIterator<Item = &'a ProductId>) -> sea_orm::Value {
    ids.into_iter()
        .map(|p| p.as_str().to_owned())
        .collect::<Vec<String>>()
        .into()
}

/// Takes the advisory lock `key` for `txn`'s transaction if nobody holds it (`what` names it
/// in errors). The server releases it when the transaction ends.
pub(crate) async fn try_xact_lock(
    txn: &DatabaseTransaction,
    key: i64,
    what: &str,
) -> Result<bool, PipelineError> {
    let locked: Option<bool> = query_scalar(
        txn,
        "SELECT pg_try_advisory_xact_lock($1) AS locked",
        vec![key.into()],
        "locked",
        &format!("could not take {what}"),
    )
    .await?;
    Ok(locked == Some(true))
}

/// The schema of the live projection tables, quoted as an identifier.
pub(crate) async fn live_schema(db: &impl ConnectionTrait) -> Result<String, PipelineError> {
    query_scalar::<String>(
        db,
        "SELECT quote_ident(relnamespace::regnamespace::text) AS live FROM pg_class WHERE oid = 'product_offers'::regclass",
        vec![],
        "live",
        "could not find the live projection",
    )
    .await?
    .ok_or_else(|| PipelineError::new(ErrorKind::Internal, "no live projection table"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::postgres::mock::{parameters, postgres, row, sent, sql, statement_failed};
    use sea_orm::{TransactionTrait, Value};
    use std::collections::{BTreeMap, HashMap};

    type Rows = Vec<BTreeMap<String, Value>>;

    #[test]
    fn a_json_parameter_is_the_values_json_text_and_an_unencodable_one_is_internal() {
        assert_eq!(
            json_param(&["p1", "p2"]).expect("encodable"),
            Value::from(r#"["p1","p2"]"#)
        );
        let keys_that_are_not_strings: HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let e = json_param(&keys_that_are_not_strings).expect_err("not a JSON object key");
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(e.message, "could not encode a query parameter");
    }

    #[test]
    fn product_ids_are_one_text_array_in_the_given_order() {
        let ids = ["p2", "p1"].map(|p| ProductId::parse(p).expect("valid"));
        assert_eq!(
            ids_param(&ids),
            Value::from(vec!["p2".to_owned(), "p1".to_owned()])
        );
        let s = stmt("SELECT $1", vec![ids_param(&ids)]);
        assert_eq!(s.db_backend, DbBackend::Postgres);
        assert_eq!(s.sql, "SELECT $1");
    }

    #[tokio::test]
    async fn a_scalar_is_the_named_column_of_the_one_row_or_none_without_a_row() {
        let db = postgres()
            .append_query_results([vec![row([("n", 42i64.into())])], Rows::new()])
            .into_connection();

        let n: Option<i64> =
            query_scalar(&db, "SELECT $1 AS n", vec![7i64.into()], "n", "reading n")
                .await
                .expect("one row");
        let none: Option<i64> = query_scalar(&db, "SELECT 1 AS n WHERE false", vec![], "n", "x")
            .await
            .expect("no row");

        assert_eq!((n, none), (Some(42), None));
        let log = sent(&db);
        assert_eq!(sql(&log[0][0]), "SELECT $1 AS n");
        assert_eq!(parameters(&log[0][0]), [Value::from(7i64)]);
    }

    #[tokio::test]
    async fn a_failed_or_unreadable_scalar_is_an_error_in_its_context() {
        let db = postgres()
            .append_query_errors([statement_failed("boom")])
            .append_query_results([vec![row([("other", 1i64.into())])]])
            .into_connection();

        let failed = query_scalar::<i64>(&db, "SELECT 1 AS n", vec![], "n", "reading n")
            .await
            .expect_err("failed");
        let missing = query_scalar::<i64>(&db, "SELECT 1 AS other", vec![], "n", "reading n")
            .await
            .expect_err("no such column");

        for e in [failed, missing] {
            assert_eq!(e.kind, ErrorKind::Internal);
            assert_eq!(e.message, "reading n");
        }
    }

    #[tokio::test]
    async fn an_advisory_lock_is_taken_only_when_the_server_says_true() {
        for (answer, expected) in [
            (vec![row([("locked", true.into())])], true),
            (vec![row([("locked", false.into())])], false),
            (Rows::new(), false),
        ] {
            let db = postgres().append_query_results([answer]).into_connection();
            let txn = db.begin().await.expect("begin");

            let locked = try_xact_lock(&txn, 4242, "the rebuild lock")
                .await
                .expect("answered");

            txn.commit().await.expect("commit");
            assert_eq!(locked, expected);
            let log = sent(&db);
            assert_eq!(
                sql(&log[0][1]),
                "SELECT pg_try_advisory_xact_lock($1) AS locked"
            );
            assert_eq!(parameters(&log[0][1]), [Value::from(4242i64)]);
        }
    }

    #[tokio::test]
    async fn a_failed_advisory_lock_names_the_lock() {
        let db = postgres()
            .append_query_errors([statement_failed("boom")])
            .into_connection();
        let txn = db.begin().await.expect("begin");

        let e = try_xact_lock(&txn, 1, "the rebuild lock")
            .await
            .expect_err("failed");

        assert_eq!(e.message, "could not take the rebuild lock");
    }

    #[tokio::test]
    async fn the_live_schema_is_where_product_offers_lives_and_its_absence_is_internal() {
        let db = postgres()
            .append_query_results([vec![row([("live", "\"live-2\"".into())])], Rows::new()])
            .into_connection();

        let live = live_schema(&db).await.expect("found");
        let e = live_schema(&db).await.expect_err("no table");

        assert_eq!(live, "\"live-2\"");
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(e.message, "no live projection table");
        assert!(sql(&sent(&db)[0][0]).contains("'product_offers'::regclass"));
    }
}
