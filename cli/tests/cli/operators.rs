//! The operator commands against moto (Kinesis, SQS, S3) and a real PostgreSQL database.

use super::support::*;
use anyhow::{Context as _, Result};
use aws_sdk_kinesis::primitives::Blob;
use base64::Engine as _;
use chrono::{TimeZone as _, Utc};
use integration_tests::postgres::TestDb;
use inventory::adapters::postgres::{PgEventStore, PgQuarantine, list_quarantine, load_projection};
use inventory::domain::rejection::{Rejection, RejectionCode};
use inventory::domain::update::{SourcePosition, parse_record};
use inventory::ports::{EventStore as _, Quarantine as _, QuarantinedRecord};
use sea_orm::ConnectionTrait as _;
use std::io::Write as _;

fn quarantined(seq: &str, reason: RejectionCode, raw: &str) -> QuarantinedRecord {
    QuarantinedRecord {
        stream: "inventory-updates".into(),
        shard_id: "shardId-000000000000".into(),
        sequence_number: seq.into(),
        partition_key: "SKU-Q".into(),
        arrived_at: Utc
            .with_ymd_and_hms(2026, 1, 1, 10, 0, 0)
            .single()
            .expect("time"),
        reason: Rejection::new(reason, "as quarantined"),
        raw: Some(raw.as_bytes().to_vec()),
        payload_ref: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_quarantine_sends_matching_records_that_now_pass_once_and_marks_them() -> Result<()>
{
    // Arrange: three quarantined records: one that passes the contract now (as after a fix),
    // one of another reason, one that still fails.
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "replayq", 1).await?;
    let t = TestDb::new().await?;
    let fixed = update("SKU-Q", 1);
    PgQuarantine::new(t.db.clone())
        .quarantine(&[
            quarantined("1", RejectionCode::CurrencyUnknown, &fixed),
            quarantined("2", RejectionCode::PriceTooPrecise, &update("SKU-Q", 2)),
            quarantined(
                "3",
                RejectionCode::CurrencyUnknown,
                r#"{"product_id":"SKU-Q","quantity":1,"price":"1","currency":"XYZ"}"#,
            ),
        ])
        .await?;
    let args = [
        "replay-quarantine",
        "--database-url",
        &t.url,
        "--stream",
        &stream,
        "--endpoint-url",
        moto.endpoint_url(),
        "--reason",
        "currency_unknown",
    ];

    // Act: a dry run, the run, and a re-run.
    let dry = inventory(&[&args[..], &["--dry-run"]].concat(), None).await?;
    let after_dry = read_stream(moto, &stream).await?.len();
    let first = inventory(&args, None).await?;
    let second = inventory(&args, None).await?;

    // Assert
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert_eq!(after_dry, 0, "a dry run sends nothing");
    assert!(
        stderr(&dry).contains("1 records to replay"),
        "{}",
        stderr(&dry)
    );
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert!(
        stderr(&first).contains("still invalid: currency_unknown"),
        "{}",
        stderr(&first)
    );
    let reads = read_stream(moto, &stream).await?;
    assert_eq!(reads.len(), 1, "one record replayed, and only once");
    assert_eq!(reads[0].data, fixed.as_bytes());
    assert_eq!(reads[0].partition_key, "SKU-Q");
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert!(
        stderr(&second)
            .contains("0 records to replay (left out: 1 already replayed, 1 still invalid)"),
        "{}",
        stderr(&second)
    );
    let rows = list_quarantine(&t.db, 0, 10).await?;
    let replayed: Vec<bool> = rows.iter().map(|r| r.replayed_at.is_some()).collect();
    assert_eq!(replayed, vec![true, false, false]);
    t.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_projection_restores_a_damaged_projection_from_the_event_store() -> Result<()> {
    let t = TestDb::new().await?;
    let source = SourcePosition {
        shard_id: "s".into(),
        sequence_number: "1".into(),
        arrived_at: Utc::now(),
    };
    let updates: Vec<_> = (0..20)
        .map(|n| {
            parse_record(update(&format!("SKU-{}", n % 4), n).as_bytes(), &source).expect("valid")
        })
        .collect();
    PgEventStore::new(t.db.clone()).append(&updates).await?;
    let before = load_projection(&t.db).await?;
    t.db.execute_unprepared("DELETE FROM product_summaries WHERE product_id = 'SKU-1'; UPDATE product_offers SET quantity = 999").await?;
    assert_ne!(load_projection(&t.db).await?, before, "the damage shows");

    let dry = inventory(
        &["rebuild-projection", "--database-url", &t.url, "--dry-run"],
        None,
    )
    .await?;
    let damaged = load_projection(&t.db).await?;
    let run = inventory(&["rebuild-projection", "--database-url", &t.url], None).await?;
    let again = inventory(&["rebuild-projection", "--database-url", &t.url], None).await?;

    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert_ne!(damaged, before, "a dry run changes nothing");
    assert!(stderr(&dry).contains("holds 20 events"), "{}", stderr(&dry));
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert!(
        stderr(&run).contains(
            "replayed 20 events after the first event (0 of them appended while it ran) into 4 offers of 4 products"
        ),
        "{}",
        stderr(&run)
    );
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(load_projection(&t.db).await?, before);
    t.cleanup().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_dlq_puts_back_the_sequence_range_each_message_names_and_deletes_it() -> Result<()> {
    // Arrange: four records on the stream; an on-failure message for the second and third.
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "dlq", 1).await?;
    let k = kinesis(moto);
    let mut seqs = Vec::new();
    let mut shard = String::new();
    for n in 0..4 {
        let out = k
            .put_record()
            .stream_name(&stream)
            .partition_key("SKU-D")
            .data(Blob::new(update("SKU-D", n)))
            .send()
            .await?;
        seqs.push(out.sequence_number().to_owned());
        shard = out.shard_id().to_owned();
    }
    let arn = k
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await?
        .stream_description_summary()
        .map(|d| d.stream_arn().to_owned())
        .context("arn")?;
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config());
    let queue = sqs
        .create_queue()
        .queue_name(integration_tests::moto::unique_name("dlq"))
        .send()
        .await?
        .queue_url()
        .context("queue url")?
        .to_owned();
    let message = serde_json::json!({
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
        "version": "1.0",
        "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": seqs[1],
            "endSequenceNumber": seqs[2], "batchSize": 2, "streamArn": arn}
    });
    sqs.send_message()
        .queue_url(&queue)
        .message_body(message.to_string())
        .send()
        .await?;
    let args = [
        "replay-dlq",
        "--queue-url",
        &queue,
        "--endpoint-url",
        moto.endpoint_url(),
    ];

    // Act: the run straight after the dry run (which must leave the message visible).
    let dry = inventory(&[&args[..], &["--dry-run"]].concat(), None).await?;
    let first = inventory(&args, None).await?;
    let second = inventory(&args, None).await?;

    // Assert: the two records follow the original four, the message is gone, a re-run finds
    // nothing to do.
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert!(
        stderr(&dry).contains("2 records to put back from 1 messages"),
        "{}",
        stderr(&dry)
    );
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let numbers: Vec<usize> = read_stream(moto, &stream)
        .await?
        .iter()
        .map(|r| update_number(&r.data))
        .collect();
    assert_eq!(numbers, vec![0, 1, 2, 3, 1, 2]);
    assert!(
        stderr(&first).contains("1 messages replayed and deleted, 0 left"),
        "{}",
        stderr(&first)
    );
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert!(
        stderr(&second).contains("0 messages on"),
        "{}",
        stderr(&second)
    );
    assert_eq!(read_stream(moto, &stream).await?.len(), 6);
    Ok(())
}

fn archive_object(lines: &[(String, &str)]) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for (seq, data) in lines {
        let line = serde_json::json!({
            "stream": "s", "shard_id": "shardId-000000000000", "sequence_number": seq,
            "partition_key": "SKU-R", "arrived_at": "2026-03-01T10:15:00Z",
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        writeln!(gz, "{line}")?;
    }
    Ok(gz.finish()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reingest_archive_sends_the_valid_records_of_the_hours_in_range_in_order() -> Result<()> {
    let moto = MotoServer::shared()?;
    let stream = create_stream(moto, "reingest", 1).await?;
    let bucket = moto.create_bucket("archive").await?;
    let s3 = moto.s3_client();
    let at = |h| {
        Utc.with_ymd_and_hms(2026, 3, 1, h, 15, 0)
            .single()
            .expect("time")
    };
    let u1 = update("SKU-R", 1);
    let u2 = update("SKU-R", 2);
    let in_range = archive_object(&[
        ("12".into(), &u2),
        ("11".into(), &u1),
        ("13".into(), "{\"bad\":1}"),
    ])?;
    let out_of_range = archive_object(&[("20".into(), &update("SKU-R", 9))])?;
    for (key, body) in [
        (
            inventory::domain::keys::ArchiveKey::for_chunk("s", at(10), "c1"),
            in_range,
        ),
        (
            inventory::domain::keys::ArchiveKey::for_chunk("s", at(12), "c2"),
            out_of_range,
        ),
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(key.as_str())
            .body(body.into())
            .send()
            .await?;
    }
    let args = [
        "reingest-archive",
        "--from",
        "2026-03-01T10:00:00Z",
        "--to",
        "2026-03-01T12:00:00Z",
        "--bucket",
        &bucket,
        "--source-stream",
        "s",
        "--stream",
        &stream,
        "--endpoint-url",
        moto.endpoint_url(),
    ];

    let dry = inventory(&[&args[..], &["--dry-run"]].concat(), None).await?;
    let after_dry = read_stream(moto, &stream).await?.len();
    let run = inventory(&args, None).await?;

    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert_eq!(after_dry, 0);
    assert!(stderr(&dry).contains("1 objects in"), "{}", stderr(&dry));
    assert!(
        stderr(&dry).contains("2 records to send"),
        "{}",
        stderr(&dry)
    );
    assert!(
        stderr(&dry).contains("1 the contract rejects"),
        "{}",
        stderr(&dry)
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let reads = read_stream(moto, &stream).await?;
    let numbers: Vec<usize> = reads.iter().map(|r| update_number(&r.data)).collect();
    assert_eq!(
        numbers,
        vec![1, 2],
        "in sequence order, out-of-range hour left alone"
    );
    assert!(reads.iter().all(|r| r.partition_key == "SKU-R"));
    Ok(())
}

/// A day's export as the retention writes it: parts of gzip JSON lines and a manifest.
async fn put_export(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    day: chrono::NaiveDate,
    parts: &[&[&str]],
) -> Result<()> {
    use inventory::domain::retention::{
        Checksum, ExportPart, Manifest, gzip_lines, manifest_key, part_key,
    };
    let mut listed = Vec::new();
    let mut after = 0;
    for (i, lines) in parts.iter().enumerate() {
        let part = u32::try_from(i)?;
        let mut checksum = Checksum::default();
        lines.iter().for_each(|l| checksum.add_line(l));
        let key = part_key(day, part);
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .body(gzip_lines(lines.iter().copied())?.into())
            .send()
            .await?;
        listed.push(ExportPart {
            part,
            key,
            after_seq: after,
            up_to_seq: after + i64::try_from(lines.len())?,
            checksum,
        });
        after += i64::try_from(lines.len())?;
    }
    let from = day.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
    let manifest = Manifest {
        table: "inventory_events".into(),
        day,
        from,
        to: from + chrono::Duration::days(1),
        checksum: listed
            .iter()
            .fold(Checksum::default(), |t, p| t.plus(p.checksum)),
        parts: listed,
        exported_at: Utc::now(),
    };
    s3.put_object()
        .bucket(bucket)
        .key(manifest_key(day))
        .body(serde_json::to_vec(&manifest)?.into())
        .send()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_event_export_prints_a_retired_days_events_and_no_line_of_a_damaged_part() -> Result<()>
{
    let moto = MotoServer::shared()?;
    let bucket = moto.create_bucket("event-export").await?;
    let s3 = moto.s3_client();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 31).context("day")?;
    let lines: [&[&str]; 2] = [&[r#"{"seq": 1}"#, r#"{"seq": 2}"#], &[r#"{"seq": 3}"#]];
    put_export(&s3, &bucket, day, &lines).await?;
    let args = [
        "read-event-export",
        "--day",
        "2026-01-31",
        "--bucket",
        &bucket,
        "--endpoint-url",
        moto.endpoint_url(),
    ];

    let read = inventory(&args, None).await?;
    assert_eq!(code(&read), 0, "{}", stderr(&read));
    assert_eq!(
        String::from_utf8(read.stdout.clone())?,
        "{\"seq\": 1}\n{\"seq\": 2}\n{\"seq\": 3}\n"
    );
    assert!(
        stderr(&read).contains("3 events of 2026-01-31 (2 parts)"),
        "{}",
        stderr(&read)
    );

    // A part that lost a line: nothing of it is printed, and the error says which.
    let damaged = inventory::domain::retention::part_key(day, 1);
    s3.put_object()
        .bucket(&bucket)
        .key(&damaged)
        .body(inventory::domain::retention::gzip_lines(["{\"seq\": 4}"])?.into())
        .send()
        .await?;
    let bad = inventory(&args, None).await?;
    assert_ne!(code(&bad), 0);
    assert!(
        stderr(&bad).contains(&format!("{damaged} holds 1 events")),
        "{}",
        stderr(&bad)
    );
    assert!(stderr(&bad).contains("damaged"), "{}", stderr(&bad));
    assert!(!String::from_utf8(bad.stdout.clone())?.contains("seq\": 4"));

    let missing = inventory(
        &[
            "read-event-export",
            "--day",
            "2026-02-01",
            "--bucket",
            &bucket,
            "--endpoint-url",
            moto.endpoint_url(),
        ],
        None,
    )
    .await?;
    assert_ne!(code(&missing), 0);
    assert!(
        stderr(&missing).contains("no export of 2026-02-01"),
        "{}",
        stderr(&missing)
    );
    Ok(())
}
