//! Tests of the fan-out rules: the size bound, determinism, order, and by-reference records.

use super::*;
use chrono::TimeZone;
use proptest::prelude::*;

const BUCKET: &str = "inventory-archive-dev";
const STREAM: &str = "inventory-updates-dev";

fn sequence(n: u64) -> String {
    format!("49590338271490256608559692538361571095921575989136{n:06}")
}

fn record(shard: &str, n: u64, data: Vec<u8>) -> StreamRecord {
    StreamRecord {
        stream: STREAM.into(),
        shard_id: shard.into(),
        sequence_number: sequence(n),
        partition_key: format!("sku-{}", n % 97),
        arrived_at: Utc
            .with_ymd_and_hms(2026, 11, 24, 7, 30, 0)
            .single()
            .expect("valid")
            + chrono::Duration::milliseconds(n as i64),
        data,
    }
}

fn small_batch(count: u64) -> Vec<StreamRecord> {
    (0..count)
        .map(|n| {
            record(
                "shardId-000000000000",
                n,
                format!(r#"{{"product_id":"sku-{n}","quantity":1,"price":"9.99"}}"#).into_bytes(),
            )
        })
        .collect()
}

/// Every record's sequence number, per shard, in the order the chunks carry them.
fn carried(chunks: &[PlannedChunk]) -> Vec<(String, String)> {
    chunks
        .iter()
        .flat_map(|c| {
            c.input
                .records
                .iter()
                .map(|r| (c.input.chunk.shard_id.clone(), r.sequence_number.clone()))
        })
        .collect()
}

fn assert_within_limits(chunks: &[PlannedChunk]) {
    for c in chunks {
        assert!(
            c.input_json.len() <= MAX_CHUNK_PAYLOAD_BYTES,
            "{} is {} bytes",
            c.execution_name(),
            c.input_json.len()
        );
        assert!(
            c.input.records.len() <= MAX_CHUNK_RECORDS,
            "{} has {} records",
            c.execution_name(),
            c.input.records.len()
        );
        assert!(!c.input.records.is_empty());
        let sent: ChunkInput =
            serde_json::from_str(&c.input_json).expect("the JSON sent is a chunk");
        assert_eq!(sent, c.input);
    }
}

#[test]
fn a_small_batch_becomes_one_chunk_in_delivery_order() {
    let batch = small_batch(3);

    let chunks = plan_chunks(batch.clone(), BUCKET).expect("planned");

    assert_eq!(chunks.len(), 1);
    let chunk = &chunks[0];
    assert_eq!(chunk.input.chunk.first_sequence, sequence(0));
    assert_eq!(chunk.input.chunk.last_sequence, sequence(2));
    assert_eq!(chunk.input.chunk.stream, STREAM);
    assert_eq!(chunk.checkpoint_sequence(), sequence(0));
    let decoded: Vec<Vec<u8>> = chunk
        .input
        .records
        .iter()
        .map(|r| {
            BASE64
                .decode(r.data.as_deref().expect("inline"))
                .expect("base64")
        })
        .collect();
    assert_eq!(
        decoded,
        batch.iter().map(|r| r.data.clone()).collect::<Vec<_>>()
    );
    assert!(chunk.oversized.is_empty());
}

#[test]
fn ten_thousand_tiny_records_are_cut_at_the_record_limit() {
    // Two bytes of data each: about 150 bytes of JSON per record, so the count binds first.
    let batch: Vec<_> = (0..10_000)
        .map(|n| record("shardId-000000000000", n, b"{}".to_vec()))
        .collect();

    let chunks = plan_chunks(batch, BUCKET).expect("planned");

    assert_within_limits(&chunks);
    assert_eq!(chunks.len(), 10_000 / MAX_CHUNK_RECORDS);
    assert!(
        chunks
            .iter()
            .all(|c| c.input.records.len() == MAX_CHUNK_RECORDS)
    );
    assert_eq!(carried(&chunks).len(), 10_000);
}

#[test]
fn records_at_the_inline_limit_stay_inline_and_chunks_stay_within_budget() {
    let batch: Vec<_> = (0..300)
        .map(|n| {
            record(
                "shardId-000000000001",
                n,
                vec![b'x'; MAX_INLINE_RECORD_BYTES],
            )
        })
        .collect();

    let chunks = plan_chunks(batch, BUCKET).expect("planned");

    assert_within_limits(&chunks);
    assert!(chunks.iter().all(|c| c.oversized.is_empty()));
    assert!(
        chunks
            .iter()
            .flat_map(|c| &c.input.records)
            .all(|r| r.data.is_some() && r.data_ref.is_none())
    );
    assert_eq!(carried(&chunks).len(), 300);
    // Greedy: every chunk but the last is full, i.e. the next record would not have fitted.
    let per_chunk = chunks[0].input.records.len();
    assert!(
        per_chunk >= 3,
        "only {per_chunk} records of the inline limit per chunk"
    );
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c.input.records.len() == per_chunk)
    );
}

#[test]
fn a_record_over_the_inline_limit_travels_by_reference() {
    let small = |n: u64| record("shardId-000000000000", n, b"{}".to_vec());
    let batch = vec![
        small(0),
        record("shardId-000000000000", 1, vec![b'{'; 1024 * 1024]),
        small(2),
    ];

    let chunks = plan_chunks(batch, BUCKET).expect("planned");

    assert_within_limits(&chunks);
    assert_eq!(chunks.len(), 1);
    let records = &chunks[0].input.records;
    assert_eq!(
        records
            .iter()
            .map(|r| r.sequence_number.clone())
            .collect::<Vec<_>>(),
        [sequence(0), sequence(1), sequence(2)]
    );
    let by_ref = &records[1];
    assert_eq!(by_ref.data, None);
    let expected_key =
        ArchiveKey::for_oversized_record(STREAM, "shardId-000000000000", &sequence(1));
    assert_eq!(
        by_ref.data_ref,
        Some(ObjectRef {
            bucket: BUCKET.into(),
            key: expected_key.to_string(),
            bytes: 1024 * 1024
        })
    );
    assert_eq!(
        chunks[0].oversized,
        [OversizedRecord {
            key: expected_key,
            data: vec![b'{'; 1024 * 1024]
        }]
    );
}

#[test]
fn ten_thousand_oversized_records_still_fit_by_reference() {
    let batch: Vec<_> = (0..10_000)
        .map(|n| {
            record(
                "shardId-000000000002",
                n,
                vec![0; MAX_INLINE_RECORD_BYTES + 1],
            )
        })
        .collect();

    let chunks = plan_chunks(batch, BUCKET).expect("planned");

    assert_within_limits(&chunks);
    assert_eq!(
        chunks.iter().map(|c| c.oversized.len()).sum::<usize>(),
        10_000
    );
    assert_eq!(carried(&chunks).len(), 10_000);
}

#[test]
fn records_of_different_shards_never_share_a_chunk() {
    let batch = vec![
        record("shardId-000000000000", 1, b"a".to_vec()),
        record("shardId-000000000001", 2, b"b".to_vec()),
        record("shardId-000000000000", 3, b"c".to_vec()),
    ];

    let chunks = plan_chunks(batch, BUCKET).expect("planned");

    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].input.chunk.shard_id, "shardId-000000000000");
    assert_eq!(
        chunks[0]
            .input
            .records
            .iter()
            .map(|r| r.sequence_number.clone())
            .collect::<Vec<_>>(),
        [sequence(1), sequence(3)]
    );
    assert_eq!(chunks[1].input.chunk.shard_id, "shardId-000000000001");
    assert_ne!(chunks[0].execution_name(), chunks[1].execution_name());
}

#[test]
fn a_batch_redelivered_from_a_failed_chunk_gives_the_later_chunks_the_same_names() {
    let batch: Vec<_> = (0..2_000)
        .map(|n| {
            record(
                "shardId-000000000000",
                n,
                vec![b'y'; (n as usize * 7919) % (2 * MAX_INLINE_RECORD_BYTES)],
            )
        })
        .collect();
    let first = plan_chunks(batch.clone(), BUCKET).expect("planned");
    assert!(first.len() > 4);
    let failed = &first[2];

    let resume_at = batch
        .iter()
        .position(|r| r.sequence_number == failed.checkpoint_sequence())
        .expect("reported record is in the batch");
    let redelivered = plan_chunks(batch[resume_at..].to_vec(), BUCKET).expect("planned");

    let names = |cs: &[PlannedChunk]| {
        cs.iter()
            .map(PlannedChunk::execution_name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&redelivered), names(&first[2..]));
    assert_eq!(redelivered[0].input_json, failed.input_json);
}

#[test]
fn chunks_that_would_share_a_sequence_range_get_distinct_names() {
    // Malformed (a stream never repeats a sequence number), but must not merge two chunks.
    let batch: Vec<_> = (0..12)
        .map(|_| {
            record(
                "shardId-000000000000",
                5,
                vec![b'z'; MAX_INLINE_RECORD_BYTES],
            )
        })
        .collect();

    let chunks = plan_chunks(batch, BUCKET).expect("planned");

    assert!(chunks.len() >= 2);
    let mut names: Vec<_> = chunks.iter().map(PlannedChunk::execution_name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), chunks.len());
    assert_eq!(
        chunks
            .iter()
            .map(|c| c.input.chunk.index)
            .collect::<Vec<_>>(),
        (0..chunks.len() as u32).collect::<Vec<_>>()
    );
}

#[test]
fn the_first_chunk_of_a_shard_has_index_zero_whatever_its_position() {
    let batch = vec![
        record("shardId-000000000000", 1, b"a".to_vec()),
        record("shardId-000000000001", 2, b"b".to_vec()),
    ];

    let chunks = plan_chunks(batch, BUCKET).expect("planned");

    assert_eq!(
        chunks
            .iter()
            .map(|c| c.input.chunk.index)
            .collect::<Vec<_>>(),
        [0, 0]
    );
}

#[test]
fn a_record_without_a_sequence_number_is_refused() {
    let mut batch = small_batch(2);
    batch[1].sequence_number.clear();

    let e = plan_chunks(batch, BUCKET).expect_err("refused");

    assert_eq!(e.kind, ErrorKind::InvalidPayload);
}

#[test]
fn a_record_whose_metadata_alone_overflows_a_chunk_is_refused() {
    let mut batch = small_batch(1);
    batch[0].partition_key = "k".repeat(MAX_CHUNK_PAYLOAD_BYTES);

    let e = plan_chunks(batch, BUCKET).expect_err("refused");

    assert_eq!(e.kind, ErrorKind::InvalidPayload);
    assert!(e.message.contains("does not fit"), "{}", e.message);
}

#[test]
fn cutting_no_records_is_a_bug_not_an_empty_chunk() {
    let mut chunker = ShardChunker::new(STREAM, "shardId-000000000000", BUCKET);

    let e = chunker.cut(Vec::new()).expect_err("refused");

    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.message, "tried to cut an empty chunk");
}

#[test]
fn a_chunk_over_the_payload_budget_is_never_handed_out() {
    // More inline records than the planner would ever put together.
    let mut chunker = ShardChunker::new(STREAM, "shardId-000000000000", BUCKET);
    let mut placed = Vec::new();
    let mut bytes = 0;
    let mut n = 0;
    while bytes <= MAX_CHUNK_PAYLOAD_BYTES {
        let p = chunker
            .place(record(
                "shardId-000000000000",
                n,
                vec![b'x'; MAX_INLINE_RECORD_BYTES / 2],
            ))
            .expect("placed");
        assert!(p.oversized.is_none(), "inline");
        bytes += p.json_len;
        placed.push(p);
        n += 1;
    }

    let e = chunker.cut(placed).expect_err("over budget");

    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(
        e.message
            .ends_with(&format!("over the {MAX_CHUNK_PAYLOAD_BYTES} budget")),
        "{}",
        e.message
    );
}

#[test]
fn an_empty_batch_has_no_chunks() {
    assert!(plan_chunks(Vec::new(), BUCKET).expect("planned").is_empty());
}

/// A record size: mostly small, some around the inline limit, some well over it.
fn data_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..400,
        2 => (MAX_INLINE_RECORD_BYTES - 64)..=(MAX_INLINE_RECORD_BYTES + 64),
        1 => (MAX_INLINE_RECORD_BYTES + 1)..(4 * MAX_INLINE_RECORD_BYTES),
    ]
}

prop_compose! {
    /// A batch as the stream could deliver it: up to three shards, Kinesis-sized partition
    /// keys of any characters (JSON escaping makes some several times longer), records of any
    /// size.
    fn batch()(specs in prop::collection::vec((0u8..3, data_len(), "\\PC{1,256}", any::<u8>()), 0..120))
        -> Vec<StreamRecord> {
        specs
            .into_iter()
            .enumerate()
            .map(|(n, (shard, len, key, fill))| {
                let mut r = record(&format!("shardId-00000000000{shard}"), n as u64, vec![fill; len]);
                r.partition_key = key;
                r
            })
            .collect()
    }
}

proptest! {
    // No regression file: a failing batch holds megabytes of record data; the failure
    // message prints the shrunk case instead.
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_chunk_fits_and_no_record_is_lost_or_reordered(batch in batch()) {
        let chunks = plan_chunks(batch.clone(), BUCKET).expect("planned");

        assert_within_limits(&chunks);
        let mut expected: Vec<(String, String)> = Vec::new();
        let mut shards: Vec<String> = Vec::new();
        for r in &batch {
            if !shards.contains(&r.shard_id) {
                shards.push(r.shard_id.clone());
            }
        }
        for s in &shards {
            expected.extend(batch.iter().filter(|r| &r.shard_id == s).map(|r| (s.clone(), r.sequence_number.clone())));
        }
        prop_assert_eq!(carried(&chunks), expected);
        let oversized = batch.iter().filter(|r| r.data.len() > MAX_INLINE_RECORD_BYTES).count();
        prop_assert_eq!(chunks.iter().map(|c| c.oversized.len()).sum::<usize>(), oversized);
    }

    #[test]
    fn the_same_batch_always_gives_the_same_chunks_and_names(batch in batch()) {
        let once = plan_chunks(batch.clone(), BUCKET).expect("planned");
        let twice = plan_chunks(batch, BUCKET).expect("planned");

        prop_assert_eq!(&once, &twice);
        let mut names: Vec<_> = once.iter().map(PlannedChunk::execution_name).collect();
        names.sort();
        names.dedup();
        prop_assert_eq!(names.len(), once.len());
    }
}

/// Room for what the `lambda:invoke` integration wraps around a function's output
/// (`StatusCode`, `ExecutedVersion`, `SdkHttpMetadata`, ...) before `ResultSelector` trims it.
const INVOKE_ENVELOPE_BYTES: usize = 4 * 1024;

#[test]
fn a_full_chunk_of_the_smallest_valid_records_keeps_validates_output_under_the_state_limit() {
    use crate::domain::update::{SourcePosition, parse_record};
    use crate::steps::payloads::{STATE_PAYLOAD_LIMIT_BYTES, ValidateOutput};
    // The smallest valid record grows the most when parsed: its update carries a fixed
    // update key, timestamps and stream position. One-character partition keys pack the
    // most of them into a chunk.
    let batch: Vec<_> = (0..2_000)
        .map(|n| {
            let mut r = record(
                "shardId-000000000000",
                n,
                br#"{"product_id":"a","quantity":0,"price":0}"#.to_vec(),
            );
            r.partition_key = "a".into();
            r
        })
        .collect();
    let chunks = plan_chunks(batch, BUCKET).expect("planned");

    for c in &chunks {
        let valid = c
            .input
            .records
            .iter()
            .map(|r| {
                let bytes = BASE64
                    .decode(r.data.as_deref().expect("inline"))
                    .expect("base64");
                let position = SourcePosition {
                    shard_id: c.input.chunk.shard_id.clone(),
                    sequence_number: r.sequence_number.clone(),
                    arrived_at: r.arrived_at,
                };
                parse_record(&bytes, &position).expect("valid record")
            })
            .collect();
        let output = ValidateOutput {
            chunk: c.input.chunk.clone(),
            valid,
            rejected: Vec::new(),
        };
        let bytes = serde_json::to_vec(&output).expect("serialises").len();
        assert!(
            bytes + INVOKE_ENVELOPE_BYTES < STATE_PAYLOAD_LIMIT_BYTES,
            "validate's output for {} records is {bytes} bytes",
            c.input.records.len()
        );
    }
}
