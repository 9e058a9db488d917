//! Keeping secrets out of what is shown: the one rule for a URL that may carry a password
//! (`scheme://user:<password>@host/...`). The user name stays (it is not a secret and helps to
//! tell logins apart); the password becomes `***`. Secrets held on their own are
//! [`SecretString`]s, whose `Debug` never shows the value; a URL that may carry one is a
//! [`SecretUrl`], whose `Debug` shows it redacted.

pub use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// A connection URL that may carry a password (`DATABASE_URL`, `REDIS_URL`). `Debug` shows it
/// with the password as `***`; the URL itself is read with [`ExposeSecret::expose_secret`], so
/// every place that hands it on says so.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
}

impl ExposeSecret<str> for SecretUrl {
    fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// The password in `url`'s user info, if it has one. Read from the text rather than parsed, so
/// that it is found in a URL that is otherwise malformed (a bad port, say), which is exactly
/// when a driver quotes the URL back in an error.
fn password(url: &str) -> Option<&str> {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty())
}

/// `text` with every `:password@` of `url` replaced by `:***@`: for messages that quote the
/// URL, and for the URL itself ([`redact_url`]).
pub fn without_url_password(text: &str, url: &str) -> String {
    match password(url) {
        Some(p) => text.replace(&format!(":{p}@"), ":***@"),
        None => text.to_owned(),
    }
}

/// `url` as it may be shown: `scheme://user:***@host/...`.
pub fn redact_url(url: &str) -> String {
    without_url_password(url, url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_password_is_hidden() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db.example:5432/inventory"),
            "postgres://app:***@db.example:5432/inventory"
        );
        assert_eq!(
            redact_url("rediss://:s3cret@cache.example:6379"),
            "rediss://:***@cache.example:6379"
        );
        for plain in ["postgres://app@h/db", "redis://h:6379", "not a url", ""] {
            assert_eq!(redact_url(plain), plain);
        }
    }

    #[test]
    fn a_malformed_url_quoted_in_a_message_loses_its_password() {
        let url = "postgres://app:hunter2@h:notaport/db";
        assert_eq!(
            without_url_password(&format!("'{url}' cannot be parsed"), url),
            "'postgres://app:***@h:notaport/db' cannot be parsed"
        );
        assert_eq!(without_url_password("no url", "postgres://h/db"), "no url");
    }

    #[test]
    fn a_secret_url_shows_only_its_redacted_form_and_hands_on_the_whole_url() {
        let url = SecretUrl::new("postgres://app:hunter2@db.example/inventory");
        assert_eq!(
            format!("{url:?}"),
            "postgres://app:***@db.example/inventory"
        );
        assert_eq!(
            url.expose_secret(),
            "postgres://app:hunter2@db.example/inventory"
        );
    }

    #[test]
    fn a_short_password_is_replaced_only_where_it_is_the_password() {
        let url = "redis://:a@cache-a.example";
        assert_eq!(redact_url(url), "redis://:***@cache-a.example");
    }
}
