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
