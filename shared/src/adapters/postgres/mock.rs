//! The PostgreSQL adapters' unit-test kit: SeaORM's in-process mock connection, which answers
//! each statement with the next scripted result (queries and executions from two separate
//! queues) and records what was sent, so a test can say both what the adapter made of the
//! database's answers and which statements, in which order and transaction, it sent.

use sea_orm::{
    DatabaseConnection, DbBackend, DbErr, MockDatabase, MockExecResult, RuntimeErr, Statement,
    Value,
};
use std::collections::BTreeMap;

/// A mock PostgreSQL with nothing scripted yet.
pub(crate) fn postgres() -> MockDatabase {
    MockDatabase::new(DbBackend::Postgres)
}

/// One scripted row: column name to value.
pub(crate) fn row<const N: usize>(columns: [(&str, Value); N]) -> BTreeMap<String, Value> {
    columns
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// The answer to an `execute` that touched `rows` rows.
pub(crate) fn affected(rows: u64) -> MockExecResult {
    MockExecResult {
        last_insert_id: 0,
        rows_affected: rows,
    }
}

/// An error of the kind a statement fails with when the server rejects it; the adapters
/// report it as internal.
pub(crate) fn statement_failed(message: &str) -> DbErr {
    DbErr::Query(RuntimeErr::Internal(message.to_owned()))
}

/// What the adapter sent, one entry per transaction (a statement sent outside a transaction
/// is a transaction of its own). Reading it empties the log.
pub(crate) fn sent(db: &DatabaseConnection) -> Vec<Vec<Statement>> {
    db.clone()
        .into_transaction_log()
        .iter()
        .map(|t| t.statements().to_vec())
        .collect()
}

/// A statement's SQL with its whitespace folded, for comparing with what a test expects.
pub(crate) fn sql(s: &Statement) -> String {
    s.sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A statement's parameters.
pub(crate) fn parameters(s: &Statement) -> Vec<Value> {
    s.values.clone().map(|v| v.0).unwrap_or_default()
}

/// The error PostgreSQL answers with SQLSTATE `code`, as the driver reports it: 55P03
/// (lock_not_available) or 40001 for a conflict, 57P01 (admin_shutdown) or 08006 for a
/// dependency gone, and so on (see `error::classify_sqlstate`).
pub(crate) fn server_error(code: &str) -> DbErr {
    DbErr::Query(server_answered(Some(code)))
}

/// The driver's error for a server that answered with SQLSTATE `code` (or with none), to wrap
/// in whichever [`DbErr`] variant the test needs (a failed query, execution or connection).
pub(crate) fn server_answered(code: Option<&str>) -> RuntimeErr {
    RuntimeErr::SqlxError(std::sync::Arc::new(sea_orm::sqlx::Error::Database(
        Box::new(ServerError(code.map(str::to_owned))),
    )))
}

/// A server error carrying only its SQLSTATE.
#[derive(Debug)]
struct ServerError(Option<String>);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server answered SQLSTATE {:?}", self.0)
    }
}

impl std::error::Error for ServerError {}

impl sea_orm::sqlx::error::DatabaseError for ServerError {
    fn message(&self) -> &str {
        "the server answered with an error"
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.0.as_deref().map(std::borrow::Cow::Borrowed)
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sea_orm::sqlx::error::ErrorKind {
        sea_orm::sqlx::error::ErrorKind::Other
    }
}
