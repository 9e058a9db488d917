//! The poller's rules without a stream: response reading, the event and failure shapes, and
//! batch limits.

use super::*;
use chrono::TimeZone;

fn rec(seq: &str) -> StreamRecord {
    StreamRecord {
        sequence_number: seq.into(),
        partition_key: format!("p{seq}"),
        data: br#"{"product_id":"p","quantity":1,"price":1}"#.to_vec(),
        arrived_at: Utc
            .with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("valid"),
    }
}

#[test]
fn an_empty_or_absent_failure_list_is_a_success() {
    let batch = [rec("1"), rec("2")];
    assert_eq!(read_response(&batch, false, b""), Outcome::Success);
    assert_eq!(read_response(&batch, false, b"null"), Outcome::Success);
    assert_eq!(
        read_response(&batch, false, br#"{"batchItemFailures":[]}"#),
        Outcome::Success
    );
    assert_eq!(read_response(&batch, false, br#"{}"#), Outcome::Success);
}

#[test]
fn partial_failures_retry_from_the_lowest_failed_sequence() {
    let batch = [rec("10"), rec("20"), rec("30")];
    let body = br#"{"batchItemFailures":[{"itemIdentifier":"30"},{"itemIdentifier":"20"}]}"#;
    assert_eq!(read_response(&batch, false, body), Outcome::RetryFrom(1));
}

#[test]
fn unknown_or_empty_identifiers_and_function_errors_fail_the_whole_batch() {
    let batch = [rec("10")];
    assert!(matches!(
        read_response(
            &batch,
            false,
            br#"{"batchItemFailures":[{"itemIdentifier":"99"}]}"#
        ),
        Outcome::FunctionError(_)
    ));
    assert!(matches!(
        read_response(
            &batch,
            false,
            br#"{"batchItemFailures":[{"itemIdentifier":""}]}"#
        ),
        Outcome::FunctionError(_)
    ));
    assert!(matches!(
        read_response(&batch, false, b"not json"),
        Outcome::FunctionError(_)
    ));
    assert!(matches!(
        read_response(&batch, true, br#"{"errorType":"X"}"#),
        Outcome::FunctionError(_)
    ));
}

#[test]
fn the_event_has_the_shape_aws_gives_the_function() {
    let event = kinesis_event(
        &[rec(
            "49590338271490256608559692538361571095921575989136588898",
        )],
        "shardId-000000000001",
        "arn:aws:kinesis:us-east-1:123456789012:stream/s",
        "us-east-1",
    );
    let v = serde_json::to_value(&event).expect("json");
    let r = &v["Records"][0];
    assert_eq!(r["eventSource"], "aws:kinesis");
    assert_eq!(
        r["eventSourceARN"],
        "arn:aws:kinesis:us-east-1:123456789012:stream/s"
    );
    assert_eq!(
        r["eventID"],
        "shardId-000000000001:49590338271490256608559692538361571095921575989136588898"
    );
    assert_eq!(
        r["kinesis"]["data"],
        "eyJwcm9kdWN0X2lkIjoicCIsInF1YW50aXR5IjoxLCJwcmljZSI6MX0="
    );
    // AWS sends epoch seconds as a number; aws_lambda_events writes them as a numeric string
    // (and reads either form back), so accept both, but insist on the right instant.
    let arrival = &r["kinesis"]["approximateArrivalTimestamp"];
    let seconds = arrival
        .as_f64()
        .or_else(|| arrival.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("approximateArrivalTimestamp is not epoch seconds: {r}"));
    assert!(seconds > 1_600_000_000.0, "{r}");
    // And the function's own event type reads it back.
    let back: KinesisEvent = serde_json::from_value(v).expect("a KinesisEvent");
    assert_eq!(back.records[0].kinesis.data.0, rec("1").data);
}

#[test]
fn the_failure_record_names_the_discarded_range() {
    let v = failure_record(
        &[rec("10"), rec("20")],
        "shardId-000000000000",
        "arn:s",
        "arn:f",
        4,
        true,
    );
    let info = &v["KinesisBatchInfo"];
    assert_eq!(info["startSequenceNumber"], "10");
    assert_eq!(info["endSequenceNumber"], "20");
    assert_eq!(info["batchSize"], 2);
    assert_eq!(info["streamArn"], "arn:s");
    assert_eq!(
        info["approximateArrivalOfFirstRecord"],
        "2026-11-24T12:00:00.000Z"
    );
    assert_eq!(v["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(v["requestContext"]["approximateInvokeCount"], 4);
    assert_eq!(v["responseContext"]["functionError"], "Unhandled");
    assert_eq!(v["version"], "1.0");
}

#[test]
fn a_batch_stops_at_its_size_and_at_the_payload_limit() {
    let small: Vec<StreamRecord> = (0..10).map(|i| rec(&i.to_string())).collect();
    assert_eq!(batch_len(small.iter(), 4), 4);
    assert_eq!(batch_len(small.iter(), 100), 10);
    let big = StreamRecord {
        data: vec![b'x'; 1024 * 1024],
        ..rec("1")
    };
    let bigs = vec![big; 10];
    let n = batch_len(bigs.iter(), 100);
    assert!(
        (1..=4).contains(&n),
        "{n} one-MiB records must stay under 6 MB once base64-encoded"
    );
}

#[test]
fn the_arrival_time_goes_out_as_a_number_of_epoch_seconds() {
    let event = kinesis_event(&[rec("1")], "shardId-000000000000", "arn:s", "us-east-1");
    let v = event_json(&event).expect("json");
    let t = &v["Records"][0]["kinesis"]["approximateArrivalTimestamp"];
    assert_eq!(t.as_f64(), Some(1_795_521_600.0), "{t}");
}
