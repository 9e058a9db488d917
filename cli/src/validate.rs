//! Checking lines against the data contract before sending, with the pipeline's own parser, so
//! a supplier sees the same reasons the quarantine would give.

use crate::batch::Outgoing;
use crate::input::Line;
use chrono::{DateTime, Utc};
use inventory::domain::update::{SourcePosition, parse_record};

/// A line the pipeline would reject, with the contract's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub location: String,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.code, self.message)
    }
}

/// Every line as a record to send (partition key = product id), in feed order, and which
/// of them are invalid.
#[derive(Debug, Default)]
pub struct Checked {
    pub records: Vec<Outgoing>,
    pub valid: Vec<bool>,
    pub invalid: Vec<Invalid>,
}

impl Checked {
    /// The records to send: the valid ones, or all of them (`--send-invalid`).
    pub fn into_records(self, with_invalid: bool) -> Vec<Outgoing> {
        self.records
            .into_iter()
            .zip(self.valid)
            .filter(|(_, ok)| with_invalid || *ok)
            .map(|(r, _)| r)
            .collect()
    }
}

/// Validates every line as if it arrived on the stream at `now`.
pub fn check(lines: Vec<Line>, now: DateTime<Utc>) -> Checked {
    let source = SourcePosition {
        shard_id: "local".into(),
        sequence_number: "0".into(),
        arrived_at: now,
    };
    let mut out = Checked::default();
    for line in lines {
        let location = line.location();
        match parse_record(&line.data, &source) {
            Ok(update) => {
                out.records.push(Outgoing {
                    partition_key: update.product_id.as_str().to_owned(),
                    data: line.data,
                    origin: location,
                });
                out.valid.push(true);
            }
            Err(rejection) => {
                out.invalid.push(Invalid {
                    location: location.clone(),
                    code: rejection.code.as_str().to_owned(),
                    message: rejection.message,
                });
                out.records.push(Outgoing {
                    partition_key: loose_product_id(&line.data)
                        .unwrap_or_else(|| line.source.to_string()),
                    data: line.data,
                    origin: location,
                });
                out.valid.push(false);
            }
        }
    }
    out
}

/// The product id of a record the contract rejects, when one can still be read (so an invalid
/// record sent on purpose lands on its product's shard).
fn loose_product_id(data: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    let id = value.get("product_id")?.as_str()?;
    (!id.is_empty() && id.len() <= 256).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Format, parse};

    #[test]
    fn invalid_lines_carry_the_contracts_code_and_their_location() {
        let feed = "{\"product_id\":\"SKU-1\",\"quantity\":1,\"price\":\"2.50\"}\n\
                    {\"product_id\":\"SKU-1\",\"quantity\":-1,\"price\":\"2.50\"}\n\
                    not json\n";
        let (lines, _) = parse("feed.jsonl", feed.as_bytes(), Format::Jsonl);
        let checked = check(lines, Utc::now());
        assert_eq!(checked.valid, vec![true, false, false]);
        let shown: Vec<String> = checked.invalid.iter().map(|i| i.to_string()).collect();
        assert_eq!(shown.len(), 2);
        assert!(
            shown[0].starts_with("feed.jsonl:2: quantity_negative: "),
            "{}",
            shown[0]
        );
        assert!(
            shown[1].starts_with("feed.jsonl:3: not_json: "),
            "{}",
            shown[1]
        );
        assert_eq!(checked.records[1].partition_key, "SKU-1");
        assert_eq!(checked.records[2].partition_key, "feed.jsonl");
        let valid = checked.into_records(false);
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].origin, "feed.jsonl:1");
    }
}
