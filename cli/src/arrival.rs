//! Records put back on the stream keep the time they first reached it.
//!
//! A record without `occurred_at` takes the stream's arrival time as its time, and, without an
//! `update_id`, its identity (the content key) from that time too. Sent again as it is, it
//! would arrive anew: a second event for an update already applied, and one that wins over
//! every newer update of its product. So the replays write the original arrival time into
//! such a record as its `occurred_at` (to the microsecond, as the pipeline keeps it): the
//! record then means exactly what it meant the first time, and has the same content key.

use chrono::{DateTime, SecondsFormat, SubsecRound as _, Utc};
use inventory::update::{SourcePosition, parse_record};

/// `data`, with `"occurred_at"` set to `arrived_at` when it is a valid record without one;
/// anything else unchanged (records the contract rejects are sent as they were).
pub fn with_original_time(data: &[u8], arrived_at: DateTime<Utc>) -> Vec<u8> {
    let source = SourcePosition {
        shard_id: String::new(),
        sequence_number: String::new(),
        arrived_at,
    };
    let needs_time = parse_record(data, &source).is_ok_and(|u| !u.occurred_at_from_supplier);
    // A valid record is a JSON object with at least product_id: `{` opens it.
    let open = data.iter().position(|b| *b == b'{');
    match (needs_time, open) {
        (true, Some(at)) => {
            let stamp = arrived_at
                .trunc_subsecs(6)
                .to_rfc3339_opts(SecondsFormat::Micros, true);
            let field = format!("\"occurred_at\":\"{stamp}\",");
            let mut out = Vec::with_capacity(data.len() + field.len());
            out.extend_from_slice(&data[..=at]);
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(&data[at + 1..]);
            out
        }
        _ => data.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn parsed_at(data: &[u8], arrived_at: DateTime<Utc>) -> inventory::update::InventoryUpdate {
        let source = SourcePosition {
            shard_id: "shardId-000000000000".into(),
            sequence_number: "1".into(),
            arrived_at,
        };
        parse_record(data, &source).expect("valid")
    }

    #[test]
    fn a_record_without_a_time_sent_again_later_is_the_same_update() {
        let first = DateTime::parse_from_rfc3339("2026-03-01T10:15:00.123456789Z")
            .expect("time")
            .with_timezone(&Utc);
        let raw = br#" {"product_id": "product123", "inventory": 100, "price": 29.99}"#;
        let original = parsed_at(raw, first);

        let again = with_original_time(raw, first);
        let replayed = parsed_at(&again, first + TimeDelta::days(2));

        assert_eq!(replayed.update_key, original.update_key);
        assert_eq!(replayed.occurred_at, original.occurred_at);
        assert_eq!(
            (replayed.quantity, replayed.price),
            (original.quantity, original.price)
        );
        assert!(
            String::from_utf8_lossy(&again)
                .contains(r#""occurred_at":"2026-03-01T10:15:00.123456Z""#)
        );
    }

    #[test]
    fn a_record_with_its_own_time_or_that_the_contract_rejects_is_sent_unchanged() {
        let now = Utc::now();
        for raw in [
            br#"{"product_id":"p","quantity":1,"price":1,"occurred_at":"2026-03-01T10:00:00Z"}"#
                .as_slice(),
            br#"{"product_id":"p","quantity":-1,"price":1}"#,
            br#"{"product_id":"p","quantity":1,"price":1,"colour":"red"}"#,
            b"not json {",
            b"",
        ] {
            assert_eq!(with_original_time(raw, now), raw, "{raw:?}");
        }
    }
}
