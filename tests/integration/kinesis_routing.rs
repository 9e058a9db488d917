//! The benchmark's lanes are shards as Kinesis fills them (`integration_tests::kinesis`): here
//! the emulator's Kinesis says which shard each of a set of partition keys goes to on streams
//! of 2, 3 and 4 shards, and the benchmark's rule must give the same.

use anyhow::{Context as _, Result};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use integration_tests::kinesis::shard_of;
use integration_tests::moto::{MotoServer, unique_name};

#[tokio::test]
async fn a_record_goes_to_the_shard_the_benchmark_puts_its_partition_key_on() -> Result<()> {
    let kinesis = aws_sdk_kinesis::Client::new(&MotoServer::shared()?.sdk_config());
    let keys: Vec<String> = (0..60).map(|i| format!("product-{i:05}")).collect();
    for shards in [2usize, 3, 4] {
        let stream = unique_name("routing");
        kinesis
            .create_stream()
            .stream_name(&stream)
            .shard_count(i32::try_from(shards)?)
            .send()
            .await?;
        let status = kinesis
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await?;
        anyhow::ensure!(
            status
                .stream_description_summary()
                .map(|d| d.stream_status() == &StreamStatus::Active)
                .unwrap_or(false),
            "stream {stream} is not active"
        );
        let entries = keys
            .iter()
            .map(|k| {
                PutRecordsRequestEntry::builder()
                    .partition_key(k)
                    .data(Blob::new(b"{}".to_vec()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let put = kinesis
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await?;
        let landed: Vec<usize> = put
            .records()
            .iter()
            .map(|r| {
                let id = r.shard_id().context("a record without its shard")?;
                let index = id.trim_start_matches("shardId-").parse::<usize>();
                index.with_context(|| format!("shard id {id}"))
            })
            .collect::<Result<_>>()?;
        let predicted: Vec<usize> = keys.iter().map(|k| shard_of(k, shards)).collect();
        assert_eq!(landed, predicted, "{shards} shards");
        let used: std::collections::BTreeSet<_> = landed.iter().collect();
        assert_eq!(used.len(), shards, "every shard gets some of 60 keys");
        kinesis.delete_stream().stream_name(&stream).send().await?;
    }
    Ok(())
}
