//! The inbound record's contract for people and programs outside this code base: the README's
//! contract table and, with the `schema` feature, the JSON Schema of a record, both made from
//! the parser's own types and limits so they cannot drift from it.
//!
//! `contract/inventory-update.schema.json` and the README's generated block are checked
//! current by `shared/tests/contract.rs`; `UPDATE_CONTRACT=1 cargo test -p inventory --test
//! contract` rewrites both.

use crate::domain::ids::{DEFAULT_SUPPLIER, MAX_ID_LEN, MAX_UPDATE_ID_LEN};
use crate::domain::money::{MAX_PRICE, MAX_PRICE_SCALE, MAX_QUANTITY};
use crate::domain::rejection::RejectionCode;
use crate::domain::update::{
    DEDUP_WINDOW, EARLIEST_OCCURRED_AT, MAX_FUTURE_SKEW, MAX_RECORD_BYTES, MAX_VALIDATION_DELAY,
    SCHEMA_VERSION,
};
use std::fmt::Write as _;

/// Where the generated schema is committed, relative to the repository root.
pub const SCHEMA_PATH: &str = "contract/inventory-update.schema.json";
/// The schema's `$id`.
pub const SCHEMA_ID: &str = "urn:inventory-pipeline:contract:inventory-update:1";

/// A rule the parser enforces that a JSON Schema cannot state. Each one only ever makes the
/// parser stricter than the schema: a record the schema refuses is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    /// What the parser checks.
    pub rule: &'static str,
    /// Why the schema cannot say it.
    pub why: &'static str,
    /// The rejection codes the parser gives for it (none: the rule drops, not rejects).
    pub codes: &'static [RejectionCode],
}

/// The documented exceptions to "the schema accepts exactly what the parser accepts".
pub const EXCEPTIONS: &[Exception] = &[
    Exception {
        rule: "a record is at most 16 KiB (16384 bytes) of UTF-8",
        why: "a schema sees the parsed value, not its bytes",
        codes: &[RejectionCode::RecordTooLarge],
    },
    Exception {
        rule: "a field appears at most once in the object",
        why: "JSON parsers keep one of the duplicates before a schema sees them",
        codes: &[RejectionCode::DuplicateField],
    },
    Exception {
        rule: "`quantity` is written as a whole number without fraction or exponent (`5`, not `5.0` or `5e0`)",
        why: "a schema sees the number, not how it is written; `5.0` is an integer to JSON Schema",
        codes: &[RejectionCode::QuantityNotInteger],
    },
    Exception {
        rule: "a `price` number is written as a plain decimal with at most 4 decimal places (no exponent), the same digits as a price string",
        why: "a schema sees a binary floating-point value, where `29.99` is not exact and `multipleOf` is unreliable",
        codes: &[RejectionCode::PriceInvalid, RejectionCode::PriceTooPrecise],
    },
    Exception {
        rule: "`update_id` is at most 128 bytes of UTF-8",
        why: "`maxLength` counts characters, not bytes",
        codes: &[RejectionCode::UpdateIdInvalid],
    },
    Exception {
        rule: "`occurred_at` is at most 5 minutes after the record reached the stream",
        why: "it depends on the arrival time, which is not in the record",
        codes: &[RejectionCode::OccurredAtInFuture],
    },
    Exception {
        rule: "`occurred_at` is not before 2000-01-01T00:00:00Z, nor more than 30 days (the dedup window) before the record reached the stream",
        why: "JSON Schema cannot compare date-times, and the record's arrival is not in the record",
        codes: &[RejectionCode::OccurredAtTooOld],
    },
    Exception {
        rule: "an `update_id` is unique per supplier: a second record with the same `supplier_id` and `update_id` arriving within 30 days (the dedup window) of the first is dropped as a duplicate (not rejected), whatever it holds",
        why: "it depends on the records sent before",
        codes: &[],
    },
];

/// What a rejection code means, for the README's table. Exhaustive: a new code does not
/// compile until it is described here.
pub fn meaning(code: RejectionCode) -> String {
    use RejectionCode::*;
    match code {
        RecordTooLarge => format!("the record is larger than {MAX_RECORD_BYTES} bytes"),
        EmptyRecord => "the record is empty or only whitespace".into(),
        NotUtf8 => "the bytes are not valid UTF-8".into(),
        NotJson => "the text is not valid JSON (a byte order mark, `NaN`, a broken escape, nesting deeper than 128)".into(),
        NotAnObject => "valid JSON, but not an object".into(),
        UnknownField => "a top-level field the contract does not define (put your own under `extensions`)".into(),
        DuplicateField => "the object names the same field twice".into(),
        ProductIdMissing => "`product_id` is absent or null".into(),
        ProductIdWrongType => "`product_id` is not a string".into(),
        ProductIdEmpty => "`product_id` is an empty string".into(),
        ProductIdTooLong => format!("`product_id` is longer than {MAX_ID_LEN} bytes"),
        ProductIdInvalidChars => "`product_id` has a character outside `A-Z a-z 0-9 . _ -`".into(),
        SupplierIdWrongType => "`supplier_id` is not a string".into(),
        SupplierIdInvalid => format!(
            "`supplier_id` is empty, longer than {MAX_ID_LEN} bytes, or has a character outside `A-Z a-z 0-9 . _ -`"
        ),
        QuantityMissing => "neither `quantity` nor `inventory` is given (or both are null)".into(),
        QuantityAmbiguous => "both `quantity` and `inventory` are given".into(),
        QuantityWrongType => "the quantity is not a JSON number (a string such as `\"5\"` is refused)".into(),
        QuantityNotInteger => "the quantity has a fraction or an exponent".into(),
        QuantityNegative => "the quantity is below zero".into(),
        QuantityTooLarge => format!("the quantity is above {MAX_QUANTITY}"),
        PriceMissing => "`price` is absent or null".into(),
        PriceWrongType => "`price` is neither a JSON number nor a string".into(),
        PriceInvalid => "`price` is not a plain decimal such as `29.99` (an exponent, `NaN`, `Infinity`)".into(),
        PriceNegative => "the price is below zero".into(),
        PriceTooPrecise => format!(
            "the price has more than {MAX_PRICE_SCALE} decimal places (trailing zeros do not count)"
        ),
        PriceTooLarge => format!("the price is above {MAX_PRICE}"),
        CurrencyWrongType => "`currency` is not a string".into(),
        CurrencyUnknown => "`currency` is not an active ISO 4217 code in upper case".into(),
        UpdateIdWrongType => "`update_id` is not a string".into(),
        UpdateIdInvalid => format!(
            "`update_id` is empty, longer than {MAX_UPDATE_ID_LEN} bytes, or has a control character"
        ),
        OccurredAtWrongType => "`occurred_at` is not a string".into(),
        OccurredAtInvalid => "`occurred_at` is not an RFC 3339 timestamp with an offset".into(),
        OccurredAtInFuture => format!(
            "`occurred_at` is more than {} minutes after the record reached the stream",
            MAX_FUTURE_SKEW.num_minutes()
        ),
        OccurredAtTooOld => format!(
            "`occurred_at` is before {EARLIEST_OCCURRED_AT}, or more than {} days before the record reached the stream (the dedup window: the pipeline no longer knows whether an update that old was already applied; docs/event-store.md)",
            DEDUP_WINDOW.num_days()
        ),
        PayloadUnavailable => "the pipeline could not fetch the record from where it stored it on the way in (never the record's fault; replayable)".into(),
        SchemaVersionUnsupported => format!(
            "`schema_version` is not the number {SCHEMA_VERSION} (the only version this pipeline reads)"
        ),
        ExtensionsWrongType => "`extensions` is not a JSON object".into(),
        ArrivedTooLongAgo => format!(
            "the pipeline validated the record more than {} days after it reached the stream (an old execution's input run again), too late to tell whether it was already applied (never the record's fault; replayable: a replay sends it again)",
            MAX_VALIDATION_DELAY.num_days()
        ),
    }
}

/// The README's contract block: the field rules, the record-level rules, every rejection
/// code, and the exceptions to the schema, all from the parser's constants.
pub fn readme_block() -> String {
    let mut s = String::new();
    let minutes = MAX_FUTURE_SKEW.num_minutes();
    let window = DEDUP_WINDOW.num_days();
    let rows: &[(&str, String)] = &[
        (
            "`product_id`",
            format!("required; 1–{MAX_ID_LEN} characters of `A-Z a-z 0-9 . _ -`"),
        ),
        (
            "`quantity` (or `inventory`)",
            format!(
                "required: exactly one of the two (both given: `quantity_ambiguous`; null counts as absent); a JSON number written as a whole number, 0 to {MAX_QUANTITY}"
            ),
        ),
        (
            "`price`",
            format!(
                "required; a JSON number or a decimal string (`29.99`, `\"29.99\"`, no exponent), 0 to {MAX_PRICE}, at most {MAX_PRICE_SCALE} decimal places after trailing zeros are dropped; kept exact, never a float"
            ),
        ),
        (
            "`currency`",
            "active ISO 4217 code in upper case; `USD` when absent or null".into(),
        ),
        (
            "`supplier_id`",
            format!(
                "`{DEFAULT_SUPPLIER}` when absent or null; same characters and length as `product_id`"
            ),
        ),
        (
            "`update_id`",
            format!(
                "optional; the supplier's idempotency key: 1–{MAX_UPDATE_ID_LEN} bytes of UTF-8, no control characters. Scoped by supplier: a second record with the same `supplier_id` and `update_id` arriving within {window} days of the first is dropped as a duplicate, whatever it holds, while another supplier may use the same id; do not reuse an id within that window. When absent, the key is a hash of the content (product, supplier, quantity, price, currency, `occurred_at`)"
            ),
        ),
        (
            "`occurred_at`",
            format!(
                "RFC 3339 with an offset, kept to the microsecond; the stream's arrival time when absent or null; not before {EARLIEST_OCCURRED_AT}, at most {minutes} minutes after and at most {window} days before the record reached the stream. Per product and supplier the newest `occurred_at` wins"
            ),
        ),
        (
            "`schema_version`",
            format!(
                "optional; the number {SCHEMA_VERSION} (the contract's major version). Not part of the key"
            ),
        ),
        (
            "`extensions`",
            "optional JSON object for the supplier's own fields: archived with the record, never read by the pipeline, not part of the key".into(),
        ),
    ];
    s.push_str("| field | rule |\n| --- | --- |\n");
    for (field, rule) in rows {
        let _ = writeln!(s, "| {field} | {rule} |");
    }
    let _ = write!(
        s,
        "\nThe record is one JSON object of at most {} KiB ({MAX_RECORD_BYTES} bytes) of UTF-8, no byte \
         order mark. A field given twice is rejected (`duplicate_field`); any top-level field not \
         listed is rejected (`unknown_field`): fields of your own go under `extensions` (see \
         [docs/contract.md](docs/contract.md)). The JSON Schema is \
         [`{SCHEMA_PATH}`]({SCHEMA_PATH}).\n\n",
        MAX_RECORD_BYTES / 1024
    );
    s.push_str("| rejection code | meaning |\n| --- | --- |\n");
    for &code in RejectionCode::ALL {
        let _ = writeln!(s, "| `{code}` | {} |", meaning(code));
    }
    s.push_str(
        "\nRules the JSON Schema cannot state (the parser is stricter there, never looser):\n\n",
    );
    for e in EXCEPTIONS {
        let codes: Vec<String> = e.codes.iter().map(|c| format!("`{c}`")).collect();
        let codes = if codes.is_empty() {
            "not a rejection".to_owned()
        } else {
            codes.join(", ")
        };
        let _ = writeln!(s, "- {} ({codes}): {}.", e.rule, e.why);
    }
    s
}

#[cfg(feature = "schema")]
pub use schema::{Extensions, OccurredAt, SchemaVersion, record_rules, record_schema};

#[cfg(feature = "schema")]
mod schema {
    use super::{SCHEMA_ID, SCHEMA_VERSION};
    use crate::domain::ids::{MAX_UPDATE_ID_LEN, ProductId, SupplierId, UpdateId, id_pattern};
    use crate::domain::money::{
        Currency, ISO_4217, MAX_PRICE, MAX_PRICE_SCALE, MAX_QUANTITY, Price, Quantity,
    };
    use crate::domain::update::RecordFields;
    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
    use std::borrow::Cow;

    impl JsonSchema for ProductId {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "ProductId".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "pattern": id_pattern() })
        }
    }

    impl JsonSchema for SupplierId {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "SupplierId".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "pattern": id_pattern() })
        }
    }

    impl JsonSchema for UpdateId {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "UpdateId".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            // Rust's `char::is_control` is Unicode's Cc: U+0000–U+001F and U+007F–U+009F.
            json_schema!({
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_UPDATE_ID_LEN,
                "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
            })
        }
    }

    impl JsonSchema for Quantity {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "Quantity".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "integer", "minimum": 0, "maximum": MAX_QUANTITY })
        }
    }

    impl JsonSchema for Price {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "Price".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            let max: u64 = MAX_PRICE.try_into().unwrap_or(u64::MAX);
            let nines = max.to_string();
            assert!(
                nines.bytes().all(|b| b == b'9'),
                "the price pattern below assumes MAX_PRICE is 10^n - 1"
            );
            let n = nines.len();
            // As a string: surrounding whitespace is trimmed; a negative price may only be
            // zero; leading zeros are allowed; at most MAX_PRICE_SCALE places once trailing
            // zeros are dropped; below n digits any fraction, n digits only up to MAX_PRICE.
            let places = format!("\\.[0-9]{{1,{MAX_PRICE_SCALE}}}0*");
            let pattern = format!(
                "^\\s*(-0+(\\.0+)?|0*(0|[1-9][0-9]{{0,{short}}})({places})?|0*[1-9][0-9]{{{rest}}}(\\.0+)?|0*(?!{nines}\\.)[1-9][0-9]{{{rest}}}{places})\\s*$",
                short = n - 2,
                rest = n - 1,
            );
            json_schema!({
                "anyOf": [
                    { "type": "number", "minimum": 0, "maximum": max },
                    { "type": "string", "pattern": pattern }
                ]
            })
        }
    }

    impl JsonSchema for Currency {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "Currency".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "enum": ISO_4217 })
        }
    }

    /// Schema stand-in for `occurred_at`: an RFC 3339 date-time.
    #[derive(Debug)]
    pub struct OccurredAt;

    impl JsonSchema for OccurredAt {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "OccurredAt".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "format": "date-time" })
        }
    }

    /// Schema stand-in for `schema_version`.
    #[derive(Debug)]
    pub struct SchemaVersion;

    impl JsonSchema for SchemaVersion {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "SchemaVersion".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "integer", "const": SCHEMA_VERSION })
        }
    }

    /// Schema stand-in for `extensions`: any object.
    #[derive(Debug)]
    pub struct Extensions;

    impl JsonSchema for Extensions {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "Extensions".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "object" })
        }
    }

    /// The rules between fields: `product_id` and `price` present and not null, exactly one
    /// of `quantity` and `inventory` present and not null.
    pub fn record_rules(schema: &mut Schema) {
        let obj = schema.ensure_object();
        obj.insert("$id".into(), SCHEMA_ID.into());
        obj.insert(
            "description".into(),
            "One inventory update a supplier puts on the stream: one product's stock and price \
             at one time. Generated from the pipeline's parser; rules a schema cannot state are \
             listed in the README's data contract."
                .into(),
        );
        // serde's `default` means "absent is allowed" to the parser, not "null is a value".
        if let Some(properties) = obj.get_mut("properties").and_then(|p| p.as_object_mut()) {
            for property in properties.values_mut() {
                if let Some(property) = property.as_object_mut() {
                    property.remove("default");
                }
            }
        }
        obj.insert(
            "required".into(),
            serde_json::json!(["product_id", "price"]),
        );
        obj.insert(
            "oneOf".into(),
            serde_json::json!([
                { "required": ["quantity"], "properties": { "quantity": { "type": "integer" } } },
                { "required": ["inventory"], "properties": { "inventory": { "type": "integer" } } }
            ]),
        );
    }

    /// The record's JSON Schema (draft 2020-12).
    pub fn record_schema() -> serde_json::Value {
        serde_json::Value::from(schemars::schema_for!(RecordFields<'static>))
    }
}
