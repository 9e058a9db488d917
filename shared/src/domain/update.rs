//! Turning a supplier's record into an [`InventoryUpdate`], or into a [`Rejection`] that says
//! exactly what is wrong. This is the data contract of SPEC.md, in one place.

use crate::domain::event::UpdateKey;
use crate::domain::ids::{ProductId, SupplierId, UpdateId};
use crate::domain::money::{Currency, Price, Quantity};
use crate::domain::rejection::{Rejection, RejectionCode};
use chrono::{DateTime, Duration, SecondsFormat, SubsecRound, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Largest record accepted, in bytes. A real update is a few hundred bytes.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
/// How far `occurred_at` may lie after the stream's arrival time (suppliers' clock skew).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// The dedup window: how far `occurred_at` may lie before the record reached the stream. An
/// older update is rejected (`occurred_at_too_old`), never appended.
///
/// Why: the event store remembers an update's idempotency key for [`KEY_RETENTION`] after its
/// first append, not for ever. Every path that can bring an update back to Persist (the
/// stream's retention, the fanout DLQ, redrive, a new execution with a failed one's input, a
/// replay from the quarantine or the archive, which put the record on the stream again) goes
/// through this check against the arrival time of the copy being validated, and reaches
/// Persist less than [`RETURN_MARGIN`] after that arrival ([`check_validation_delay`] refuses
/// the one path that could take longer). A copy that passes has `occurred_at`
/// at most the window before its arrival, and the first copy was appended no earlier than
/// five minutes before `occurred_at` ([`MAX_FUTURE_SKEW`]), so the first copy's key is still
/// kept when any later copy reaches Persist: the later copy is a repeat, appended never. An
/// update older than the window cannot change the projection either, since it never reaches
/// Persist; it stays in the quarantine with its reason, like any rejected record.
pub const DEDUP_WINDOW: Duration = Duration::days(30);

/// Step Functions redrives a failed execution within this long of its failure.
pub const REDRIVE_WINDOW: Duration = Duration::days(14);

/// The stream's longest retention (the template's `StreamRetentionHours` is at most 168).
pub const MAX_STREAM_RETENTION: Duration = Duration::days(7);

/// The longest a record may wait between reaching the stream and being validated: the fanout
/// reads it within the stream's retention, and a redrive of Validate comes within the redrive
/// window (`replay-dlq`, `replay-quarantine` and `reingest-archive` put records on the stream
/// again, so they arrive anew). A record validated later, which only happens when an old
/// execution's input is run again as a new execution, is rejected `arrived_too_long_ago`:
/// it is kept in the quarantine, and replaying it from there gives it a new arrival.
pub const MAX_VALIDATION_DELAY: Duration =
    Duration::days(MAX_STREAM_RETENTION.num_days() + REDRIVE_WINDOW.num_days() + 1);

/// The longest a validated copy can take to reach Persist after it arrived on the stream:
/// validated within [`MAX_VALIDATION_DELAY`], then Persist redriven within the redrive window
/// of that execution, and a day to spare.
pub const RETURN_MARGIN: Duration =
    Duration::days(MAX_VALIDATION_DELAY.num_days() + REDRIVE_WINDOW.num_days() + 1);

/// How long `inventory_update_key_ids` keeps a key after its first append: the dedup window plus
/// [`RETURN_MARGIN`]. The daily maintenance deletes older keys.
pub const KEY_RETENTION: Duration =
    Duration::days(DEDUP_WINDOW.num_days() + RETURN_MARGIN.num_days());

/// `Err(arrived_too_long_ago)` when a record that reached the stream at `arrived_at` is
/// validated at `now` more than [`MAX_VALIDATION_DELAY`] later.
pub fn check_validation_delay(
    arrived_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    if now - arrived_at <= MAX_VALIDATION_DELAY {
        return Ok(());
    }
    Err(Rejection::new(
        RejectionCode::ArrivedTooLongAgo,
        format!(
            "the record reached the stream at {}, more than {} days before this validation: too \
             late to tell whether it was already applied; replay it from the quarantine, which \
             puts it on the stream again",
            arrived_at.to_rfc3339(),
            MAX_VALIDATION_DELAY.num_days()
        ),
    ))
}

/// `occurred_at` before this is taken for a broken clock, not an old update.
pub fn earliest_occurred_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
/// Display form of [`earliest_occurred_at`], for messages and docs.
pub const EARLIEST_OCCURRED_AT: &str = "2000-01-01T00:00:00Z";

/// The event time of a record without `occurred_at`: its arrival time at the microsecond
/// precision PostgreSQL keeps. The content key of such a record is computed from this time, so
/// this is the one place that decides it (parsing and replays both use it).
pub fn arrival_event_time(arrived_at: DateTime<Utc>) -> DateTime<Utc> {
    arrived_at.trunc_subsecs(6)
}

/// The text form of an event time, as the content key hashes it and a replay writes it.
pub fn event_time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `data`, with `"occurred_at"` set to the event time it took from `arrived_at`, when `data` is
/// a valid record without one; anything else unchanged (records the contract rejects are
/// sent again as they were).
///
/// A record without `occurred_at` takes the stream's arrival time as its time and, without an
/// `update_id`, its identity (the content key) from that time too. Sent again as it is, it
/// would arrive anew: a second event for an update already applied, and one that wins over
/// every newer update of its product. Every replay (of the DLQ, the quarantine, the archive)
/// therefore writes the original time into such a record: it then means exactly what it meant
/// the first time, and has the same content key. Each field keeps its exact JSON text.
pub fn with_arrival_time(data: &[u8], arrived_at: DateTime<Utc>) -> Vec<u8> {
    let source = SourcePosition {
        shard_id: String::new(),
        sequence_number: String::new(),
        arrived_at,
    };
    if !parse_record(data, &source).is_ok_and(|u| !u.occurred_at_from_supplier) {
        return data.to_vec();
    }
    // A valid record is a JSON object without duplicate keys (the parser has just accepted
    // it), so it reads as a map of its fields' raw text.
    let Ok(stamp) =
        serde_json::value::to_raw_value(&event_time_text(arrival_event_time(arrived_at)))
    else {
        return data.to_vec();
    };
    let Ok(mut fields) = serde_json::from_slice::<BTreeMap<String, &RawValue>>(data) else {
        return data.to_vec();
    };
    fields.insert("occurred_at".to_owned(), &stamp);
    serde_json::to_vec(&fields).unwrap_or_else(|_| data.to_vec())
}

/// Where a record came from in the stream. Together with the stream name it identifies a
/// record for good: a redelivered record has the same position.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourcePosition {
    pub shard_id: String,
    pub sequence_number: String,
    /// The stream's `ApproximateArrivalTimestamp`.
    pub arrived_at: DateTime<Utc>,
}

/// A valid inventory update: one supplier's stock and price for one product at one time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryUpdate {
    /// Idempotency key: the same update always has the same key.
    pub update_key: UpdateKey,
    pub product_id: ProductId,
    pub supplier_id: SupplierId,
    pub quantity: Quantity,
    pub price: Price,
    pub currency: Currency,
    /// The supplier's timestamp, or the arrival time when the record has none. Microsecond
    /// precision, as PostgreSQL keeps it.
    pub occurred_at: DateTime<Utc>,
    /// Whether `occurred_at` came from the supplier (false: from the stream's arrival time).
    pub occurred_at_from_supplier: bool,
    pub update_id: Option<UpdateId>,
    pub source: SourcePosition,
}

/// The record as it arrives, field by field, before any rule is applied. Values stay raw JSON
/// text so prices keep their exact digits.
///
/// [`ReadFields`] fills it key by key. With the `schema` feature the same struct yields the
/// contract's JSON Schema: each field takes its schema from the type that parses it
/// ([`crate::domain::contract`]); its `serde` attributes only shape that schema.
#[derive(Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(
        title = "Inventory update record",
        transform = crate::domain::contract::record_rules
    )
)]
#[cfg_attr(feature = "schema", serde(deny_unknown_fields))]
pub(crate) struct RecordFields<'a> {
    /// The catalog product (SKU). Required.
    #[cfg_attr(feature = "schema", schemars(with = "ProductId"))]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    product_id: Option<&'a RawValue>,
    /// Units in stock. Exactly one of `quantity` and `inventory` is required.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Quantity>"))]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    quantity: Option<&'a RawValue>,
    /// The brief's name for `quantity`.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Quantity>"))]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    inventory: Option<&'a RawValue>,
    /// The unit price, kept exact. Required.
    #[cfg_attr(feature = "schema", schemars(with = "Price"))]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    price: Option<&'a RawValue>,
    /// ISO 4217 code; `USD` when absent.
    #[cfg_attr(feature = "schema", schemars(with = "Option<Currency>"))]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    currency: Option<&'a RawValue>,
    /// The supplier; `unspecified` when absent.
    #[cfg_attr(feature = "schema", schemars(with = "Option<SupplierId>"))]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    supplier_id: Option<&'a RawValue>,
    /// The supplier's idempotency key, scoped by supplier: a reused id is dropped as a duplicate.
    #[cfg_attr(feature = "schema", schemars(with = "Option<UpdateId>"))]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    update_id: Option<&'a RawValue>,
    /// When the stock and price were true; the stream's arrival time when absent.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<crate::domain::contract::OccurredAt>")
    )]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    occurred_at: Option<&'a RawValue>,
    /// The contract's major version; absent or `1` today (see docs/contract.md).
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<crate::domain::contract::SchemaVersion>")
    )]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    schema_version: Option<&'a RawValue>,
    /// The supplier's own fields, kept in the archive and ignored by the pipeline.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<crate::domain::contract::Extensions>")
    )]
    #[cfg_attr(feature = "schema", serde(borrow, default))]
    extensions: Option<&'a RawValue>,
}

/// The contract's major version this parser reads. A record may say so in `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// The fields the contract allows.
const CONTRACT_FIELDS: [&str; 10] = [
    "product_id",
    "quantity",
    "inventory",
    "price",
    "currency",
    "supplier_id",
    "update_id",
    "occurred_at",
    "schema_version",
    "extensions",
];

/// A record object read key by key: its fields, or the first key the contract does not
/// allow, typed rather than left in a `serde_json` message. The whole object is read either
/// way, so broken JSON after a bad key is still reported as broken JSON.
struct ReadFields<'a> {
    fields: RecordFields<'a>,
    /// The first key that breaks the contract, if any.
    problem: Option<FieldProblem>,
    /// The contract fields given more than once (the last value is in `fields`).
    twice: [bool; CONTRACT_FIELDS.len()],
}

enum FieldProblem {
    Unknown(String),
    Duplicate(&'static str),
}

impl<'de> Deserialize<'de> for ReadFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
    type Value = ReadFields<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = RecordFields::default();
        let mut seen = [false; CONTRACT_FIELDS.len()];
        let mut twice = [false; CONTRACT_FIELDS.len()];
        let mut problem = None;
        while let Some(key) = map.next_key::<FieldKey>()? {
            let FieldKey::Known(i) = key else {
                map.next_value::<serde::de::IgnoredAny>()?;
                if let FieldKey::Unknown(name) = key {
                    problem.get_or_insert(FieldProblem::Unknown(name));
                }
                continue;
            };
            let value = map.next_value::<Option<&'de RawValue>>()?;
            if std::mem::replace(&mut seen[i], true) {
                twice[i] = true;
                problem.get_or_insert(FieldProblem::Duplicate(CONTRACT_FIELDS[i]));
            }
            let slot = match i {
                0 => &mut fields.product_id,
                1 => &mut fields.quantity,
                2 => &mut fields.inventory,
                3 => &mut fields.price,
                4 => &mut fields.currency,
                5 => &mut fields.supplier_id,
                6 => &mut fields.update_id,
                7 => &mut fields.occurred_at,
                8 => &mut fields.schema_version,
                _ => &mut fields.extensions,
            };
            *slot = value;
        }
        Ok(ReadFields {
            fields,
            problem,
            twice,
        })
    }
}

/// An object key: the index of a contract field, or the name of any other key.
enum FieldKey {
    Known(usize),
    Unknown(String),
}

impl<'de> Deserialize<'de> for FieldKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = FieldKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<FieldKey, E> {
                Ok(match CONTRACT_FIELDS.iter().position(|f| *f == key) {
                    Some(i) => FieldKey::Known(i),
                    None => FieldKey::Unknown(key.to_owned()),
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// The supplier a record names, read as far as the record allows, for records the contract
/// rejects as well as valid ones: its `supplier_id` when the bytes are a JSON object of at
/// most [`MAX_RECORD_BYTES`] that gives `supplier_id` once, as a valid id. `None` when the
/// record names no supplier (absent or null), names one twice, or cannot be read that far
/// (not UTF-8, not JSON, not an object, a `supplier_id` that is not a valid id).
pub fn claimed_supplier(data: &[u8]) -> Option<SupplierId> {
    if data.len() > MAX_RECORD_BYTES {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let ReadFields { fields, twice, .. } = serde_json::from_str(text).ok()?;
    let field = CONTRACT_FIELDS.iter().position(|f| *f == "supplier_id")?;
    if twice[field] {
        return None;
    }
    let name = serde_json::from_str::<String>(fields.supplier_id?.get()).ok()?;
    SupplierId::parse(&name).ok()
}

/// Parses and validates one record's bytes. Never panics; every failure names its reason.
pub fn parse_record(data: &[u8], source: &SourcePosition) -> Result<InventoryUpdate, Rejection> {
    if data.len() > MAX_RECORD_BYTES {
        return Err(Rejection::new(
            RejectionCode::RecordTooLarge,
            format!(
                "record is {} bytes, the limit is {MAX_RECORD_BYTES}",
                data.len()
            ),
        ));
    }
    let text = std::str::from_utf8(data).map_err(|e| {
        Rejection::new(
            RejectionCode::NotUtf8,
            format!("record is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    if text.trim().is_empty() {
        return Err(Rejection::new(
            RejectionCode::EmptyRecord,
            "record is empty",
        ));
    }
    if text.starts_with('\u{FEFF}') {
        // JSON text must not start with one (RFC 8259 8.1); name it, since it is invisible.
        return Err(Rejection::new(
            RejectionCode::NotJson,
            "record starts with a byte order mark (U+FEFF); send JSON without one",
        ));
    }
    if !text.trim_start().starts_with('{') {
        // serde would also read a struct from an array; the contract wants an object.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Rejection::new(RejectionCode::NotAnObject, "record must be a JSON object"),
            Err(e) => classify_json_error(e),
        });
    }
    let ReadFields {
        fields, problem, ..
    } = serde_json::from_str(text).map_err(classify_json_error)?;
    if let Some(problem) = problem {
        return Err(match problem {
            FieldProblem::Unknown(name) => Rejection::new(
                RejectionCode::UnknownField,
                format!(
                    "unknown field {name:?}; the contract allows product_id, quantity or inventory, price, currency, supplier_id, update_id, occurred_at and schema_version; put fields of your own under extensions"
                ),
            ),
            FieldProblem::Duplicate(name) => Rejection::new(
                RejectionCode::DuplicateField,
                format!("field {name:?} is given more than once"),
            ),
        });
    }
    check_evolution_fields(&fields)?;

    let product_id = match field_string(
        fields.product_id,
        "product_id",
        RejectionCode::ProductIdWrongType,
        "a string",
    )? {
        Some(s) => ProductId::parse(&s)?,
        None => {
            return Err(Rejection::new(
                RejectionCode::ProductIdMissing,
                "product_id is required",
            ));
        }
    };
    let supplier_id = match field_string(
        fields.supplier_id,
        "supplier_id",
        RejectionCode::SupplierIdWrongType,
        "a string",
    )? {
        Some(s) => SupplierId::parse(&s)?,
        None => SupplierId::unspecified(),
    };
    let quantity = match (fields.quantity, fields.inventory) {
        (Some(_), Some(_)) => {
            return Err(Rejection::new(
                RejectionCode::QuantityAmbiguous,
                "give either quantity or inventory, not both",
            ));
        }
        (Some(raw), None) | (None, Some(raw)) => parse_quantity(raw)?,
        (None, None) => {
            return Err(Rejection::new(
                RejectionCode::QuantityMissing,
                "quantity (or inventory) is required",
            ));
        }
    };
    let price = match fields.price {
        Some(raw) => parse_price(raw)?,
        None => {
            return Err(Rejection::new(
                RejectionCode::PriceMissing,
                "price is required",
            ));
        }
    };
    let currency = match field_string(
        fields.currency,
        "currency",
        RejectionCode::CurrencyWrongType,
        "a string such as \"USD\"",
    )? {
        Some(s) => Currency::parse(&s)?,
        None => Currency::default(),
    };
    let update_id = field_string(
        fields.update_id,
        "update_id",
        RejectionCode::UpdateIdWrongType,
        "a string",
    )?
    .map(|s| UpdateId::parse(&s))
    .transpose()?;
    let supplier_time = field_string(
        fields.occurred_at,
        "occurred_at",
        RejectionCode::OccurredAtWrongType,
        "an RFC 3339 string such as \"2026-01-31T12:00:00Z\"",
    )?
    .map(|s| parse_occurred_at(&s, source.arrived_at))
    .transpose()?;
    let occurred_at_from_supplier = supplier_time.is_some();
    let occurred_at = supplier_time.unwrap_or_else(|| arrival_event_time(source.arrived_at));

    let update_key = match &update_id {
        Some(id) => UpdateKey::for_supplier_update(&supplier_id, id),
        None => UpdateKey::for_content(
            &product_id,
            &supplier_id,
            quantity,
            price,
            currency,
            occurred_at,
        ),
    };
    Ok(InventoryUpdate {
        update_key,
        product_id,
        supplier_id,
        quantity,
        price,
        currency,
        occurred_at,
        occurred_at_from_supplier,
        update_id,
        source: source.clone(),
    })
}

/// `schema_version` must name a version this parser reads; `extensions` must be an object,
/// whose content the pipeline never reads (so it is not part of the content key either).
fn check_evolution_fields(fields: &RecordFields<'_>) -> Result<(), Rejection> {
    if let Some(raw) = fields.schema_version
        && raw.get() != SCHEMA_VERSION.to_string()
    {
        return Err(Rejection::new(
            RejectionCode::SchemaVersionUnsupported,
            format!(
                "schema_version {} is not supported; this pipeline reads version {SCHEMA_VERSION} (write it as the number {SCHEMA_VERSION}, or leave it out)",
                abbreviate(raw.get())
            ),
        ));
    }
    if let Some(raw) = fields.extensions
        && !raw.get().starts_with('{')
    {
        return Err(Rejection::new(
            RejectionCode::ExtensionsWrongType,
            format!(
                "extensions must be a JSON object, got {}",
                abbreviate(raw.get())
            ),
        ));
    }
    Ok(())
}

/// A record that `serde_json` could not read: broken JSON (syntax, cut short, too deep), or
/// JSON of the wrong shape (data).
fn classify_json_error(e: serde_json::Error) -> Rejection {
    if e.is_data() {
        Rejection::new(
            RejectionCode::NotAnObject,
            format!("record must be a JSON object ({e})"),
        )
    } else {
        Rejection::new(
            RejectionCode::NotJson,
            format!("record is not valid JSON ({e})"),
        )
    }
}

/// The string inside an optional raw JSON value: `Ok(None)` when absent (JSON `null` never
/// reaches here: serde maps it to `None`), the `wrong_type` rejection when it is not a string,
/// and `not_json` when it is a string with a broken escape (a lone surrogate, say).
fn field_string(
    raw: Option<&RawValue>,
    field: &str,
    wrong_type: RejectionCode,
    expected: &str,
) -> Result<Option<String>, Rejection> {
    let Some(raw) = raw else { return Ok(None) };
    match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => Ok(Some(s)),
        Err(e) if raw.get().starts_with('"') => Err(Rejection::new(
            RejectionCode::NotJson,
            format!("{field} is not a valid JSON string ({e})"),
        )),
        Err(_) => Err(Rejection::new(
            wrong_type,
            format!("{field} must be {expected}, got {}", abbreviate(raw.get())),
        )),
    }
}

fn parse_quantity(raw: &RawValue) -> Result<Quantity, Rejection> {
    let text = raw.get();
    if !looks_like_number(text) {
        return Err(Rejection::new(
            RejectionCode::QuantityWrongType,
            format!("quantity must be a JSON number, got {}", abbreviate(text)),
        ));
    }
    Quantity::parse_json_number(text)
}

fn parse_price(raw: &RawValue) -> Result<Price, Rejection> {
    let text = raw.get();
    if looks_like_number(text) {
        return Price::parse_decimal(text);
    }
    match serde_json::from_str::<String>(text) {
        Ok(s) => Price::parse_decimal(s.trim()),
        Err(_) => Err(Rejection::new(
            RejectionCode::PriceWrongType,
            format!(
                "price must be a JSON number or a decimal string, got {}",
                abbreviate(text)
            ),
        )),
    }
}

fn parse_occurred_at(s: &str, arrived_at: DateTime<Utc>) -> Result<DateTime<Utc>, Rejection> {
    let at = DateTime::parse_from_rfc3339(s)
        .map_err(|e| {
            Rejection::new(
                RejectionCode::OccurredAtInvalid,
                format!(
                    "occurred_at {:?} is not an RFC 3339 timestamp with an offset ({e})",
                    abbreviate(s)
                ),
            )
        })?
        .with_timezone(&Utc)
        .trunc_subsecs(6);
    if at > arrived_at + MAX_FUTURE_SKEW {
        return Err(Rejection::new(
            RejectionCode::OccurredAtInFuture,
            format!(
                "occurred_at {} is more than {} minutes after the record reached the stream ({})",
                at.to_rfc3339(),
                MAX_FUTURE_SKEW.num_minutes(),
                arrived_at.to_rfc3339()
            ),
        ));
    }
    if at < earliest_occurred_at() {
        return Err(Rejection::new(
            RejectionCode::OccurredAtTooOld,
            format!(
                "occurred_at {} is before {EARLIEST_OCCURRED_AT}",
                at.to_rfc3339()
            ),
        ));
    }
    if at < arrived_at - DEDUP_WINDOW {
        return Err(Rejection::new(
            RejectionCode::OccurredAtTooOld,
            format!(
                "occurred_at {} is more than {} days before the record reached the stream ({}): \
                 the pipeline no longer knows whether an update that old was already applied",
                at.to_rfc3339(),
                DEDUP_WINDOW.num_days(),
                arrived_at.to_rfc3339()
            ),
        ));
    }
    Ok(at)
}

fn looks_like_number(text: &str) -> bool {
    text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
}

/// Keeps rejection messages short when a field holds something huge.
fn abbreviate(text: &str) -> String {
    const MAX: usize = 40;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let cut = (0..=MAX)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> SourcePosition {
        SourcePosition {
            shard_id: "shardId-000000000000".into(),
            sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
            arrived_at: Utc
                .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
                .single()
                .expect("valid time"),
        }
    }

    fn parse(json: &str) -> Result<InventoryUpdate, Rejection> {
        parse_record(json.as_bytes(), &source())
    }

    fn code(json: &str) -> RejectionCode {
        parse(json).expect_err("must be rejected").code
    }

    #[test]
    fn a_record_without_a_time_sent_again_later_is_the_same_update() {
        let first = DateTime::parse_from_rfc3339("2026-03-01T10:15:00.123456789Z")
            .expect("time")
            .with_timezone(&Utc);
        let at = |arrived_at| SourcePosition {
            arrived_at,
            ..source()
        };
        let raw = br#" {"product_id": "product123", "inventory": 100, "price": 29.990}"#;
        let original = parse_record(raw, &at(first)).expect("valid");

        let again = with_arrival_time(raw, first);
        let replayed = parse_record(&again, &at(first + Duration::days(2))).expect("valid");

        assert_eq!(replayed.update_key, original.update_key);
        assert_eq!(replayed.occurred_at, original.occurred_at);
        assert!(replayed.occurred_at_from_supplier);
        assert_eq!(
            (replayed.quantity, replayed.price),
            (original.quantity, original.price)
        );
        let text = String::from_utf8_lossy(&again);
        assert!(
            text.contains(r#""occurred_at":"2026-03-01T10:15:00.123456Z""#),
            "{text}"
        );
        assert!(
            text.contains(r#""price":29.990"#),
            "the price keeps its digits: {text}"
        );
    }

    #[test]
    fn a_null_occurred_at_is_replaced_by_the_arrival_time_not_repeated() {
        let first = source().arrived_at;
        let raw = br#"{"product_id":"p","quantity":1,"price":1,"occurred_at":null}"#;
        let original = parse_record(raw, &source()).expect("null reads as absent");
        assert!(!original.occurred_at_from_supplier);

        let again = with_arrival_time(raw, first);
        let replayed = parse_record(&again, &source()).expect("still one occurred_at");

        assert_eq!(replayed.update_key, original.update_key);
        assert!(replayed.occurred_at_from_supplier);
    }

    #[test]
    fn a_record_with_its_own_time_or_that_the_contract_rejects_is_sent_again_unchanged() {
        let now = Utc::now();
        for raw in [
            br#"{"product_id":"p","quantity":1,"price":1,"occurred_at":"2026-03-01T10:00:00Z"}"#
                .as_slice(),
            br#"{"product_id":"p","quantity":-1,"price":1}"#,
            br#"{"product_id":"p","quantity":1,"price":1,"colour":"red"}"#,
            b"not json {",
            b"",
        ] {
            assert_eq!(with_arrival_time(raw, now), raw, "{raw:?}");
        }
    }

    #[test]
    fn the_briefs_record_is_accepted_with_defaults() {
        let u = parse(r#"{"product_id": "product123", "inventory": 100, "price": 29.99}"#)
            .expect("valid");
        assert_eq!(u.product_id.as_str(), "product123");
        assert_eq!(u.quantity.get(), 100);
        assert_eq!(u.price.to_string(), "29.99");
        assert_eq!(u.currency, Currency::USD);
        assert_eq!(u.supplier_id, SupplierId::unspecified());
        assert_eq!(u.occurred_at, source().arrived_at);
        assert!(!u.occurred_at_from_supplier);
        assert!(u.update_id.is_none());
    }

    #[test]
    fn the_full_form_is_accepted() {
        let u = parse(
            r#"{"product_id":"SKU-1","quantity":5,"price":"10.50","currency":"EUR","supplier_id":"acme",
                "update_id":"acme-42","occurred_at":"2026-11-24T11:59:00.1234567+01:00"}"#,
        )
        .expect("valid");
        assert_eq!(u.currency.as_str(), "EUR");
        assert_eq!(u.supplier_id.as_str(), "acme");
        assert_eq!(u.update_id.as_ref().map(UpdateId::as_str), Some("acme-42"));
        assert_eq!(
            u.occurred_at.to_rfc3339(),
            "2026-11-24T10:59:00.123456+00:00"
        );
        assert!(u.occurred_at_from_supplier);
        assert_eq!(u.price.to_string(), "10.5");
    }

    #[test]
    fn the_same_record_always_gets_the_same_key() {
        let a = parse(r#"{"product_id":"p","quantity":1,"price":1}"#).expect("valid");
        let b = parse(r#"{"price":1.0,"quantity":1,"product_id":"p"}"#).expect("valid");
        assert_eq!(a.update_key, b.update_key);
        let c = parse(r#"{"product_id":"p","quantity":2,"price":1}"#).expect("valid");
        assert_ne!(a.update_key, c.update_key);
    }

    #[test]
    fn a_supplier_update_id_decides_the_key_whatever_the_content() {
        let a = parse(
            r#"{"product_id":"p","quantity":1,"price":1,"update_id":"u1","supplier_id":"s"}"#,
        )
        .expect("valid");
        let b = parse(
            r#"{"product_id":"p","quantity":9,"price":1,"update_id":"u1","supplier_id":"s"}"#,
        )
        .expect("valid");
        let other_supplier = parse(
            r#"{"product_id":"p","quantity":1,"price":1,"update_id":"u1","supplier_id":"t"}"#,
        )
        .expect("valid");
        assert_eq!(a.update_key, b.update_key);
        assert_ne!(a.update_key, other_supplier.update_key);
    }

    #[test]
    fn record_level_problems_have_their_own_codes() {
        assert_eq!(
            parse_record(&[0xff, 0xfe], &source())
                .expect_err("bad")
                .code,
            RejectionCode::NotUtf8
        );
        assert_eq!(code(""), RejectionCode::EmptyRecord);
        assert_eq!(code("   "), RejectionCode::EmptyRecord);
        assert_eq!(code("{not json"), RejectionCode::NotJson);
        assert_eq!(code("[1,2]"), RejectionCode::NotAnObject);
        assert_eq!(code("42"), RejectionCode::NotAnObject);
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":1,"colour":"red"}"#),
            RejectionCode::UnknownField
        );
        assert_eq!(
            code(r#"{"product_id":"p","product_id":"q","quantity":1,"price":1}"#),
            RejectionCode::DuplicateField
        );
        let big = format!(r#"{{"product_id":"{}"}}"#, "a".repeat(MAX_RECORD_BYTES));
        assert_eq!(code(&big), RejectionCode::RecordTooLarge);
        let deep = format!("{}{}", "[".repeat(2_000), "]".repeat(2_000));
        assert_eq!(code(&deep), RejectionCode::NotAnObject);
        let deep_field = format!(
            r#"{{"product_id":{}{}}}"#,
            "[".repeat(2_000),
            "]".repeat(2_000)
        );
        assert_eq!(code(&deep_field), RejectionCode::ProductIdWrongType);
    }

    #[test]
    fn unknown_and_repeated_keys_are_named_wherever_they_stand() {
        let unknown = parse_record(
            br#"{"colour":"red","product_id":"p","quantity":1,"price":1}"#,
            &source(),
        )
        .expect_err("unknown");
        assert_eq!(unknown.code, RejectionCode::UnknownField);
        assert!(
            unknown.message.starts_with("unknown field \"colour\";"),
            "{}",
            unknown.message
        );
        let escaped = parse_record(
            br#"{"product\u005fid":"p","quantity":1,"price":1}"#,
            &source(),
        )
        .expect("an escaped key is the same key");
        assert_eq!(escaped.product_id.as_str(), "p");
        let repeated = parse_record(
            br#"{"price":null,"product_id":"p","quantity":1,"price":1}"#,
            &source(),
        )
        .expect_err("repeated");
        assert_eq!(repeated.code, RejectionCode::DuplicateField);
        assert!(
            repeated.message.contains("\"price\""),
            "{}",
            repeated.message
        );
        assert_eq!(
            code(r#"{"colour":"red","product_id":"p""#),
            RejectionCode::NotJson,
            "broken JSON after an unknown key is broken JSON"
        );
    }

    #[test]
    fn field_problems_have_their_own_codes() {
        assert_eq!(
            code(r#"{"quantity":1,"price":1}"#),
            RejectionCode::ProductIdMissing
        );
        assert_eq!(
            code(r#"{"product_id":null,"quantity":1,"price":1}"#),
            RejectionCode::ProductIdMissing
        );
        assert_eq!(
            code(r#"{"product_id":7,"quantity":1,"price":1}"#),
            RejectionCode::ProductIdWrongType
        );
        assert_eq!(
            code(r#"{"product_id":"","quantity":1,"price":1}"#),
            RejectionCode::ProductIdEmpty
        );
        assert_eq!(
            code(r#"{"product_id":"p","price":1}"#),
            RejectionCode::QuantityMissing
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"inventory":1,"price":1}"#),
            RejectionCode::QuantityAmbiguous
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":"1","price":1}"#),
            RejectionCode::QuantityWrongType
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":-3,"price":1}"#),
            RejectionCode::QuantityNegative
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":2.5,"price":1}"#),
            RejectionCode::QuantityNotInteger
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1}"#),
            RejectionCode::PriceMissing
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":true}"#),
            RejectionCode::PriceWrongType
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":"cheap"}"#),
            RejectionCode::PriceInvalid
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":-0.01}"#),
            RejectionCode::PriceNegative
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":0.00001}"#),
            RejectionCode::PriceTooPrecise
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":1,"currency":"usd"}"#),
            RejectionCode::CurrencyUnknown
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":1,"currency":1}"#),
            RejectionCode::CurrencyWrongType
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":1,"supplier_id":1}"#),
            RejectionCode::SupplierIdWrongType
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":1,"supplier_id":"a b"}"#),
            RejectionCode::SupplierIdInvalid
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":1,"update_id":[]}"#),
            RejectionCode::UpdateIdWrongType
        );
        assert_eq!(
            code(r#"{"product_id":"p","quantity":1,"price":1,"update_id":""}"#),
            RejectionCode::UpdateIdInvalid
        );
    }

    #[test]
    fn timestamps_must_be_rfc3339_and_plausible() {
        let with =
            |t: &str| format!(r#"{{"product_id":"p","quantity":1,"price":1,"occurred_at":{t}}}"#);
        assert_eq!(
            code(&with("1700000000")),
            RejectionCode::OccurredAtWrongType
        );
        assert_eq!(
            code(&with(r#""yesterday""#)),
            RejectionCode::OccurredAtInvalid
        );
        assert_eq!(
            code(&with(r#""2026-11-24 12:00:00""#)),
            RejectionCode::OccurredAtInvalid
        );
        assert_eq!(
            code(&with(r#""2026-11-24T12:06:00Z""#)),
            RejectionCode::OccurredAtInFuture
        );
        assert_eq!(
            code(&with(r#""1999-12-31T23:59:59Z""#)),
            RejectionCode::OccurredAtTooOld
        );
        assert!(
            parse(&with(r#""2026-11-24T12:04:59Z""#)).is_ok(),
            "small clock skew is tolerated"
        );
    }

    /// The dedup window is measured from the record's arrival, so a redriven or retried
    /// validation decides the same as the first one, whenever it runs.
    #[test]
    fn an_update_older_than_the_dedup_window_before_its_arrival_is_too_old() {
        let with =
            |t: &str| format!(r#"{{"product_id":"p","quantity":1,"price":1,"occurred_at":"{t}"}}"#);
        // The tests' arrival is 2026-11-24T12:00:00Z; the window is 30 days.
        assert!(
            parse(&with("2026-10-25T12:00:00Z")).is_ok(),
            "exactly 30 days"
        );
        let r = parse(&with("2026-10-25T11:59:59Z")).expect_err("a second older");
        assert_eq!(r.code, RejectionCode::OccurredAtTooOld);
        assert!(
            r.message
                .contains("more than 30 days before the record reached the stream"),
            "{}",
            r.message
        );
        assert_eq!(
            KEY_RETENTION,
            DEDUP_WINDOW + RETURN_MARGIN,
            "keys outlive the window by the margin"
        );
    }

    #[test]
    fn a_record_validated_later_than_any_redrive_could_is_rejected_as_arrived_too_long_ago() {
        let arrived = source().arrived_at;
        assert_eq!(MAX_VALIDATION_DELAY, Duration::days(22));
        assert!(check_validation_delay(arrived, arrived + MAX_VALIDATION_DELAY).is_ok());
        let r = check_validation_delay(
            arrived,
            arrived + MAX_VALIDATION_DELAY + Duration::seconds(1),
        )
        .expect_err("too late");
        assert_eq!(r.code, RejectionCode::ArrivedTooLongAgo);
        assert!(
            r.message
                .contains("more than 22 days before this validation"),
            "{}",
            r.message
        );
        assert!(
            RETURN_MARGIN > MAX_VALIDATION_DELAY + REDRIVE_WINDOW,
            "a copy validated in time reaches Persist within the margin"
        );
    }

    #[test]
    fn rejection_messages_stay_short_for_huge_values() {
        let long = format!(
            r#"{{"product_id":"p","quantity":"{}","price":1}}"#,
            "9".repeat(5000)
        );
        let r = parse(&long).expect_err("wrong type");
        assert!(r.message.len() < 200, "{}", r.message);
        assert!(r.message.contains("5002 bytes"));
    }

    #[test]
    fn edge_cases_from_real_feeds_get_a_reason_that_names_them() {
        let with = |field: &str, value: &str| {
            let mut fields = vec![("product_id", r#""p""#), ("quantity", "1"), ("price", "1")];
            fields.retain(|(k, _)| *k != field);
            fields.push((field, value));
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        };
        let bom = parse_record(
            "\u{FEFF}{\"product_id\":\"p\",\"quantity\":1,\"price\":1}".as_bytes(),
            &source(),
        )
        .expect_err("a BOM is not JSON");
        assert_eq!(bom.code, RejectionCode::NotJson);
        assert!(bom.message.contains("byte order mark"), "{}", bom.message);
        assert_eq!(code("{}"), RejectionCode::ProductIdMissing);
        assert_eq!(code("null"), RejectionCode::NotAnObject);
        assert_eq!(code(r#"[{"product_id":"p"}]"#), RejectionCode::NotAnObject);
        assert_eq!(code(&with("price", "NaN")), RejectionCode::NotJson);
        assert_eq!(
            code(&with("price", r#""NaN""#)),
            RejectionCode::PriceInvalid
        );
        assert_eq!(
            code(&with("price", r#""Infinity""#)),
            RejectionCode::PriceInvalid
        );
        assert_eq!(code(&with("price", "1e400")), RejectionCode::PriceInvalid);
        assert_eq!(
            code(&with("price", &"9".repeat(400))),
            RejectionCode::PriceTooLarge
        );
        assert_eq!(
            code(&with("quantity", &"9".repeat(400))),
            RejectionCode::QuantityTooLarge
        );
        assert_eq!(
            code(&with("quantity", "1e3")),
            RejectionCode::QuantityNotInteger
        );
        assert_eq!(
            code(&with("quantity", r#""NaN""#)),
            RejectionCode::QuantityWrongType
        );
        assert_eq!(code(&with("price", "null")), RejectionCode::PriceMissing);
        assert_eq!(
            parse(&with("quantity", "-0")).map(|u| u.quantity.get()),
            Ok(0)
        );
        for id in [
            r"SKU\u202e1",  // right-to-left override
            r"SKU\u200b1",  // zero-width space
            r"SKU\ufeff1",  // zero-width no-break space
            r"SKU-e\u0301", // combining acute accent
            r"\u0405KU-1",  // Cyrillic DZE, a homoglyph of S
            r"SKU\uff11",   // fullwidth digit one
        ] {
            assert_eq!(
                code(&with("product_id", &format!("\"{id}\""))),
                RejectionCode::ProductIdInvalidChars,
                "{id}"
            );
        }
    }

    /// The idempotency keys of records as suppliers send them today, pinned: a change to the
    /// contract (a new field, a new version) must never move an existing record's key, or a
    /// resend after the change would be stored twice.
    #[test]
    fn existing_records_keep_their_keys() {
        let key = |json: &str| parse(json).expect("valid").update_key.to_string();
        assert_eq!(
            key(r#"{"product_id": "product123", "inventory": 100, "price": 29.99}"#),
            "f39913ca6169b0659206ec9744b2e7b61744c535dbd7d188a225b6fbaf3690ca"
        );
        assert_eq!(
            key(
                r#"{"product_id":"SKU-1","quantity":5,"price":"10.50","currency":"EUR","supplier_id":"acme","occurred_at":"2026-11-24T11:59:00.1234567+01:00"}"#
            ),
            "0d45b1010cad0b7b68f7400cd9d8ca9fc77ddaf1b7da2855f5ab1cac263e9e04"
        );
        assert_eq!(
            key(
                r#"{"product_id":"SKU-1","quantity":5,"price":1,"supplier_id":"acme","update_id":"acme-42"}"#
            ),
            "1a9596a331ef457a1108350b227bd60e0b232c247a5dace622e967f762aa5daa"
        );
    }

    /// The evolution policy (docs/contract.md): a supplier's own fields go under `extensions`
    /// and are accepted whatever they hold, without changing the record's key; `schema_version`
    /// 1 (or none) is this contract; a new top-level field is still an error, so a typo in a
    /// contract field is never silently ignored.
    #[test]
    fn extensions_and_schema_version_are_accepted_without_changing_the_key() {
        let base = r#""product_id":"SKU-1","quantity":5,"price":"10.50","supplier_id":"acme""#;
        for tail in ["", r#","update_id":"acme-42""#] {
            let plain = parse(&format!("{{{base}{tail}}}")).expect("valid");
            for extra in [
                r#","extensions":{}"#,
                r#","extensions":{"warehouse":"north","batch":{"line":[1,2,3]},"quantity":-1}"#,
                r#","extensions":null"#,
                r#","schema_version":1"#,
                r#","schema_version":null"#,
                r#","schema_version":1,"extensions":{"x":null}"#,
            ] {
                let with = parse(&format!("{{{base}{tail}{extra}}}"))
                    .unwrap_or_else(|r| panic!("{extra}: {r}"));
                assert_eq!(with, plain, "{extra}");
            }
        }
        for (extra, expected) in [
            (
                r#""schema_version":2"#,
                RejectionCode::SchemaVersionUnsupported,
            ),
            (
                r#""schema_version":"1""#,
                RejectionCode::SchemaVersionUnsupported,
            ),
            (
                r#""schema_version":1.0"#,
                RejectionCode::SchemaVersionUnsupported,
            ),
            (
                r#""schema_version":0"#,
                RejectionCode::SchemaVersionUnsupported,
            ),
            (r#""extensions":[]"#, RejectionCode::ExtensionsWrongType),
            (
                r#""extensions":"north""#,
                RejectionCode::ExtensionsWrongType,
            ),
            (r#""extensions":1"#, RejectionCode::ExtensionsWrongType),
            (r#""warehouse":"north""#, RejectionCode::UnknownField),
            (
                r#""ocurred_at":"2026-11-24T11:00:00Z""#,
                RejectionCode::UnknownField,
            ),
        ] {
            let r = parse(&format!("{{{base},{extra}}}")).expect_err(extra);
            assert_eq!(r.code, expected, "{extra}: {r}");
        }
        let unknown = parse(&format!(r#"{{{base},"warehouse":"north"}}"#)).expect_err("unknown");
        assert!(unknown.message.contains("extensions"), "{unknown}");
    }

    #[test]
    fn unicode_in_a_product_id_is_rejected_not_panicked_on() {
        assert_eq!(
            code(r#"{"product_id":"p\u0000","quantity":1,"price":1}"#),
            RejectionCode::ProductIdInvalidChars
        );
        assert_eq!(
            code(r#"{"product_id":"é́́́́","quantity":1,"price":1}"#),
            RejectionCode::ProductIdInvalidChars
        );
        assert_eq!(
            code(r#"{"product_id":"\ud83d\ude00","quantity":1,"price":1}"#),
            RejectionCode::ProductIdInvalidChars
        );
        assert_eq!(
            code(r#"{"product_id":"\ud800","quantity":1,"price":1}"#),
            RejectionCode::NotJson
        );
    }

    #[test]
    fn a_rejected_record_still_names_its_supplier_when_it_can_be_read_that_far() {
        let named = |raw: &str| claimed_supplier(raw.as_bytes()).map(|s| s.as_str().to_owned());
        let acme = Some("acme".to_owned());
        assert_eq!(
            named(r#"{"product_id":"p","quantity":-1,"price":1,"supplier_id":"acme"}"#),
            acme
        );
        assert_eq!(
            named(r#"{"supplier_id":"acme","colour":"red"}"#),
            acme,
            "unknown field"
        );
        assert_eq!(
            named(r#"{"product_id":"p","product_id":"q","supplier_id":"acme"}"#),
            acme
        );
        assert_eq!(
            named(r#"{"supplier_id":"acme","supplier_id":"acme"}"#),
            None,
            "given twice"
        );
        assert_eq!(
            named(r#"{"product_id":"p","quantity":1,"price":1}"#),
            None,
            "names none"
        );
        assert_eq!(named(r#"{"supplier_id":null}"#), None);
        assert_eq!(named(r#"{"supplier_id":"a b"}"#), None, "not a valid id");
        assert_eq!(named(r#"{"supplier_id":7}"#), None);
        assert_eq!(named(r#"{"supplier_id":"acme""#), None, "broken JSON");
        assert_eq!(named(r#"["acme"]"#), None);
        assert_eq!(
            claimed_supplier(b"{\"supplier_id\":\"acme\",\"x\":\"\xff\"}"),
            None
        );
        let big = format!(
            r#"{{"supplier_id":"acme","pad":"{}"}}"#,
            "x".repeat(MAX_RECORD_BYTES)
        );
        assert_eq!(named(&big), None, "too large to read");
    }
}
