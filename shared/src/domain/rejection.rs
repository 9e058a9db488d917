//! Why a record was rejected: a stable machine-readable code plus a human message.
//!
//! Codes are part of the public contract (quarantine rows, the supplier CLI, dashboards):
//! never rename one, only add.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable rejection code. Serialised in `snake_case`, the same name in
/// JSON (serde) and in text ([`RejectionCode::as_str`], strum).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::VariantArray,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RejectionCode {
    /// The record is larger than [`crate::domain::update::MAX_RECORD_BYTES`].
    RecordTooLarge,
    /// The record is empty.
    EmptyRecord,
    /// The bytes are not valid UTF-8.
    NotUtf8,
    /// The text is not valid JSON (or nests too deeply).
    NotJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// The object has a field that the data contract does not define.
    UnknownField,
    /// The object names the same field twice.
    DuplicateField,
    /// `product_id` is absent or null.
    ProductIdMissing,
    /// `product_id` is not a string.
    ProductIdWrongType,
    /// `product_id` is an empty string.
    ProductIdEmpty,
    /// `product_id` is longer than [`crate::domain::ids::MAX_ID_LEN`].
    ProductIdTooLong,
    /// `product_id` has a character outside `[A-Za-z0-9._-]`.
    ProductIdInvalidChars,
    /// `supplier_id` is not a string.
    SupplierIdWrongType,
    /// `supplier_id` is empty, too long, or has a character outside `[A-Za-z0-9._-]`.
    SupplierIdInvalid,
    /// Neither `quantity` nor `inventory` is given.
    QuantityMissing,
    /// Both `quantity` and `inventory` are given.
    QuantityAmbiguous,
    /// The quantity is not a JSON number.
    QuantityWrongType,
    /// The quantity has a fraction or an exponent.
    QuantityNotInteger,
    /// The quantity is below zero.
    QuantityNegative,
    /// The quantity is above [`crate::domain::money::MAX_QUANTITY`].
    QuantityTooLarge,
    /// `price` is absent or null.
    PriceMissing,
    /// `price` is neither a JSON number nor a decimal string.
    PriceWrongType,
    /// `price` is not a plain decimal (for example it uses an exponent).
    PriceInvalid,
    /// The price is below zero.
    PriceNegative,
    /// The price has more than [`crate::domain::money::MAX_PRICE_SCALE`] decimal places.
    PriceTooPrecise,
    /// The price is above [`crate::domain::money::MAX_PRICE`].
    PriceTooLarge,
    /// `currency` is not a string.
    CurrencyWrongType,
    /// `currency` is not an ISO 4217 code that we accept.
    CurrencyUnknown,
    /// `update_id` is not a string.
    UpdateIdWrongType,
    /// `update_id` is empty, too long, or has control characters.
    UpdateIdInvalid,
    /// `occurred_at` is not a string.
    OccurredAtWrongType,
    /// `occurred_at` is not an RFC 3339 timestamp with an offset.
    OccurredAtInvalid,
    /// `occurred_at` lies too far after the stream's arrival time.
    OccurredAtInFuture,
    /// `occurred_at` lies before [`crate::domain::update::EARLIEST_OCCURRED_AT`].
    OccurredAtTooOld,
    /// The record could not be fetched from where the fan-out put it.
    PayloadUnavailable,
    /// `schema_version` names a version of the contract that this pipeline does not read.
    SchemaVersionUnsupported,
    /// `extensions` is not a JSON object.
    ExtensionsWrongType,
    /// The record is validated more than [`crate::domain::update::MAX_VALIDATION_DELAY`] after it
    /// reached the stream (an old execution's input run again): too late to tell whether it was
    /// already applied. Never the record's fault; replaying it from the quarantine sends it
    /// again.
    ArrivedTooLongAgo,
}

impl RejectionCode {
    /// Every code, in declaration order.
    pub const ALL: &'static [RejectionCode] = <Self as strum::VariantArray>::VARIANTS;

    /// Whether the rejection is the pipeline's doing, never the record's: the record is sound,
    /// and a replay sends it again.
    pub fn is_the_pipelines(self) -> bool {
        matches!(
            self,
            RejectionCode::PayloadUnavailable | RejectionCode::ArrivedTooLongAgo
        )
    }

    /// The code as it appears in JSON and in the quarantine table.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejection: the code to act on and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: RejectionCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;
    use RejectionCode::*;

    #[test]
    fn every_code_has_one_stable_name_in_json_in_the_quarantine_table_and_in_messages() {
        let mut names = std::collections::HashSet::new();
        for &code in RejectionCode::ALL {
            let json = serde_json::to_string(&code).expect("serialises");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.to_string(), code.as_str());
            let back: RejectionCode = serde_json::from_str(&json).expect("deserialises");
            assert_eq!(back, code);
            assert!(
                names.insert(code.as_str()),
                "{code:?} reuses the name {code}"
            );
        }
    }

    #[test]
    fn a_rejection_displays_its_code_and_message() {
        let r = Rejection::new(PriceNegative, "price -1 is below zero");
        assert_eq!(r.to_string(), "price_negative: price -1 is below zero");
    }
}
