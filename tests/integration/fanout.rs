//! The fan-out's real adapters (Step Functions, S3) against a moto server on loopback: chunks
//! start under their deterministic names, a redelivery starts nothing new, oversized records
//! are in S3 before their execution starts, and permanent errors fail the invocation.

use anyhow::{Context as _, Result};
use aws_lambda_events::event::kinesis::KinesisEvent;
use integration_tests::moto::MotoServer;
use inventory::adapters::s3::{ArchiveConfig, S3ObjectStore};
use inventory::steps::payloads::ChunkInput;
use inventory::{ArchiveKey, ErrorKind};
use inventory_fanout::sfn::SfnExecutionStarter;

const FIXTURE: &str = include_str!("../fixtures/kinesis-batch.json");
const ASL: &str = include_str!("../../statemachines/inventory-pipeline.asl.json");
const BUCKET: &str = "inventory-archive-fanout-test";

/// Moto with a bucket and the pipeline's state machine (not executed: moto only records the
/// executions, which is what these tests look at).
struct Aws {
    _moto: MotoServer,
    sfn: aws_sdk_sfn::Client,
    s3: aws_sdk_s3::Client,
    state_machine_arn: String,
}

async fn aws() -> Result<Aws> {
    // A server of its own: the bucket and state machine names are fixed.
    let moto = MotoServer::start()?;
    let conf = moto.sdk_config();
    let (sfn, s3) = (
        aws_sdk_sfn::Client::new(&conf),
        aws_sdk_s3::Client::new(&conf),
    );
    s3.create_bucket().bucket(BUCKET).send().await?;
    let mut definition = ASL.to_owned();
    for name in [
        "ValidateFunctionArn",
        "ArchiveFunctionArn",
        "PersistFunctionArn",
        "CacheInvalidateFunctionArn",
    ] {
        definition = definition.replace(
            &format!("${{{name}}}"),
            &format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        );
    }
    let state_machine_arn = sfn
        .create_state_machine()
        .name("inventory-pipeline-fanout-test")
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/inventory-pipeline")
        .send()
        .await?
        .state_machine_arn;
    Ok(Aws {
        _moto: moto,
        sfn,
        s3,
        state_machine_arn,
    })
}

impl Aws {
    fn starter(&self) -> SfnExecutionStarter {
        SfnExecutionStarter::new(self.sfn.clone(), &self.state_machine_arn)
    }

    fn store(&self, bucket: &str) -> S3ObjectStore {
        S3ObjectStore::new(
            self.s3.clone(),
            ArchiveConfig {
                bucket: bucket.into(),
                kms_key_id: None,
            },
        )
    }

    /// Every execution's name and input.
    async fn executions(&self) -> Result<Vec<(String, ChunkInput)>> {
        let listed = self
            .sfn
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .send()
            .await?;
        let mut out = Vec::new();
        for e in listed.executions {
            let described = self
                .sfn
                .describe_execution()
                .execution_arn(&e.execution_arn)
                .send()
                .await?;
            let input: ChunkInput =
                serde_json::from_str(described.input().context("execution has an input")?)?;
            out.push((e.name, input));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// The fixture batch, with its second record replaced by one too large to travel inline.
fn batch_with_an_oversized_record() -> Result<(KinesisEvent, Vec<u8>)> {
    let mut event: KinesisEvent = serde_json::from_str(FIXTURE)?;
    let big = format!(
        r#"{{"product_id":"sku-42","quantity":1,"price":"1.00","note":"{}"}}"#,
        "x".repeat(40_000)
    )
    .into_bytes();
    *event.records[1].kinesis.data = big.clone();
    Ok((event, big))
}

fn reported(response: &aws_lambda_events::event::streams::KinesisEventResponse) -> usize {
    response.batch_item_failures.len()
}

#[tokio::test]
async fn a_batch_starts_one_named_execution_and_parks_its_oversized_record_in_s3() -> Result<()> {
    let aws = aws().await?;
    let (event, big) = batch_with_an_oversized_record()?;
    let sequence = event.records[1].kinesis.sequence_number.clone();

    let response = inventory_fanout::handle(event, &aws.starter(), &aws.store(BUCKET)).await?;

    assert_eq!(reported(&response), 0);
    let executions = aws.executions().await?;
    assert_eq!(executions.len(), 1);
    let (name, input) = &executions[0];
    assert_eq!(name, &input.chunk.execution_name());
    assert_eq!(input.records.len(), 3);
    let key = ArchiveKey::for_oversized_record(
        "inventory-updates-dev",
        "shardId-000000000000",
        &sequence,
    );
    let by_ref = input.records[1]
        .data_ref
        .as_ref()
        .context("the big record travels by reference")?;
    assert_eq!(
        (by_ref.bucket.as_str(), by_ref.key.as_str()),
        (BUCKET, key.as_str())
    );
    let stored = aws
        .s3
        .get_object()
        .bucket(BUCKET)
        .key(key.as_str())
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    assert_eq!(stored.as_ref(), big.as_slice());
    Ok(())
}

#[tokio::test]
async fn a_redelivered_batch_starts_no_second_execution() -> Result<()> {
    let aws = aws().await?;
    let (event, _) = batch_with_an_oversized_record()?;
    inventory_fanout::handle(event.clone(), &aws.starter(), &aws.store(BUCKET)).await?;
    let first = aws.executions().await?;
    // Redelivered while the execution still runs (StartExecution is idempotent), then after
    // it ended (ExecutionAlreadyExists).
    let again_running =
        inventory_fanout::handle(event.clone(), &aws.starter(), &aws.store(BUCKET)).await?;
    let arn = aws
        .sfn
        .list_executions()
        .state_machine_arn(&aws.state_machine_arn)
        .send()
        .await?
        .executions[0]
        .execution_arn
        .clone();
    aws.sfn.stop_execution().execution_arn(arn).send().await?;

    let again_ended = inventory_fanout::handle(event, &aws.starter(), &aws.store(BUCKET)).await?;

    assert_eq!((reported(&again_running), reported(&again_ended)), (0, 0));
    assert_eq!(aws.executions().await?, first);
    Ok(())
}

#[tokio::test]
async fn a_state_machine_that_does_not_exist_fails_the_invocation_as_misconfigured() -> Result<()> {
    let aws = aws().await?;
    let (event, _) = batch_with_an_oversized_record()?;
    let missing =
        SfnExecutionStarter::new(aws.sfn.clone(), format!("{}-gone", aws.state_machine_arn));

    let e = inventory_fanout::handle(event, &missing, &aws.store(BUCKET))
        .await
        .expect_err("permanent");

    assert_eq!(e.kind, ErrorKind::Misconfigured, "{}", e.detailed());
    Ok(())
}

#[tokio::test]
async fn a_bucket_that_does_not_exist_fails_the_invocation_as_misconfigured() -> Result<()> {
    let aws = aws().await?;
    let (event, _) = batch_with_an_oversized_record()?;

    let e = inventory_fanout::handle(event, &aws.starter(), &aws.store("no-such-bucket-here"))
        .await
        .expect_err("permanent");

    assert_eq!(e.kind, ErrorKind::Misconfigured, "{}", e.detailed());
    assert!(
        aws.executions().await?.is_empty(),
        "nothing may start that refers to a missing object"
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_step_functions_endpoint_reports_the_chunk_for_redelivery() -> Result<()> {
    let aws = aws().await?;
    let (event, _) = batch_with_an_oversized_record()?;
    let first_sequence = event.records[0].kinesis.sequence_number.clone();
    let closed_port = test_support::free_port();
    let conf = test_support::aws::stub_sdk_config(&format!("http://127.0.0.1:{closed_port}"));
    let unreachable =
        SfnExecutionStarter::new(aws_sdk_sfn::Client::new(&conf), &aws.state_machine_arn);

    let response = inventory_fanout::handle(event, &unreachable, &aws.store(BUCKET)).await?;

    let items: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(items, [Some(first_sequence)]);
    Ok(())
}
