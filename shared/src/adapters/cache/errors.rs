//! Redis errors sorted into the pipeline's taxonomy: an unreachable or busy server is
//! transient, bad credentials are configuration, anything else (a script or type error) is a bug.

use crate::error::{ErrorKind, PipelineError};
use redis::{RedisError, ServerErrorKind};

/// Wraps a Redis error with what we were doing. The source never carries the AUTH token:
/// redis-rs does not put credentials in its errors.
pub(crate) fn from_redis(context: &'static str, e: RedisError) -> PipelineError {
    PipelineError::with_source(kind_of(&e), context, e)
}

/// The kind of a Redis error.
pub fn kind_of(e: &RedisError) -> ErrorKind {
    if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() {
        return ErrorKind::DependencyUnavailable;
    }
    match e.kind() {
        redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig => {
            ErrorKind::Misconfigured
        }
        redis::ErrorKind::Server(ServerErrorKind::NoPerm) => ErrorKind::Misconfigured,
        redis::ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        ) => ErrorKind::DependencyUnavailable,
        redis::ErrorKind::Extension => match extension_code(e).as_deref() {
            // Out of memory, or another script still running: the server is busy.
            Some("OOM" | "BUSY") => ErrorKind::DependencyUnavailable,
            Some("NOAUTH" | "WRONGPASS") => ErrorKind::Misconfigured,
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    }
}

/// The code of an error reply the client library does not name: the reply's own, or, when a
/// pipeline failed, that of its first failed command (the library gives a pipeline's error no
/// code of its own).
fn extension_code(e: &RedisError) -> Option<String> {
    e.code().map(str::to_owned).or_else(|| {
        let failed = e.clone().into_server_errors()?;
        failed.first().map(|(_, first)| first.code().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(reply: &str) -> RedisError {
        let value = redis::parse_redis_value(reply.as_bytes()).expect("a RESP error reply");
        value.extract_error().expect_err("an error reply")
    }

    #[test]
    fn an_unreachable_server_is_transient() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(kind_of(&refused), ErrorKind::DependencyUnavailable);
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(kind_of(&timeout), ErrorKind::DependencyUnavailable);
        assert_eq!(
            kind_of(&server_error(
                "-LOADING Redis is loading the dataset in memory\r\n"
            )),
            ErrorKind::DependencyUnavailable
        );
        assert_eq!(
            kind_of(&server_error("-OOM command not allowed\r\n")),
            ErrorKind::DependencyUnavailable
        );
        assert_eq!(
            kind_of(&server_error(
                "-READONLY You can't write against a read only replica.\r\n"
            )),
            ErrorKind::DependencyUnavailable
        );
    }

    #[test]
    fn bad_credentials_are_configuration_errors() {
        let auth = RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert_eq!(kind_of(&auth), ErrorKind::Misconfigured);
        assert_eq!(
            kind_of(&server_error("-NOAUTH Authentication required.\r\n")),
            ErrorKind::Misconfigured
        );
        assert_eq!(
            kind_of(&server_error(
                "-WRONGPASS invalid username-password pair\r\n"
            )),
            ErrorKind::Misconfigured
        );
        assert_eq!(
            kind_of(&server_error(
                "-NOPERM this user has no permissions to run the 'evalsha' command\r\n"
            )),
            ErrorKind::Misconfigured
        );
    }

    #[test]
    fn script_and_type_errors_are_bugs() {
        assert_eq!(
            kind_of(&server_error(
                "-ERR user_script:3: attempt to compare nil\r\n"
            )),
            ErrorKind::Internal
        );
        assert_eq!(
            kind_of(&server_error(
                "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
            )),
            ErrorKind::Internal
        );
        let e = from_redis(
            "could not invalidate the cache",
            server_error("-ERR boom\r\n"),
        );
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(
            e.detailed().starts_with("could not invalidate the cache: "),
            "{}",
            e.detailed()
        );
    }
}
