//! Corpora of supplier records for property tests: valid records, arbitrary JSON values, and
//! valid records broken byte by byte and field by field. The fuzz test and the contract
//! agreement test draw from the same ones.

#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use inventory::domain::money::{MAX_PRICE_SCALE, MAX_QUANTITY};
use inventory::domain::update::{DEDUP_WINDOW, MAX_FUTURE_SKEW};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Strings that probe the edges: ASCII ids, unicode look-alikes and invisible characters,
/// escapes, control characters.
pub fn edgy_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._-]{0,70}",
        "\\PC{0,20}",
        Just("SKU\u{202E}1".to_owned()),    // right-to-left override
        Just("SKU\u{200B}1".to_owned()),    // zero-width space
        Just("SKU\u{FEFF}1".to_owned()),    // zero-width no-break space (BOM)
        Just("SKU-e\u{301}".to_owned()),    // combining acute accent
        Just("\u{0405}KU-1".to_owned()),    // Cyrillic DZE, looks like S
        Just("SKU\u{FF11}".to_owned()),     // fullwidth digit one
        Just("product\u{0}123".to_owned()), // NUL
        Just("\u{1F600}".to_owned()),       // emoji
        Just("   ".to_owned()),
        Just("USD".to_owned()),
        Just("NaN".to_owned()),
        Just("Infinity".to_owned()),
        Just("-0".to_owned()),
        Just("1e400".to_owned()),
        Just("29.99".to_owned()),
        Just("2026-11-24T11:59:59Z".to_owned()),
        Just("2026-11-24T23:59:60Z".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
    ]
}

/// JSON numbers as text, including huge, tiny, negative-zero and exponent forms.
pub fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0i64..=MAX_QUANTITY).prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        "-?[0-9]{1,40}(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,4})?",
        Just("-0".to_owned()),
        Just("1e400".to_owned()),
        Just("0.00000000000000000000000000000001".to_owned()),
        Just("79228162514264337593543950336".to_owned()),
    ]
}

pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number_text().prop_filter_map("a JSON number", |t| serde_json::from_str(&t).ok()),
        edgy_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly the contract's field names, sometimes anything.
pub fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "product_id", "quantity", "inventory", "price", "currency", "supplier_id",
            "update_id", "occurred_at", "schema_version", "extensions",
        ][..]).prop_map(str::to_owned),
        1 => edgy_string(),
    ]
}

/// When the records reach the stream in the tests that parse them (their `source()`): a valid
/// `occurred_at` lies from the dedup window before this to the skew after it.
fn arrival() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .expect("valid time")
}

/// A record the contract accepts, as a JSON object.
pub fn valid_record() -> impl Strategy<Value = Value> {
    let price = (0i64..=999_999_999_999, 0u32..=MAX_PRICE_SCALE)
        .prop_map(|(units, scale)| rust_decimal::Decimal::new(units, scale).to_string());
    (
        "[A-Za-z0-9._-]{1,64}",
        0i64..=MAX_QUANTITY,
        any::<bool>(),
        price,
        any::<bool>(),
        prop::option::of(prop::sample::select(&["USD", "EUR", "JPY", "GBP"][..])),
        prop::option::of("[A-Za-z0-9._-]{1,64}"),
        prop::option::of("[ -~]{1,128}"),
        prop::option::of(0i64..=(DEDUP_WINDOW + MAX_FUTURE_SKEW).num_seconds()),
        any::<bool>(),
        prop::option::of(prop::collection::vec((edgy_string(), edgy_string()), 0..4)),
    )
        .prop_map(
            |(
                product,
                quantity,
                as_inventory,
                price,
                price_as_string,
                currency,
                supplier,
                update_id,
                secs,
                with_version,
                extensions,
            )| {
                let mut r = Map::new();
                r.insert("product_id".into(), product.into());
                let qty_name = if as_inventory {
                    "inventory"
                } else {
                    "quantity"
                };
                r.insert(qty_name.into(), quantity.into());
                let price = if price_as_string {
                    Value::String(price)
                } else {
                    serde_json::from_str(&price).expect("a decimal is a JSON number")
                };
                r.insert("price".into(), price);
                if let Some(c) = currency {
                    r.insert("currency".into(), c.into());
                }
                if let Some(s) = supplier {
                    r.insert("supplier_id".into(), s.into());
                }
                if let Some(u) = update_id {
                    r.insert("update_id".into(), u.into());
                }
                if let Some(secs) = secs {
                    let at = arrival() - DEDUP_WINDOW + Duration::seconds(secs);
                    r.insert("occurred_at".into(), at.to_rfc3339().into());
                }
                if with_version {
                    r.insert("schema_version".into(), 1.into());
                }
                if let Some(ext) = extensions {
                    let ext: Map<String, Value> =
                        ext.into_iter().map(|(k, v)| (k, v.into())).collect();
                    r.insert("extensions".into(), Value::Object(ext));
                }
                Value::Object(r)
            },
        )
}

/// One way of breaking (or not) a valid record.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipByte(usize, u8),
    InsertByte(usize, u8),
    Truncate(usize),
    ReplaceField(String, Value),
    RemoveField(String),
    DuplicateField(String),
    PrefixBom,
    WrapInArray,
    NestDeep(usize),
    PadWhitespace(usize),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::InsertByte(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (field_name(), json_value()).prop_map(|(k, v)| Mutation::ReplaceField(k, v)),
        field_name().prop_map(Mutation::RemoveField),
        field_name().prop_map(Mutation::DuplicateField),
        Just(Mutation::PrefixBom),
        Just(Mutation::WrapInArray),
        (100usize..400).prop_map(Mutation::NestDeep),
        (0usize..20_000).prop_map(Mutation::PadWhitespace),
    ]
}

pub fn apply(record: &Value, mutations: &[Mutation]) -> Vec<u8> {
    let mut value = record.clone();
    let mut bytes: Vec<u8> = Vec::new();
    for m in mutations {
        if bytes.is_empty() {
            bytes = serde_json::to_vec(&value).expect("encodes");
        }
        match m {
            Mutation::ReplaceField(k, v) => {
                value[k.as_str()] = v.clone();
                bytes.clear();
            }
            Mutation::RemoveField(k) => {
                if let Some(o) = value.as_object_mut() {
                    o.remove(k);
                }
                bytes.clear();
            }
            Mutation::DuplicateField(k) => {
                let v = value.get(k).cloned().unwrap_or(Value::Null);
                let tail = bytes.split_off(bytes.len().saturating_sub(1));
                let sep: &[u8] = if bytes.len() > 1 { b"," } else { b"" };
                bytes.extend_from_slice(sep);
                bytes.extend_from_slice(format!("{}:{v}", Value::String(k.clone())).as_bytes());
                bytes.extend_from_slice(&tail);
            }
            Mutation::FlipByte(i, b) => {
                let i = i % bytes.len();
                bytes[i] ^= b | 1;
            }
            Mutation::InsertByte(i, b) => bytes.insert(i % (bytes.len() + 1), *b),
            Mutation::Truncate(i) => bytes.truncate(i % bytes.len()),
            Mutation::PrefixBom => bytes.splice(0..0, "\u{FEFF}".bytes()).for_each(drop),
            Mutation::WrapInArray => {
                bytes.insert(0, b'[');
                bytes.push(b']');
            }
            Mutation::NestDeep(depth) => {
                let nested = format!("{}1{}", "[".repeat(*depth), "]".repeat(*depth));
                value["price"] = Value::Null;
                let text = serde_json::to_string(&value).expect("encodes").replacen(
                    "\"price\":null",
                    &format!("\"price\":{nested}"),
                    1,
                );
                bytes = text.into_bytes();
            }
            Mutation::PadWhitespace(n) => {
                bytes
                    .splice(0..0, std::iter::repeat_n(b' ', *n))
                    .for_each(drop);
            }
        }
    }
    if bytes.is_empty() {
        bytes = serde_json::to_vec(&value).expect("encodes");
    }
    bytes
}
