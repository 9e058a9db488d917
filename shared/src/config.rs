//! Reading configuration from the environment, with errors that name the variable.
//! Each function builds its typed `Config` from these at cold start.

use crate::error::PipelineError;
use std::str::FromStr;

/// A required variable; a missing or empty one is a [`crate::ErrorKind::Misconfigured`] error.
pub fn required(name: &str) -> Result<String, PipelineError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        Ok(_) => Err(PipelineError::misconfigured(format!(
            "environment variable {name} is set but empty"
        ))),
        Err(std::env::VarError::NotPresent) => Err(PipelineError::misconfigured(format!(
            "environment variable {name} is required but not set"
        ))),
        Err(std::env::VarError::NotUnicode(_)) => Err(PipelineError::misconfigured(format!(
            "environment variable {name} is not valid UTF-8"
        ))),
    }
}

/// An optional variable; empty counts as absent.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An optional variable parsed into `T`, or `default` when absent.
pub fn parsed_or<T>(name: &str, default: T) -> Result<T, PipelineError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    parse_value(name, optional(name), default)
}

/// Parses a variable's value (already read) into `T`; `default` when absent.
pub fn parse_value<T>(name: &str, value: Option<String>, default: T) -> Result<T, PipelineError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e| {
            PipelineError::misconfigured(format!(
                "environment variable {name}={v:?} is not valid: {e}"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test uses its own variable names: tests run in parallel in one process.
    #[test]
    fn a_missing_variable_is_named_in_the_error() {
        let e = required("INVENTORY_TEST_SURELY_UNSET").expect_err("unset");
        assert_eq!(e.kind, crate::ErrorKind::Misconfigured);
        assert!(e.message.contains("INVENTORY_TEST_SURELY_UNSET"));
    }

    #[test]
    fn a_bad_number_is_named_in_the_error() {
        assert_eq!(
            parsed_or("INVENTORY_TEST_UNSET_NUMBER", 7u32).expect("default"),
            7
        );
        assert_eq!(
            parse_value("DB_POOL_MAX", Some("3".into()), 2u32).expect("valid"),
            3
        );
        let e = parse_value("DB_POOL_MAX", Some("seven".into()), 2u32).expect_err("bad");
        assert!(e.message.contains("DB_POOL_MAX=\"seven\""), "{}", e.message);
    }
}
