//! The fan-out against in-memory Step Functions and S3: what starts, what is reported, and
//! what a redelivery does.

use super::*;
use async_trait::async_trait;
use aws_lambda_events::event::kinesis::{KinesisEventRecord, KinesisRecord};
use inventory::ports::ObjectKind;
use inventory::steps::fanout::StreamRecord;
use inventory::steps::payloads::{ChunkInput, MAX_CHUNK_RECORDS, MAX_INLINE_RECORD_BYTES};
use inventory::testing::MemoryObjectStore;
use inventory::{ArchiveKey, ErrorKind};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SHARD: &str = "shardId-000000000004";
const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/inventory-updates-dev";

fn sequence(n: usize) -> String {
    format!("49656837373946193488914432406574129858470137234524{n:06}")
}

fn event(data: &[Vec<u8>]) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    for (n, bytes) in data.iter().enumerate() {
        let mut kinesis = KinesisRecord::default();
        kinesis.sequence_number = sequence(n);
        kinesis.partition_key = format!("sku-{n}");
        *kinesis.data = bytes.clone();
        *kinesis.approximate_arrival_timestamp =
            chrono::DateTime::from_timestamp(1_795_000_000, 0).expect("valid");
        let mut record = KinesisEventRecord::default();
        record.event_id = Some(format!("{SHARD}:{}", sequence(n)));
        record.event_source_arn = Some(STREAM_ARN.into());
        record.kinesis = kinesis;
        event.records.push(record);
    }
    event
}

fn tiny(count: usize) -> Vec<Vec<u8>> {
    // A few bytes each, so the record count, not the size, closes a chunk.
    (0..count).map(|n| n.to_string().into_bytes()).collect()
}

/// The chunks the fan-out will cut from `event`, to know their names in advance.
fn planned(event: &KinesisEvent) -> Vec<PlannedChunk> {
    let records: Vec<StreamRecord> = stream_records(event.clone()).expect("valid event");
    plan_chunks(records, BUCKET).expect("planned")
}

const BUCKET: &str = "inventory-archive-test";

/// Step Functions in memory: executions by name, names that fail on demand, and a check that
/// every `data_ref` a started input names is already in S3.
struct FakeStepFunctions {
    s3: Arc<MemoryObjectStore>,
    executions: Mutex<HashMap<String, String>>,
    calls: Mutex<Vec<(String, StartOutcome)>>,
    failing: Mutex<HashMap<String, ErrorKind>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl FakeStepFunctions {
    fn with_s3(s3: Arc<MemoryObjectStore>) -> Self {
        Self {
            s3,
            executions: Mutex::default(),
            calls: Mutex::default(),
            failing: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        }
    }

    fn fail(&self, name: String, kind: ErrorKind) {
        self.failing.lock().expect("lock").insert(name, kind);
    }

    fn heal(&self) {
        self.failing.lock().expect("lock").clear();
    }

    fn names(&self) -> HashSet<String> {
        self.executions
            .lock()
            .expect("lock")
            .keys()
            .cloned()
            .collect()
    }

    fn calls(&self) -> Vec<(String, StartOutcome)> {
        std::mem::take(&mut *self.calls.lock().expect("lock"))
    }
}

#[async_trait]
impl ExecutionStarter for FakeStepFunctions {
    async fn start(&self, name: &str, input: &str) -> Result<StartOutcome, PipelineError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(kind) = self.failing.lock().expect("lock").get(name) {
            return Err(PipelineError::new(*kind, format!("{name} refused")));
        }
        let chunk: ChunkInput = serde_json::from_str(input).expect("the input is a chunk");
        for r in chunk.records.iter().filter_map(|r| r.data_ref.as_ref()) {
            assert!(
                self.s3.object(&r.key).is_some(),
                "{name} refers to {} before it is stored",
                r.key
            );
        }
        let mut executions = self.executions.lock().expect("lock");
        let outcome = match executions.get(name) {
            Some(existing) => {
                assert_eq!(existing, input, "same name, different input");
                StartOutcome::AlreadyStarted
            }
            None => {
                executions.insert(name.to_owned(), input.to_owned());
                StartOutcome::Started
            }
        };
        self.calls
            .lock()
            .expect("lock")
            .push((name.to_owned(), outcome));
        Ok(outcome)
    }
}

/// S3 in memory; each put takes a millisecond, so puts and starts interleave as they would.
fn fakes() -> (FakeStepFunctions, Arc<MemoryObjectStore>) {
    let s3 = Arc::new(MemoryObjectStore::new(BUCKET).with_put_delay(Duration::from_millis(1)));
    (FakeStepFunctions::with_s3(s3.clone()), s3)
}

fn reported(response: &KinesisEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().expect("identifier"))
        .collect()
}

#[tokio::test]
async fn every_chunk_of_a_batch_starts_once_and_nothing_is_reported() {
    let (sfn, s3) = fakes();
    let batch = event(&tiny(2 * MAX_CHUNK_RECORDS + 7));
    let expected: HashSet<String> = planned(&batch)
        .iter()
        .map(PlannedChunk::execution_name)
        .collect();

    let response = handle(batch, &sfn, s3.as_ref()).await.expect("fanned out");

    assert!(reported(&response).is_empty());
    assert_eq!(expected.len(), 3);
    assert_eq!(sfn.names(), expected);
    assert!(
        sfn.calls()
            .iter()
            .all(|(_, outcome)| *outcome == StartOutcome::Started)
    );
}

#[tokio::test]
async fn a_redelivered_batch_starts_no_second_execution() {
    let (sfn, s3) = fakes();
    let batch = event(&tiny(1_200));
    handle(batch.clone(), &sfn, s3.as_ref())
        .await
        .expect("first delivery");
    let first = sfn.names();
    sfn.calls();

    let response = handle(batch, &sfn, s3.as_ref()).await.expect("redelivery");

    assert!(reported(&response).is_empty());
    assert_eq!(sfn.names(), first);
    let calls = sfn.calls();
    assert_eq!(calls.len(), first.len());
    assert!(
        calls
            .iter()
            .all(|(_, outcome)| *outcome == StartOutcome::AlreadyStarted)
    );
}

#[tokio::test]
async fn only_the_first_record_of_each_failed_chunk_is_reported() {
    let (sfn, s3) = fakes();
    let batch = event(&tiny(5 * MAX_CHUNK_RECORDS));
    let chunks = planned(&batch);
    assert_eq!(chunks.len(), 5);
    sfn.fail(chunks[1].execution_name(), ErrorKind::Throttled);
    sfn.fail(chunks[3].execution_name(), ErrorKind::DependencyUnavailable);

    let response = handle(batch, &sfn, s3.as_ref())
        .await
        .expect("partial failure is not an error");

    assert_eq!(
        reported(&response),
        [
            chunks[1].checkpoint_sequence(),
            chunks[3].checkpoint_sequence()
        ]
    );
    let started: HashSet<String> = [0, 2, 4]
        .iter()
        .map(|&i| chunks[i].execution_name())
        .collect();
    assert_eq!(sfn.names(), started);
}

#[tokio::test]
async fn a_redelivery_from_the_checkpoint_starts_only_the_chunks_that_had_failed() {
    let (sfn, s3) = fakes();
    let data = tiny(5 * MAX_CHUNK_RECORDS);
    let chunks = planned(&event(&data));
    sfn.fail(chunks[1].execution_name(), ErrorKind::Throttled);
    sfn.fail(chunks[3].execution_name(), ErrorKind::Throttled);
    let response = handle(event(&data), &sfn, s3.as_ref())
        .await
        .expect("fanned out");
    sfn.heal();
    sfn.calls();
    // The ESM resumes the shard at the lowest reported sequence number.
    let lowest = reported(&response)
        .into_iter()
        .min()
        .expect("something reported");
    let resume_at = (0..data.len())
        .position(|n| sequence(n) == lowest)
        .expect("reported record is in the batch");
    let mut redelivered = event(&data);
    redelivered.records.drain(..resume_at);

    let response = handle(redelivered, &sfn, s3.as_ref())
        .await
        .expect("fanned out");

    assert!(reported(&response).is_empty());
    let all: HashSet<String> = chunks.iter().map(PlannedChunk::execution_name).collect();
    assert_eq!(sfn.names(), all, "no execution beyond the five chunks");
    let mut started: Vec<String> = sfn
        .calls()
        .into_iter()
        .filter(|(_, o)| *o == StartOutcome::Started)
        .map(|(name, _)| name)
        .collect();
    started.sort();
    let mut expected = vec![chunks[1].execution_name(), chunks[3].execution_name()];
    expected.sort();
    assert_eq!(started, expected);
}

#[tokio::test]
async fn a_permanent_error_fails_the_whole_invocation() {
    let (sfn, s3) = fakes();
    let batch = event(&tiny(3 * MAX_CHUNK_RECORDS));
    let chunks = planned(&batch);
    sfn.fail(chunks[2].execution_name(), ErrorKind::Misconfigured);

    let e = handle(batch, &sfn, s3.as_ref())
        .await
        .expect_err("permanent");

    assert_eq!(e.kind, ErrorKind::Misconfigured);
}

#[tokio::test]
async fn oversized_records_are_stored_before_their_chunk_starts() {
    let (sfn, s3) = fakes();
    let mut data = tiny(4);
    data[2] = vec![b'x'; 1024 * 1024];
    let batch = event(&data);

    let response = handle(batch, &sfn, s3.as_ref()).await.expect("fanned out");

    assert!(reported(&response).is_empty());
    let key = ArchiveKey::for_oversized_record("inventory-updates-dev", SHARD, &sequence(2));
    assert_eq!(
        s3.object(key.as_str()).map(|o| (o.body, o.kind)),
        Some((data[2].clone(), ObjectKind::Bytes)),
        "stored as the bytes that arrived"
    );
    let input = sfn
        .executions
        .lock()
        .expect("lock")
        .values()
        .next()
        .cloned()
        .expect("one execution");
    let chunk: ChunkInput = serde_json::from_str(&input).expect("chunk");
    assert_eq!(chunk.records.len(), 4);
    let by_ref = chunk.records[2].data_ref.as_ref().expect("by reference");
    assert_eq!(
        (by_ref.bucket.as_str(), by_ref.key.as_str(), by_ref.bytes),
        (BUCKET, key.as_str(), 1024 * 1024)
    );
}

#[tokio::test]
async fn a_failed_oversized_put_holds_back_only_its_chunk() {
    let (sfn, s3) = fakes();
    let mut data = tiny(3 * MAX_CHUNK_RECORDS);
    data[MAX_CHUNK_RECORDS + 10] = vec![b'x'; MAX_INLINE_RECORD_BYTES + 1];
    let batch = event(&data);
    let chunks = planned(&batch);
    let key = ArchiveKey::for_oversized_record(
        "inventory-updates-dev",
        SHARD,
        &sequence(MAX_CHUNK_RECORDS + 10),
    );
    s3.fail_puts_to(&key);
    let holding = chunks
        .iter()
        .find(|c| !c.oversized.is_empty())
        .expect("a chunk holds the big record");

    let response = handle(batch, &sfn, s3.as_ref()).await.expect("fanned out");

    assert_eq!(reported(&response), [holding.checkpoint_sequence()]);
    assert!(!sfn.names().contains(&holding.execution_name()));
    assert_eq!(sfn.names().len(), chunks.len() - 1);
}

#[tokio::test]
async fn no_more_than_eight_starts_are_in_flight() {
    let (sfn, s3) = fakes();
    let batch = event(&tiny(40 * MAX_CHUNK_RECORDS));

    handle(batch, &sfn, s3.as_ref()).await.expect("fanned out");

    assert_eq!(sfn.names().len(), 40);
    let most = sfn.most_in_flight.load(Ordering::SeqCst);
    assert!(
        (2..=MAX_STARTS_IN_FLIGHT).contains(&most),
        "{most} in flight"
    );
}

#[tokio::test]
async fn an_event_that_is_not_a_kinesis_batch_fails_with_invalid_payload() {
    let (sfn, s3) = fakes();
    let mut batch = event(&tiny(2));
    batch.records[1].event_id = None;

    let e = handle(batch, &sfn, s3.as_ref()).await.expect_err("refused");

    assert_eq!(e.kind, ErrorKind::InvalidPayload);
    assert!(sfn.names().is_empty());
}

#[tokio::test]
async fn an_empty_batch_starts_nothing() {
    let (sfn, s3) = fakes();

    let response = handle(KinesisEvent::default(), &sfn, s3.as_ref())
        .await
        .expect("fanned out");

    assert!(reported(&response).is_empty());
    assert!(sfn.names().is_empty());
}
