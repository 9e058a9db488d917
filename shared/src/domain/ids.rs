//! Identifiers that parse: a value of these types is always valid.

use crate::domain::rejection::{Rejection, RejectionCode};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest product or supplier id, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest supplier `update_id`, in bytes.
pub const MAX_UPDATE_ID_LEN: usize = 128;
/// The supplier a record is attributed to when it names none.
pub const DEFAULT_SUPPLIER: &str = "unspecified";

/// The id rules as a regular expression (for the JSON Schema and OpenAPI documents; the
/// parsers below are the authority, and the contract tests hold the two together).
pub fn id_pattern() -> String {
    format!("^[A-Za-z0-9._-]{{1,{MAX_ID_LEN}}}$")
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A catalog product id (a SKU): 1 to 64 characters of `[A-Za-z0-9._-]`.
///
/// The character set keeps ids safe inside S3 keys, Redis keys and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductId(String);

impl ProductId {
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() {
            return Err(Rejection::new(
                RejectionCode::ProductIdEmpty,
                "product_id is empty",
            ));
        }
        if s.len() > MAX_ID_LEN {
            return Err(Rejection::new(
                RejectionCode::ProductIdTooLong,
                format!(
                    "product_id is {} bytes long, the limit is {MAX_ID_LEN}",
                    s.len()
                ),
            ));
        }
        if let Some(c) = s.chars().find(|c| !is_id_char(*c)) {
            return Err(Rejection::new(
                RejectionCode::ProductIdInvalidChars,
                format!(
                    "product_id has the character {c:?}; allowed are A-Z, a-z, 0-9, '.', '_' and '-'"
                ),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A supplier id, same character rules as [`ProductId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SupplierId(String);

impl SupplierId {
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() || s.len() > MAX_ID_LEN || !s.chars().all(is_id_char) {
            return Err(Rejection::new(
                RejectionCode::SupplierIdInvalid,
                format!(
                    "supplier_id must be 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_' and '-' (got {} bytes)",
                    s.len()
                ),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The supplier used when a record names none.
    pub fn unspecified() -> Self {
        Self(DEFAULT_SUPPLIER.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A supplier's idempotency key for one update: 1 to 128 bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UpdateId(String);

impl UpdateId {
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() || s.len() > MAX_UPDATE_ID_LEN || s.chars().any(char::is_control) {
            return Err(Rejection::new(
                RejectionCode::UpdateIdInvalid,
                format!(
                    "update_id must be 1 to {MAX_UPDATE_ID_LEN} bytes with no control characters (got {} bytes)",
                    s.len()
                ),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = Rejection;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
string_newtype_impls!(ProductId, SupplierId, UpdateId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_lends_out_its_text_as_sent() {
        fn text(id: &impl AsRef<str>) -> &str {
            id.as_ref()
        }
        assert_eq!(text(&ProductId::parse("SKU-1").expect("valid")), "SKU-1");
        assert_eq!(text(&SupplierId::parse("acme").expect("valid")), "acme");
        assert_eq!(text(&UpdateId::parse("u 1").expect("valid")), "u 1");
    }

    #[test]
    fn a_plain_sku_is_a_product_id() {
        assert_eq!(
            ProductId::parse("product123").map(|p| p.to_string()),
            Ok("product123".into())
        );
        assert!(ProductId::parse("SKU-12_3.4").is_ok());
    }

    #[test]
    fn product_ids_are_rejected_with_the_reason() {
        let code = |s: &str| ProductId::parse(s).expect_err("must reject").code;
        assert_eq!(code(""), RejectionCode::ProductIdEmpty);
        assert_eq!(code(&"a".repeat(65)), RejectionCode::ProductIdTooLong);
        assert_eq!(code("a b"), RejectionCode::ProductIdInvalidChars);
        assert_eq!(code("café"), RejectionCode::ProductIdInvalidChars);
        assert_eq!(code("a:b"), RejectionCode::ProductIdInvalidChars);
        assert!(ProductId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn supplier_and_update_ids_have_their_own_rules() {
        assert_eq!(
            SupplierId::parse("").expect_err("empty").code,
            RejectionCode::SupplierIdInvalid
        );
        assert_eq!(SupplierId::unspecified().as_str(), DEFAULT_SUPPLIER);
        assert!(UpdateId::parse("batch 7 / line 9 ✓").is_ok());
        assert_eq!(
            UpdateId::parse("a\u{0}b").expect_err("control").code,
            RejectionCode::UpdateIdInvalid
        );
        assert_eq!(
            UpdateId::parse(&"x".repeat(129)).expect_err("long").code,
            RejectionCode::UpdateIdInvalid
        );
    }

    #[test]
    fn ids_revalidate_when_deserialised() {
        assert!(serde_json::from_str::<ProductId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<ProductId>("\"not ok\"").is_err());
    }
}
