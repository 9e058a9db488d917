//! Fuzzing the record parser and the validate use case with property tests.
//!
//! cargo-fuzz needs a nightly toolchain, which this project does not use, so proptest is the
//! fuzzer: three corpora (arbitrary bytes, arbitrary JSON values, and valid records mutated
//! byte by byte and field by field) go through `parse_record` and `validate_chunk`. Each
//! case must end as a valid update that keeps the data contract (and parses back to itself
//! from its own contract form) or as a rejection with a code the parser documents, with a
//! short message. A panic anywhere fails the case.
//!
//! The default run is small enough for every CI run. A large run:
//! `PROPTEST_CASES=20000 cargo test -p inventory --test record_fuzz` (cases per property).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeZone, Timelike, Utc};
use inventory::domain::ids::{MAX_ID_LEN, MAX_UPDATE_ID_LEN};
use inventory::domain::money::{MAX_PRICE, MAX_PRICE_SCALE, MAX_QUANTITY};
use inventory::domain::update::{MAX_FUTURE_SKEW, earliest_occurred_at, parse_record};
use inventory::steps::payloads::{ChunkInput, SourceRecord};
use inventory::testing::MemoryQuarantine;
use inventory::{ChunkId, InventoryUpdate, Rejection, RejectionCode, SourcePosition, steps};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

/// Cases per property: `PROPTEST_CASES` when set, else a CI-sized default.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Every code `parse_record` may answer with (`payload_unavailable` belongs to the fan-out's
/// references, never to the bytes themselves).
const PARSER_CODES: &[RejectionCode] = &[
    RejectionCode::RecordTooLarge,
    RejectionCode::EmptyRecord,
    RejectionCode::NotUtf8,
    RejectionCode::NotJson,
    RejectionCode::NotAnObject,
    RejectionCode::UnknownField,
    RejectionCode::DuplicateField,
    RejectionCode::ProductIdMissing,
    RejectionCode::ProductIdWrongType,
    RejectionCode::ProductIdEmpty,
    RejectionCode::ProductIdTooLong,
    RejectionCode::ProductIdInvalidChars,
    RejectionCode::SupplierIdWrongType,
    RejectionCode::SupplierIdInvalid,
    RejectionCode::QuantityMissing,
    RejectionCode::QuantityAmbiguous,
    RejectionCode::QuantityWrongType,
    RejectionCode::QuantityNotInteger,
    RejectionCode::QuantityNegative,
    RejectionCode::QuantityTooLarge,
    RejectionCode::PriceMissing,
    RejectionCode::PriceWrongType,
    RejectionCode::PriceInvalid,
    RejectionCode::PriceNegative,
    RejectionCode::PriceTooPrecise,
    RejectionCode::PriceTooLarge,
    RejectionCode::CurrencyWrongType,
    RejectionCode::CurrencyUnknown,
    RejectionCode::UpdateIdWrongType,
    RejectionCode::UpdateIdInvalid,
    RejectionCode::OccurredAtWrongType,
    RejectionCode::OccurredAtInvalid,
    RejectionCode::OccurredAtInFuture,
    RejectionCode::OccurredAtTooOld,
    RejectionCode::SchemaVersionUnsupported,
    RejectionCode::ExtensionsWrongType,
];

/// Longest rejection message: messages abbreviate what they quote.
const MAX_MESSAGE_BYTES: usize = 600;

fn arrived_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn source() -> SourcePosition {
    SourcePosition {
        shard_id: "shardId-000000000000".into(),
        sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
        arrived_at: arrived_at(),
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The data contract's rules, checked on an accepted update.
fn check_contract(u: &InventoryUpdate) -> Result<(), TestCaseError> {
    let id_ok = |s: &str| !s.is_empty() && s.len() <= MAX_ID_LEN && s.chars().all(is_id_char);
    prop_assert!(id_ok(u.product_id.as_str()), "{:?}", u.product_id);
    prop_assert!(id_ok(u.supplier_id.as_str()), "{:?}", u.supplier_id);
    if let Some(id) = &u.update_id {
        let s = id.as_str();
        prop_assert!(!s.is_empty() && s.len() <= MAX_UPDATE_ID_LEN);
        prop_assert!(!s.chars().any(char::is_control), "{s:?}");
    }
    prop_assert!((0..=MAX_QUANTITY).contains(&u.quantity.get()));
    let price = u.price.get();
    prop_assert!(!price.is_sign_negative(), "{price}");
    prop_assert!(price.scale() <= MAX_PRICE_SCALE, "{price}");
    prop_assert!(price <= MAX_PRICE, "{price}");
    prop_assert!(u.occurred_at >= earliest_occurred_at());
    prop_assert!(u.occurred_at <= u.source.arrived_at + MAX_FUTURE_SKEW);
    prop_assert_eq!(
        u.occurred_at.nanosecond() % 1_000,
        0,
        "microseconds at most"
    );
    prop_assert_eq!(&u.source, &source());
    Ok(())
}

/// The update written back in the contract's own form.
fn contract_form(u: &InventoryUpdate) -> Value {
    let mut record = json!({
        "product_id": u.product_id.as_str(),
        "quantity": u.quantity.get(),
        "price": u.price.to_string(),
        "currency": u.currency.as_str(),
        "supplier_id": u.supplier_id.as_str(),
    });
    if let Some(id) = &u.update_id {
        record["update_id"] = id.as_str().into();
    }
    if u.occurred_at_from_supplier {
        record["occurred_at"] = u
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            .into();
    }
    record
}

/// What every outcome of `parse_record` must satisfy.
fn check_outcome(
    data: &[u8],
    outcome: &Result<InventoryUpdate, Rejection>,
) -> Result<(), TestCaseError> {
    match outcome {
        Ok(u) => {
            check_contract(u)?;
            let again = serde_json::to_vec(&contract_form(u)).expect("encodes");
            let reparsed = parse_record(&again, &source());
            prop_assert_eq!(
                reparsed.as_ref(),
                Ok(u),
                "{} did not round-trip",
                String::from_utf8_lossy(data)
            );
        }
        Err(r) => {
            prop_assert!(PARSER_CODES.contains(&r.code), "unexpected {r}");
            prop_assert!(!r.message.is_empty());
            prop_assert!(
                r.message.len() <= MAX_MESSAGE_BYTES,
                "{} bytes",
                r.message.len()
            );
            let json = serde_json::to_string(r).expect("a rejection encodes");
            prop_assert_eq!(
                &serde_json::from_str::<Rejection>(&json).expect("decodes"),
                r
            );
        }
    }
    Ok(())
}

mod corpus;
use corpus::{apply, json_value, mutation, valid_record};

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_are_parsed_or_rejected_with_a_known_code(
        data in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            prop::collection::vec(prop::sample::select(&b"{}[]\":,0123456789.-eE \\utrnflasp_"[..]), 0..256),
        ]
    ) {
        let outcome = parse_record(&data, &source());
        check_outcome(&data, &outcome)?;
    }

    #[test]
    fn arbitrary_json_values_are_parsed_or_rejected_with_a_known_code(value in json_value()) {
        let data = serde_json::to_vec(&value).expect("encodes");
        let outcome = parse_record(&data, &source());
        check_outcome(&data, &outcome)?;
        if !value.is_object() {
            prop_assert!(outcome.is_err(), "only an object can be a record");
        }
    }

    #[test]
    fn every_record_the_contract_allows_is_accepted_with_its_values(record in valid_record()) {
        let data = serde_json::to_vec(&record).expect("encodes");
        let outcome = parse_record(&data, &source());
        check_outcome(&data, &outcome)?;
        let u = outcome.map_err(|r| TestCaseError::fail(format!("{r} for {record}")))?;
        prop_assert_eq!(u.product_id.as_str(), record["product_id"].as_str().expect("string"));
        let quantity = record.get("quantity").or(record.get("inventory")).and_then(Value::as_i64);
        prop_assert_eq!(Some(u.quantity.get()), quantity);
        let price = match &record["price"] {
            Value::String(s) => s.clone(),
            n => n.to_string(),
        };
        prop_assert_eq!(u.price.get(), price.parse::<rust_decimal::Decimal>().expect("decimal"));
    }

    #[test]
    fn mutated_records_are_parsed_or_rejected_with_a_known_code(
        record in valid_record(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let data = apply(&record, &mutations);
        let outcome = parse_record(&data, &source());
        check_outcome(&data, &outcome)?;
    }

    #[test]
    fn validate_keeps_every_record_as_an_update_or_in_quarantine(
        records in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                (valid_record(), prop::collection::vec(mutation(), 0..2)).prop_map(|(r, m)| apply(&r, &m)),
            ],
            0..20,
        ),
        broken_base64 in prop::collection::vec(any::<bool>(), 20),
    ) {
        let input = chunk(&records, &broken_base64);
        let quarantine = MemoryQuarantine::default();
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");

        let out = runtime.block_on(steps::validate_chunk(&input, &quarantine, arrived_at())).expect("validate never fails on bad records");

        prop_assert_eq!(out.valid.len() + out.rejected.len(), records.len(), "nothing lost");
        let kept = quarantine.kept();
        prop_assert_eq!(kept.len(), out.rejected.len());
        for (k, r) in kept.iter().zip(&out.rejected) {
            prop_assert_eq!(&k.sequence_number, &r.sequence_number);
            prop_assert!(k.raw.is_some() || k.reason.code == RejectionCode::PayloadUnavailable);
        }
    }
}

fn chunk(records: &[Vec<u8>], broken_base64: &[bool]) -> ChunkInput {
    let records = records
        .iter()
        .zip(broken_base64)
        .enumerate()
        .map(|(i, (data, broken))| SourceRecord {
            sequence_number: format!("4959033827149025660855969253836157109592157598913{i:07}"),
            partition_key: format!("p{i}"),
            arrived_at: arrived_at(),
            data: Some(if *broken {
                format!("{}!", BASE64.encode(data))
            } else {
                BASE64.encode(data)
            }),
            data_ref: None,
        })
        .collect();
    let chunk = ChunkId {
        stream: "inventory-updates-test".into(),
        shard_id: "shardId-000000000000".into(),
        first_sequence: "49590338271490256608559692538361571095921575989130000000".into(),
        last_sequence: "49590338271490256608559692538361571095921575989139999999".into(),
        index: 0,
    };
    ChunkInput { chunk, records }
}
