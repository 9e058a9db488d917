//! Reading configuration from the environment, with errors that name the variable. Every
//! configuration implements [`FromEnv`]: its `from_lookup` reads its variables through one
//! [`Vars`], so each one trims, treats an empty value as absent and words its errors the same
//! way, and `from_env` is that `from_lookup` over [`process_env`].

use crate::error::PipelineError;
use crate::redact::SecretString;
use std::str::FromStr;

/// Database user and password, read from the secret. `Debug` shows the user only.
#[derive(Clone, Debug)]
pub struct DbCredentials {
    pub username: String,
    pub password: SecretString,
}

/// A configuration read from environment variables, at a Lambda's cold start or a tool's
/// start.
pub trait FromEnv: Sized {
    /// Reads the variables through `get`, so tests need not touch the process environment.
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, PipelineError>;

    /// Reads the process environment.
    fn from_env() -> Result<Self, PipelineError> {
        Self::from_lookup(process_env)
    }
}

/// The process environment as a lookup function: what every `from_env` passes to its
/// `from_lookup`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Variables read through a lookup function: the process environment ([`Vars::env`]), or a
/// map in tests. Values are trimmed; an empty one counts as absent.
#[derive(Debug, Clone, Copy)]
pub struct Vars<F>(F);

impl Vars<fn(&str) -> Option<String>> {
    /// The process environment.
    pub fn env() -> Self {
        Vars(process_env)
    }
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn new(get: F) -> Self {
        Self(get)
    }

    /// The variable's trimmed value; `None` when it is unset or empty.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A variable that must be set; a missing or empty one is a
    /// [`crate::ErrorKind::Misconfigured`] error that names it.
    pub fn required(&self, name: &str) -> Result<String, PipelineError> {
        self.required_because(name, "but not set")
    }

    /// [`Vars::required`], the error ending in `because` ("when DATABASE_URL is not set").
    pub fn required_because(&self, name: &str, because: &str) -> Result<String, PipelineError> {
        self.optional(name).ok_or_else(|| {
            PipelineError::misconfigured(format!(
                "environment variable {name} is required {because}"
            ))
        })
    }

    /// A variable that must be set, parsed into `T`; missing or unparsable is a
    /// [`crate::ErrorKind::Misconfigured`] error that names it.
    pub fn required_parsed<T>(&self, name: &str) -> Result<T, PipelineError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        parse(name, &self.required(name)?)
    }

    /// The variable parsed into `T`, or `default` when it is absent.
    pub fn parsed_or<T>(&self, name: &str, default: T) -> Result<T, PipelineError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => parse(name, &v),
        }
    }
}

/// `name`'s value `v` parsed into `T`, or an error that names the variable and the value.
fn parse<T>(name: &str, v: &str) -> Result<T, PipelineError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    v.parse().map_err(|e| {
        PipelineError::misconfigured(format!(
            "environment variable {name}={v:?} is not valid: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> Vars<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Vars::new(move |n| map.get(n).cloned())
    }

    #[test]
    fn values_are_trimmed_and_empty_counts_as_absent() {
        let v = vars(&[("A", "  x "), ("EMPTY", "   ")]);
        assert_eq!(v.optional("A").as_deref(), Some("x"));
        assert_eq!(v.optional("EMPTY"), None);
        assert_eq!(v.optional("UNSET"), None);
        let e = v.required("EMPTY").expect_err("empty");
        assert_eq!(e.kind, crate::ErrorKind::Misconfigured);
        assert_eq!(
            e.message,
            "environment variable EMPTY is required but not set"
        );
    }

    #[test]
    fn a_bad_number_is_named_in_the_error() {
        let v = vars(&[("DB_POOL_MAX", " 3 "), ("BAD", "seven")]);
        assert_eq!(v.parsed_or("DB_POOL_MAX", 2u32).expect("valid"), 3);
        assert_eq!(v.parsed_or("UNSET", 7u32).expect("default"), 7);
        let e = v.parsed_or("BAD", 2u32).expect_err("bad");
        assert!(e.message.contains("BAD=\"seven\""), "{}", e.message);
        assert_eq!(v.required_parsed::<u32>("DB_POOL_MAX").expect("valid"), 3);
        let e = v.required_parsed::<u32>("BAD").expect_err("bad");
        assert!(e.message.contains("BAD=\"seven\""), "{}", e.message);
        let e = v.required_parsed::<u32>("UNSET").expect_err("unset");
        assert_eq!(
            e.message,
            "environment variable UNSET is required but not set"
        );
    }

    #[test]
    fn the_process_environment_is_read_too() {
        let e = Vars::env()
            .required("INVENTORY_TEST_SURELY_UNSET")
            .expect_err("unset");
        assert!(e.message.contains("INVENTORY_TEST_SURELY_UNSET"));
        assert_eq!(Vars::env().optional("INVENTORY_TEST_SURELY_UNSET"), None);
    }
}
