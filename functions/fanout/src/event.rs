//! Reading a Kinesis event into the domain's [`StreamRecord`]s.

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use inventory::PipelineError;
use inventory::steps::fanout::StreamRecord;

/// The stream name in a Kinesis stream ARN (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
pub fn stream_name(arn: &str) -> Option<&str> {
    let (_, resource) = arn.strip_prefix("arn:")?.rsplit_once(':')?;
    resource
        .strip_prefix("stream/")
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

/// The shard id in a Kinesis event id (`shardId-000000000000:SEQUENCE`).
pub fn shard_id(event_id: &str) -> Option<&str> {
    event_id
        .split_once(':')
        .map(|(shard, _)| shard)
        .filter(|shard| !shard.is_empty())
}

/// The event's records, in delivery order. An event without the stream ARN or event id of a
/// real Kinesis delivery is refused: its records could not be named or reported.
pub fn stream_records(event: KinesisEvent) -> Result<Vec<StreamRecord>, PipelineError> {
    event.records.into_iter().map(stream_record).collect()
}

fn stream_record(record: KinesisEventRecord) -> Result<StreamRecord, PipelineError> {
    let sequence_number = record.kinesis.sequence_number;
    if sequence_number.trim().is_empty() {
        // It names the record in chunk names, quarantine rows and batchItemFailures; an empty
        // one there would fail the whole batch with no record to point at.
        return Err(PipelineError::invalid_payload(
            "a record has no kinesis.sequenceNumber",
        ));
    }
    let arn = record.event_source_arn.unwrap_or_default();
    let stream = stream_name(&arn).ok_or_else(|| {
        PipelineError::invalid_payload(format!(
            "record {sequence_number} has no Kinesis stream ARN in eventSourceARN (got {arn:?})"
        ))
    })?;
    let event_id = record.event_id.unwrap_or_default();
    let shard = shard_id(&event_id).ok_or_else(|| {
        PipelineError::invalid_payload(format!(
            "record {sequence_number} has no shard id in eventID (got {event_id:?})"
        ))
    })?;
    Ok(StreamRecord {
        stream: stream.to_owned(),
        shard_id: shard.to_owned(),
        partition_key: record.kinesis.partition_key,
        arrived_at: record.kinesis.approximate_arrival_timestamp.0,
        data: record.kinesis.data.0,
        sequence_number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_name_is_read_from_its_arn() {
        assert_eq!(
            stream_name("arn:aws:kinesis:us-east-1:123456789012:stream/inventory-updates-dev"),
            Some("inventory-updates-dev")
        );
        assert_eq!(
            stream_name("arn:aws:kinesis:us-east-1:123456789012:table/x"),
            None
        );
        assert_eq!(stream_name("inventory-updates-dev"), None);
        assert_eq!(stream_name("arn:aws:kinesis:us-east-1:1:stream/"), None);
    }

    #[test]
    fn the_shard_id_is_read_from_the_event_id() {
        assert_eq!(
            shard_id("shardId-000000000003:4959"),
            Some("shardId-000000000003")
        );
        assert_eq!(shard_id("no-colon"), None);
        assert_eq!(shard_id(":4959"), None);
    }

    #[test]
    fn a_fixture_event_becomes_stream_records_in_order() {
        let event: KinesisEvent =
            serde_json::from_str(include_str!("../../../tests/fixtures/kinesis-batch.json"))
                .expect("fixture parses");

        let records = stream_records(event).expect("valid event");

        assert_eq!(records.len(), 3);
        assert!(
            records.iter().all(
                |r| r.stream == "inventory-updates-dev" && r.shard_id == "shardId-000000000000"
            )
        );
        assert_eq!(
            String::from_utf8(records[0].data.clone()).expect("utf-8"),
            r#"{"product_id": "product123", "inventory": 100, "price": 29.99}"#
        );
        assert_eq!(records[0].partition_key, "product123");
        assert!(records[0].sequence_number < records[1].sequence_number);
        assert_eq!(records[0].arrived_at.timestamp(), 1_795_000_000);
    }

    #[test]
    fn an_event_without_a_stream_arn_is_refused() {
        let mut event: KinesisEvent =
            serde_json::from_str(include_str!("../../../tests/fixtures/kinesis-batch.json"))
                .expect("fixture parses");
        event.records[1].event_source_arn = None;

        let e = stream_records(event).expect_err("refused");

        assert_eq!(e.kind, inventory::ErrorKind::InvalidPayload);
        assert!(e.message.contains("eventSourceARN"), "{}", e.message);
    }

    fn fixture_json() -> serde_json::Value {
        serde_json::from_str(include_str!("../../../tests/fixtures/kinesis-batch.json"))
            .expect("fixture is JSON")
    }

    #[test]
    fn a_record_with_empty_data_is_carried_on_for_validate_to_reject() {
        let mut event = fixture_json();
        event["Records"][1]["kinesis"]["data"] = "".into();
        let event: KinesisEvent = serde_json::from_value(event).expect("empty data is base64");

        let records = stream_records(event).expect("valid event");

        assert_eq!(records.len(), 3, "nothing dropped");
        assert!(records[1].data.is_empty());
    }

    #[test]
    fn data_that_is_not_base64_fails_to_deserialise_without_a_panic() {
        for data in [
            serde_json::json!("not base64!"),
            serde_json::json!(42),
            serde_json::Value::Null,
        ] {
            let mut event = fixture_json();
            event["Records"][0]["kinesis"]["data"] = data.clone();

            let outcome = serde_json::from_value::<KinesisEvent>(event);

            // The runtime answers such an invocation with a deserialisation error; the event
            // source mapping then retries, bisects and sends the batch to its on-failure queue.
            assert!(outcome.is_err(), "{data}");
        }
    }

    #[test]
    fn a_record_without_a_sequence_number_is_refused_by_name() {
        let mut event = fixture_json();
        let kinesis = event["Records"][2]["kinesis"]
            .as_object_mut()
            .expect("an object");
        kinesis.remove("sequenceNumber");
        kinesis.remove("partitionKey");
        let event: KinesisEvent = serde_json::from_value(event).expect("both have defaults");

        let e = stream_records(event).expect_err("refused");

        assert_eq!(e.kind, inventory::ErrorKind::InvalidPayload);
        assert!(e.message.contains("sequenceNumber"), "{}", e.message);
    }

    #[test]
    fn an_event_without_an_event_id_is_refused() {
        let mut event: KinesisEvent =
            serde_json::from_str(include_str!("../../../tests/fixtures/kinesis-batch.json"))
                .expect("fixture parses");
        event.records[0].event_id = Some("garbage".into());

        let e = stream_records(event).expect_err("refused");

        assert!(e.message.contains("eventID"), "{}", e.message);
    }
}
