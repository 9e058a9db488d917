//! End to end through the local stack (`cargo xtask stack up`, started for the suite by
//! `cargo xtask test`): records go on the Kinesis stream or straight to the fan-out, and the
//! tests look at what the real binaries, the real ASL file under moto's interpreter, the
//! poller and PostgreSQL, Redis and S3 did.
//!
//! The stack is the one whose outputs file `INVENTORY_OUTPUTS` names (to run them against a
//! `cargo xtask stack up`: `INVENTORY_OUTPUTS=cfn-outputs/flat-outputs.json cargo test -p
//! integration-tests e2e`). Without it these tests say so and pass, unless
//! `INVENTORY_E2E_REQUIRED=1` (as `cargo xtask test` sets), where a missing stack fails them.
//! The tests here use the router's fault switch or the stack's database, so on a deployed
//! stack they say so and pass; `workflows` holds the tests that run against either target,
//! and `operator` runs the `inventory` binary's operator commands against the stack.
//!
//! Redrive: moto implements no `RedriveExecution`. A redrive re-runs the failed execution from
//! its failed state with the same input, so what it relies on is that running the same input
//! again, after the failure and once more after that, applies every update exactly once. The
//! last test checks exactly that, by starting new executions with the failed one's input.
//!
//! The tests share one stack, so they run one at a time (`SERIAL`); each uses product ids of
//! its own, and looks only at executions started after it began.

mod harness;
mod operator;
mod producer;
mod workflows;

use anyhow::{Context as _, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use base64::Engine as _;
use harness::{Fault, SERIAL, failed_in, local_stack};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn a_redelivered_batch_starts_no_second_execution() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) =
        local_stack("the router's direct invocation of the fan-out and the stack's database").await
    else {
        return Ok(());
    };
    // Arrange: a batch as the event source mapping would deliver it, from a shard of our own.
    let shard = format!(
        "shardId-{:012}",
        chrono::Utc::now().timestamp_millis() % 1_000_000_000_000
    );
    let base = chrono::Utc::now().timestamp_micros();
    let seqs: Vec<String> = (1..=3).map(|i| format!("4959{base:040}{i}")).collect();
    let records: Vec<Value> = seqs
        .iter()
        .enumerate()
        .map(|(i, seq)| {
            let product = st.product(i as u32);
            json!({"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": product, "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(st.update(&product, "acme", 5)),
                    "approximateArrivalTimestamp": chrono::Utc::now().timestamp_millis() as f64 / 1000.0},
                   "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("{shard}:{seq}"),
                   "eventName": "aws:kinesis:record", "awsRegion": "us-east-1", "eventSourceARN": st.o("StreamArn"),
                   "invokeIdentityArn": "arn:aws:iam::123456789012:role/e2e"})
        })
        .collect();
    let event = json!({ "Records": records });
    let invoke = "/2015-03-31/functions/fanout/invocations";

    // Act: deliver it, let it finish, deliver it again.
    let first = st.router("POST", invoke, &event)?;
    st.wait_finished(1).await?;
    st.until("three events", async || st.events().await, |n| *n == 3)
        .await?;
    let second = st.router("POST", invoke, &event)?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Assert: both deliveries succeeded, one execution exists, each update applied once.
    for reply in [&first, &second] {
        let failures = reply
            .get("batchItemFailures")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert_eq!(failures, 0, "the fan-out reported failures: {reply}");
    }
    let executions = st.wait_finished(1).await?;
    assert_eq!(
        executions.len(),
        1,
        "a redelivery started another execution: {executions:?}"
    );
    assert_eq!(executions[0].2, ExecutionStatus::Succeeded);
    let expected = inventory::pipeline::ChunkId {
        stream: st.o("StreamName").to_owned(),
        shard_id: shard,
        first_sequence: seqs[0].clone(),
        last_sequence: seqs[2].clone(),
        index: 0,
    };
    assert_eq!(
        executions[0].1,
        expected.execution_name(),
        "the execution is named after its chunk"
    );
    assert_eq!(st.events().await?, 3);
    Ok(())
}

#[tokio::test]
async fn a_batch_with_poison_records_finishes_with_them_quarantined() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the stack's database (the quarantine and event tables)").await
    else {
        return Ok(());
    };
    // Arrange: good and bad records on one product's partition key (one shard, one batch).
    let key = st.product(0);
    let mut records = vec![
        (key.clone(), st.update(&key, "acme", 1)),
        (
            key.clone(),
            format!(r#"{{"product_id":"{key}","quantity":5,"price":"#).into_bytes(),
        ),
        (key.clone(), st.update(&key, "globex", 2)),
        (
            key.clone(),
            format!(r#"{{"product_id":"{key}","quantity":-3,"price":"1"}}"#).into_bytes(),
        ),
        (
            key.clone(),
            format!(r#"{{"product_id":"{key}","quantity":1,"price":"1","colour":"red"}}"#)
                .into_bytes(),
        ),
        (key.clone(), vec![0xff, 0xfe, 0x00]),
    ];
    records.push((st.product(1), st.update(&st.product(1), "acme", 3)));

    // Act
    st.put(&records).await?;
    let executions = st.wait_finished(1).await?;
    let quarantined = st
        .until(
            "four quarantined records",
            async || {
                st.count(
                    "SELECT count(*) FROM quarantined_records WHERE partition_key LIKE '{nonce}-%'",
                )
                .await
            },
            |n| *n >= 4,
        )
        .await?;

    // Assert: every execution succeeded; good records applied, bad ones kept with their reason.
    assert!(
        executions.iter().all(|e| e.2 == ExecutionStatus::Succeeded),
        "{executions:?}"
    );
    assert_eq!(st.events().await?, 3);
    assert_eq!(quarantined, 4);
    for code in ["not_json", "quantity_negative", "unknown_field", "not_utf8"] {
        let n = st.count(&format!("SELECT count(*) FROM quarantined_records WHERE partition_key LIKE '{{nonce}}-%' AND reason_code = '{code}'")).await?;
        assert_eq!(n, 1, "{code}");
    }
    Ok(())
}

#[tokio::test]
async fn a_task_failing_transiently_is_retried_by_the_state_machine_and_succeeds() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the local fault switch").await else {
        return Ok(());
    };
    // Arrange: persist fails twice, transiently, for this test's products only.
    let fault = Fault::add(
        &st,
        json!({"function": "persist", "match": st.nonce, "count": 2, "error_type": "Inventory.DependencyUnavailable"}),
    )?;
    let key = st.product(0);

    // Act
    st.put(&[
        (key.clone(), st.update(&key, "acme", 7)),
        (key.clone(), st.update(&key, "initech", 8)),
    ])
    .await?;
    let executions = st.wait_finished(1).await?;

    // Assert: the fault fired twice, and still every execution succeeded, applying each update once.
    assert_eq!(fault.fired()?, 2);
    assert!(
        executions.iter().all(|e| e.2 == ExecutionStatus::Succeeded),
        "{executions:?}"
    );
    assert_eq!(st.events().await?, 2);
    Ok(())
}

#[tokio::test]
async fn the_fanout_failing_for_good_sends_the_batch_to_the_on_failure_queue_in_the_aws_shape()
-> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the local fault switch").await else {
        return Ok(());
    };
    // Arrange: the fan-out fails for any batch holding this test's partition key.
    let key = st.product(0);
    let fault = Fault::add(
        &st,
        json!({"function": "fanout", "match": key, "error_type": "Inventory.Internal"}),
    )?;
    let queue = st.o("FanoutDlqUrl").to_owned();

    // Act: after bisecting and its retries, the mapping gives up on the record.
    st.put(&[(key.clone(), st.update(&key, "acme", 1))]).await?;
    let message = st
        .until(
            "a message on the on-failure queue",
            async || {
                let out = st
                    .sqs
                    .receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await?;
                let bodies: Vec<Value> = out
                    .messages()
                    .iter()
                    .filter_map(|m| serde_json::from_str(m.body()?).ok())
                    .collect();
                Ok(bodies)
            },
            |v| !v.is_empty(),
        )
        .await?;
    drop(fault);

    // Assert: AWS's invocation record for Kinesis, naming the record; nothing was applied.
    let m = &message[0];
    assert_eq!(
        m["requestContext"]["condition"], "RetryAttemptsExhausted",
        "{m}"
    );
    assert_eq!(m["responseContext"]["functionError"], "Unhandled");
    let info = &m["KinesisBatchInfo"];
    assert_eq!(info["batchSize"], 1, "{m}");
    assert_eq!(info["streamArn"], st.o("StreamArn"));
    assert!(
        info["shardId"]
            .as_str()
            .is_some_and(|s| s.starts_with("shardId-"))
    );
    assert_eq!(info["startSequenceNumber"], info["endSequenceNumber"]);
    assert_eq!(st.events().await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_persist_failure_fails_the_execution_at_persist_and_rerunning_its_input_applies_it_exactly_once()
-> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the local fault switch").await else {
        return Ok(());
    };
    // Arrange: persist fails permanently for this test's product (three suppliers, one chunk).
    let key = st.product(0);
    let fault = Fault::add(
        &st,
        json!({"function": "persist", "match": key, "error_type": "Inventory.Internal"}),
    )?;
    st.put(&[
        (key.clone(), st.update(&key, "acme", 1)),
        (key.clone(), st.update(&key, "globex", 2)),
        (key.clone(), st.update(&key, "initech", 3)),
    ])
    .await?;
    let executions = st.wait_finished(1).await?;
    let (failed_arn, failed_name, status) = executions.first().cloned().context("an execution")?;

    // The execution failed, at Persist, with the task's own error; nothing was applied.
    assert_eq!(status, ExecutionStatus::Failed, "{executions:?}");
    let history = st
        .sfn
        .get_execution_history()
        .execution_arn(&failed_arn)
        .max_results(1000)
        .send()
        .await?;
    assert_eq!(
        failed_in(&history),
        vec!["Persist".to_owned()],
        "the states whose task failed"
    );
    let failure = history
        .events()
        .iter()
        .find_map(|e| e.execution_failed_event_details())
        .context("no ExecutionFailed event")?;
    assert_eq!(failure.error(), Some("Inventory.Internal"));
    assert_eq!(st.events().await?, 0);

    // Act: recover, then run the failed execution's input twice more (what a redrive re-runs).
    drop(fault);
    let input = st
        .sfn
        .describe_execution()
        .execution_arn(&failed_arn)
        .send()
        .await?
        .input()
        .context("no input")?
        .to_owned();
    for attempt in 1..=2 {
        let name = format!(
            "{}-rerun{attempt}",
            &failed_name[..failed_name.len().min(70)]
        );
        let arn = st
            .sfn
            .start_execution()
            .state_machine_arn(st.o("StateMachineArn"))
            .name(name)
            .input(&input)
            .send()
            .await?
            .execution_arn()
            .to_owned();
        let status = st
            .until(
                "the re-run to finish",
                async || {
                    Ok(st
                        .sfn
                        .describe_execution()
                        .execution_arn(&arn)
                        .send()
                        .await?
                        .status()
                        .clone())
                },
                |s| *s != ExecutionStatus::Running,
            )
            .await?;
        assert_eq!(status, ExecutionStatus::Succeeded, "re-run {attempt}");
        // Assert: every update applied exactly once, whatever the number of runs.
        assert_eq!(st.events().await?, 3, "after re-run {attempt}");
        assert_eq!(
            st.count("SELECT count(*) FROM product_offers WHERE product_id LIKE '{nonce}-%'")
                .await?,
            3
        );
    }
    let archived = st
        .s3
        .list_objects_v2()
        .bucket(st.o("ArchiveBucketName"))
        .prefix("raw/")
        .send()
        .await?;
    let objects = archived
        .contents()
        .iter()
        .filter(|o| o.key().is_some_and(|k| k.contains(&failed_name)))
        .count();
    assert_eq!(objects, 1, "the chunk is archived once, under its own key");
    Ok(())
}
