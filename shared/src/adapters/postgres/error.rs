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

    fn sqlx(e: sea_orm::sqlx::Error) -> RuntimeErr {
        RuntimeErr::SqlxError(std::sync::Arc::new(e))
    }

    fn server(code: &'static str) -> RuntimeErr {
        crate::adapters::postgres::mock::server_answered(Some(code))
    }

    #[test]
    fn a_failed_statement_is_sorted_by_the_servers_sqlstate() {
        assert_eq!(
            db_error("x", DbErr::Query(server("40001"))).kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            db_error("x", DbErr::Exec(server("40P01"))).kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            db_error("x", DbErr::Exec(server("42P01"))).kind,
            ErrorKind::Misconfigured
        );
        assert_eq!(
            db_error("x", DbErr::Query(server("57014"))).kind,
            ErrorKind::DependencyUnavailable
        );
        assert_eq!(
            db_error("x", DbErr::Query(server("23505"))).kind,
            ErrorKind::Internal
        );
        let no_code = crate::adapters::postgres::mock::server_answered(None);
        assert_eq!(
            db_error("x", DbErr::Query(no_code)).kind,
            ErrorKind::Internal
        );
    }

    #[test]
    fn connecting_fails_for_good_only_when_the_server_or_the_settings_say_so() {
        let conn = |e| db_error("connecting", DbErr::Conn(e)).kind;
        assert_eq!(conn(server("28P01")), ErrorKind::Misconfigured);
        assert_eq!(conn(server("3D000")), ErrorKind::Misconfigured);
        let bad_setting = sea_orm::sqlx::Error::Configuration("sslmode".into());
        assert_eq!(conn(sqlx(bad_setting)), ErrorKind::Misconfigured);
        assert_eq!(conn(server("57P03")), ErrorKind::DependencyUnavailable);
        // Anything else while connecting may pass: the server may be starting or moving.
        assert_eq!(conn(server("XX000")), ErrorKind::DependencyUnavailable);
        let not_found = sqlx(sea_orm::sqlx::Error::RowNotFound);
        assert_eq!(conn(not_found), ErrorKind::DependencyUnavailable);
        assert_eq!(
            conn(RuntimeErr::Internal("refused".into())),
            ErrorKind::DependencyUnavailable
        );
    }

    #[test]
    fn transport_failures_are_transient_and_bad_settings_are_not() {
        use sea_orm::sqlx::Error as E;
        for e in [
            E::Tls("handshake".into()),
            E::Protocol("unexpected message".into()),
            E::WorkerCrashed,
            E::PoolClosed,
        ] {
            let shown = format!("{e:?}");
            assert_eq!(
                db_error("x", DbErr::Query(sqlx(e))).kind,
                ErrorKind::DependencyUnavailable,
                "{shown}"
            );
        }
        let e = DbErr::Exec(sqlx(E::Configuration("bad option".into())));
        assert_eq!(db_error("x", e).kind, ErrorKind::Misconfigured);
        let e = DbErr::Query(RuntimeErr::Internal("no column".into()));
        assert_eq!(db_error("x", e).kind, ErrorKind::Internal);
    }

    #[test]
    fn every_listed_sqlstate_has_its_kind() {
        for code in ["40001", "40P01", "55P03"] {
            assert_eq!(classify_sqlstate(code), ErrorKind::Conflict, "{code}");
        }
        for code in [
            "57P01", "57P02", "57P03", "53300", "57014", "53100", "53200", "08000", "08P01",
        ] {
            assert_eq!(
                classify_sqlstate(code),
                ErrorKind::DependencyUnavailable,
                "{code}"
            );
        }
        for code in ["28P01", "28000", "3D000", "42P01", "42501"] {
            assert_eq!(classify_sqlstate(code), ErrorKind::Misconfigured, "{code}");
        }
        for code in ["23505", "22003", "P0001", "80000"] {
            assert_eq!(classify_sqlstate(code), ErrorKind::Internal, "{code}");
        }
    }
}
