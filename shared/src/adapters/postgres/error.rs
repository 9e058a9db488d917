//! Mapping database errors onto the pipeline's error taxonomy, so the state machine retries
//! what may succeed on a retry and stops on what never will.

use crate::error::{ErrorKind, PipelineError};
use sea_orm::{DbErr, RuntimeErr};

/// Turns a SeaORM error into a [`PipelineError`] of the right kind, with `context` saying what
/// was being done. Connection, pool, timeout and I/O failures are
/// [`ErrorKind::DependencyUnavailable`]; serialization failures and deadlocks are
/// [`ErrorKind::Conflict`]; bad credentials, a missing database or a missing table are
/// [`ErrorKind::Misconfigured`]; anything else is [`ErrorKind::Internal`].
pub fn db_error(context: &str, e: DbErr) -> PipelineError {
    let kind = classify(&e);
    PipelineError::with_source(kind, context.to_owned(), e)
}

fn classify(e: &DbErr) -> ErrorKind {
    match e {
        DbErr::ConnectionAcquire(_) => ErrorKind::DependencyUnavailable,
        // Connecting can fail for good (no such database, bad password): the server says so.
        DbErr::Conn(RuntimeErr::SqlxError(s)) => match classify_sqlx(s) {
            ErrorKind::Internal => ErrorKind::DependencyUnavailable,
            kind => kind,
        },
        DbErr::Conn(_) => ErrorKind::DependencyUnavailable,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => {
            classify_sqlx(s)
        }
        _ => ErrorKind::Internal,
    }
}

fn classify_sqlx(e: &sea_orm::sqlx::Error) -> ErrorKind {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => ErrorKind::DependencyUnavailable,
        E::Configuration(_) => ErrorKind::Misconfigured,
        E::Database(db) => classify_sqlstate(db.code().as_deref().unwrap_or("")),
        _ => ErrorKind::Internal,
    }
}

/// PostgreSQL SQLSTATE codes, by class.
pub(crate) fn classify_sqlstate(code: &str) -> ErrorKind {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available
        "40001" | "40P01" | "55P03" => ErrorKind::Conflict,
        // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections,
        // query_canceled (statement timeout), out of memory / disk full
        "57P01" | "57P02" | "57P03" | "53300" | "57014" | "53100" | "53200" => {
            ErrorKind::DependencyUnavailable
        }
        // invalid_password, invalid_authorization_specification, invalid_catalog_name,
        // undefined_table (schema not migrated), insufficient_privilege
        "28P01" | "28000" | "3D000" | "42P01" | "42501" => ErrorKind::Misconfigured,
        c if c.starts_with("08") => ErrorKind::DependencyUnavailable, // connection exceptions
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::ConnAcquireErr;

    #[test]
    fn sqlstates_are_sorted_into_transient_and_permanent_kinds() {
        assert_eq!(classify_sqlstate("40001"), ErrorKind::Conflict);
        assert_eq!(classify_sqlstate("40P01"), ErrorKind::Conflict);
        assert_eq!(classify_sqlstate("08006"), ErrorKind::DependencyUnavailable);
        assert_eq!(classify_sqlstate("57P03"), ErrorKind::DependencyUnavailable);
        assert_eq!(classify_sqlstate("28P01"), ErrorKind::Misconfigured);
        assert_eq!(classify_sqlstate("42P01"), ErrorKind::Misconfigured);
        assert_eq!(classify_sqlstate("23505"), ErrorKind::Internal);
        assert_eq!(classify_sqlstate(""), ErrorKind::Internal);
    }

    #[test]
    fn pool_and_driver_failures_are_transient() {
        let e = db_error(
            "appending",
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        );
        assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
        assert!(e.detailed().starts_with("appending: "), "{}", e.detailed());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let e = DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(
            sea_orm::sqlx::Error::Io(io),
        )));
        assert_eq!(db_error("x", e).kind, ErrorKind::DependencyUnavailable);
        let e = DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(
            sea_orm::sqlx::Error::PoolTimedOut,
        )));
        assert_eq!(db_error("x", e).kind, ErrorKind::DependencyUnavailable);
    }

    #[test]
    fn other_errors_are_internal() {
        assert_eq!(
            db_error("x", DbErr::Custom("bug".into())).kind,
            ErrorKind::Internal
        );
        let e = DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(
            sea_orm::sqlx::Error::RowNotFound,
        )));
        assert_eq!(db_error("x", e).kind, ErrorKind::Internal);
    }
}
