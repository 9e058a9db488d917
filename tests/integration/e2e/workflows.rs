//! Workflows that run unchanged against the local stack or a deployed one: they use only the
//! outputs both write (StreamName, StateMachineArn, ArchiveBucketName, FanoutDlqUrl) and only
//! AWS APIs (Kinesis, Step Functions, S3, SQS), never the database or the fault switch. A
//! deployed database sits in private subnets, so what each execution did is read from Step
//! Functions itself: the execution's output (`{archive, persist: {appended, duplicates,
//! changed}, cache}`) and, for what validate turned away, the Validate state's exit in the
//! execution history (`{valid, rejected}`).
//!
//! Each test finds its executions by listing those started since it began and keeping the
//! ones whose input holds a record with one of its own product ids (the harness's nonce).

use super::harness::{SERIAL, Stack, stack};
use anyhow::{Context as _, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;

/// One execution of the state machine that carried this test's records.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) arn: String,
    pub(super) status: ExecutionStatus,
    /// How many of this test's records its input holds.
    pub(super) ours: usize,
    pub(super) output: Value,
}

impl Run {
    fn persisted(&self, field: &str) -> u64 {
        self.output["persist"][field]
            .as_u64()
            .unwrap_or_else(|| panic!("execution output has no persist.{field}: {}", self.output))
    }
}

/// The executions started since the test began (less those in `seen`) that carry any of its
/// records, as they are now.
pub(super) async fn carrying_ours(st: &Stack, seen: &HashSet<String>) -> Result<Vec<Run>> {
    let prefix = format!("{}-", st.nonce);
    let mut runs = Vec::new();
    for (arn, _, _) in st.executions().await? {
        if seen.contains(&arn) {
            continue;
        }
        let d = st
            .sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await?;
        let input: Value = serde_json::from_str(d.input().unwrap_or("{}"))?;
        let ours = input["records"].as_array().map_or(0, |rs| {
            rs.iter()
                .filter(|r| {
                    r["partition_key"]
                        .as_str()
                        .is_some_and(|k| k.starts_with(&prefix))
                })
                .count()
        });
        if ours == 0 {
            continue;
        }
        let output = d.output().map(serde_json::from_str).transpose()?;
        runs.push(Run {
            arn,
            status: d.status().clone(),
            ours,
            output: output.unwrap_or(Value::Null),
        });
    }
    Ok(runs)
}

/// Waits until the executions started since the test began (less those in `seen`) carry
/// `records` of its records and none is running.
async fn runs(st: &Stack, records: usize, seen: &HashSet<String>) -> Result<Vec<Run>> {
    st.until(
        "executions carrying the test's records to finish",
        async || carrying_ours(st, seen).await,
        |rs: &Vec<Run>| {
            rs.iter().map(|r| r.ours).sum::<usize>() >= records
                && rs.iter().all(|r| r.status != ExecutionStatus::Running)
        },
    )
    .await
}

/// The Validate state's result in an execution (`{valid: [...], rejected: n}`), from its
/// history.
async fn validated(st: &Stack, arn: &str) -> Result<Value> {
    let history = st
        .sfn
        .get_execution_history()
        .execution_arn(arn)
        .max_results(1000)
        .send()
        .await?;
    let exit = history
        .events()
        .iter()
        .filter_map(|e| e.state_exited_event_details())
        .find(|d| d.name() == "Validate")
        .context("no exit from Validate in the history")?;
    Ok(serde_json::from_str(exit.output().unwrap_or("null"))?)
}

/// The lines of every archive object the runs wrote, read back from the bucket.
async fn archived(st: &Stack, runs: &[Run]) -> Result<Vec<Value>> {
    let mut lines = Vec::new();
    for run in runs {
        let archive = &run.output["archive"];
        let bucket = archive["bucket"].as_str().context("archive.bucket")?;
        assert_eq!(bucket, st.o("ArchiveBucketName"), "{}", run.output);
        let key = archive["key"].as_str().context("archive.key")?;
        let body = st.s3.get_object().bucket(bucket).key(key).send().await?;
        let gz = body.body.collect().await?.into_bytes();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .with_context(|| format!("s3://{bucket}/{key} is not gzip text"))?;
        for line in text.lines() {
            lines.push(serde_json::from_str(line)?);
        }
    }
    Ok(lines)
}

/// The raw bytes of each archived record, by shard and sequence number (sequence numbers are
/// only unique within a shard).
fn archived_bytes(lines: &[Value]) -> Result<BTreeMap<(String, String), Vec<u8>>> {
    lines
        .iter()
        .map(|l| {
            let shard = l["shard_id"].as_str().context("shard_id")?;
            let seq = l["sequence_number"].as_str().context("sequence_number")?;
            let data = l["data"].as_str().context("inline data")?;
            Ok((
                (shard.to_owned(), seq.to_owned()),
                base64::engine::general_purpose::STANDARD.decode(data)?,
            ))
        })
        .collect()
}

/// The messages on the fan-out's on-failure queue, looked at without taking them: a zero
/// visibility timeout leaves each one visible to its real consumer.
pub(super) async fn on_failure_queue(st: &Stack) -> Result<Vec<Value>> {
    let mut seen = BTreeMap::new();
    for _ in 0..3 {
        let out = st
            .sqs
            .receive_message()
            .queue_url(st.o("FanoutDlqUrl"))
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .send()
            .await?;
        for m in out.messages() {
            if let (Some(id), Some(body)) = (m.message_id(), m.body()) {
                seen.insert(
                    id.to_owned(),
                    serde_json::from_str(body).unwrap_or(Value::Null),
                );
            }
        }
    }
    Ok(seen.into_values().collect())
}

/// Whether an on-failure message (AWS's invocation record for Kinesis) names the record at
/// `sequence` on `shard`: its batch is that shard's sequence range, ends included.
pub(super) fn names_record(message: &Value, shard: &str, sequence: &str) -> bool {
    let info = &message["KinesisBatchInfo"];
    let number = |k: &str| info[k].as_str().map(|s| (s.len(), s.to_owned()));
    let at = (sequence.len(), sequence.to_owned());
    info["shardId"] == shard
        && number("startSequenceNumber").is_some_and(|start| start <= at)
        && number("endSequenceNumber").is_some_and(|end| at <= end)
}

/// A record in the brief's own format: product id, `inventory` and a float price.
fn brief_record(product: &str, inventory: i64) -> Vec<u8> {
    json!({"product_id": product, "inventory": inventory, "price": 29.99})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn records_in_the_briefs_format_are_appended_archived_raw_and_cached_afresh() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = stack().await else {
        return Ok(());
    };
    // Arrange: three products, each record exactly as the brief's example sends it.
    let records: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                st.product(i),
                brief_record(&st.product(i), 100 + i64::from(i)),
            )
        })
        .collect();

    // Act
    let placed = st.put_records(&records).await?;
    let runs = runs(&st, records.len(), &HashSet::new()).await?;

    // Assert: every execution succeeded and appended each record once, for our products.
    assert!(
        runs.iter().all(|r| r.status == ExecutionStatus::Succeeded),
        "{runs:?}"
    );
    assert_eq!(runs.iter().map(|r| r.persisted("appended")).sum::<u64>(), 3);
    assert_eq!(
        runs.iter().map(|r| r.persisted("duplicates")).sum::<u64>(),
        0
    );
    let mut changed: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.output["persist"]["changed"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["product_id"].as_str().map(str::to_owned))
        .collect();
    changed.sort();
    assert_eq!(changed, (0..3).map(|i| st.product(i)).collect::<Vec<_>>());
    let fenced: u64 = runs
        .iter()
        .filter_map(|r| r.output["cache"]["fenced"].as_u64())
        .sum();
    assert_eq!(
        fenced, 3,
        "the cache step fenced each new product: {runs:?}"
    );
    // The chunks' archive objects hold the raw records, byte for byte.
    let lines = archived(&st, &runs).await?;
    let raw = archived_bytes(&lines)?;
    for ((_, data), (shard, seq)) in records.iter().zip(&placed) {
        assert_eq!(
            raw.get(&(shard.clone(), seq.clone())),
            Some(data),
            "record {shard}/{seq} archived as sent"
        );
    }
    assert!(lines.iter().all(|l| l["stream"] == st.o("StreamName")));
    Ok(())
}

#[tokio::test]
async fn sending_the_same_records_again_appends_nothing_and_counts_them_as_duplicates() -> Result<()>
{
    let _serial = SERIAL.lock().await;
    let Some(st) = stack().await else {
        return Ok(());
    };
    // Arrange: a supplier's two updates with its own update ids, applied once.
    let records: Vec<(String, Vec<u8>)> = (0..2)
        .map(|i| (st.product(i), st.update(&st.product(i), "acme", 5 + i)))
        .collect();
    st.put_records(&records).await?;
    let first = runs(&st, records.len(), &HashSet::new()).await?;
    let seen: HashSet<String> = first.iter().map(|r| r.arn.clone()).collect();

    // Act: the supplier sends the same records again.
    st.put_records(&records).await?;
    let again = runs(&st, records.len(), &seen).await?;

    // Assert: the first send appended both; the second succeeded and appended nothing.
    assert!(
        first
            .iter()
            .chain(&again)
            .all(|r| r.status == ExecutionStatus::Succeeded),
        "{first:?} {again:?}"
    );
    assert_eq!(
        first.iter().map(|r| r.persisted("appended")).sum::<u64>(),
        2
    );
    assert_eq!(
        again.iter().map(|r| r.persisted("appended")).sum::<u64>(),
        0
    );
    assert_eq!(
        again.iter().map(|r| r.persisted("duplicates")).sum::<u64>(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_record_is_rejected_while_the_good_ones_are_appended_and_the_batch_never_fails()
-> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = stack().await else {
        return Ok(());
    };
    // Arrange: two good records and one with a negative inventory, on one product's key.
    let key = st.product(0);
    let records = vec![
        (key.clone(), st.update(&key, "acme", 4)),
        (key.clone(), brief_record(&key, -3)),
        (key.clone(), st.update(&key, "globex", 6)),
    ];

    // Act
    let placed = st.put_records(&records).await?;
    let runs = runs(&st, records.len(), &HashSet::new()).await?;

    // Assert: the executions succeeded; validate turned one away, persist appended the others.
    assert!(
        runs.iter().all(|r| r.status == ExecutionStatus::Succeeded),
        "{runs:?}"
    );
    let (mut valid, mut rejected) = (0, 0);
    for run in &runs {
        let v = validated(&st, &run.arn).await?;
        valid += v["valid"].as_array().context("valid")?.len();
        rejected += v["rejected"].as_u64().context("rejected")?;
    }
    assert_eq!((valid, rejected), (2, 1));
    assert_eq!(runs.iter().map(|r| r.persisted("appended")).sum::<u64>(), 2);
    // Nothing lost: the rejected record is archived with the good ones.
    let raw = archived_bytes(&archived(&st, &runs).await?)?;
    for ((_, data), (shard, seq)) in records.iter().zip(&placed) {
        assert_eq!(
            raw.get(&(shard.clone(), seq.clone())),
            Some(data),
            "record {shard}/{seq} archived as sent"
        );
    }
    // And the fan-out never gave up on the batch: no on-failure message names its records.
    let failed = on_failure_queue(&st).await?;
    for (shard, seq) in &placed {
        let named: Vec<&Value> = failed
            .iter()
            .filter(|m| names_record(m, shard, seq))
            .collect();
        assert!(
            named.is_empty(),
            "{shard}/{seq} went to the on-failure queue: {named:?}"
        );
    }
    Ok(())
}

#[test]
fn an_on_failure_message_names_exactly_the_records_of_its_shards_range() {
    let message = json!({"KinesisBatchInfo": {"shardId": "shardId-000000000001",
        "startSequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "endSequenceNumber": "49590338271490256608559692540925702759324208523137515618",
        "batchSize": 3}});
    let shard = "shardId-000000000001";
    let inside = "49590338271490256608559692539000000000000000000000000000";
    assert!(names_record(&message, shard, inside));
    assert!(names_record(
        &message,
        shard,
        "49590338271490256608559692538361571095921575989136588898"
    ));
    assert!(!names_record(&message, "shardId-000000000002", inside));
    assert!(!names_record(
        &message,
        shard,
        "49590338271490256608559692540925702759324208523137515619"
    ));
    assert!(
        !names_record(&message, shard, "9"),
        "a shorter number is a smaller one"
    );
    assert!(!names_record(&json!({}), shard, inside));
}
