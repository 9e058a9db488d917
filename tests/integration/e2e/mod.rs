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
//! Redrive: the local stack's emulator has `RedriveExecution` with AWS's semantics (see
//! `tests/xtask/src/stack/moto_shim.py`): a failed execution resumes at the state that failed,
//! on the same ARN with the same input, and a Parallel state re-runs only its failed branches.
//! The last tests redrive an execution that failed at Persist (Archive and Validate do not run
//! again, every update is applied once, a second redrive is refused), and, for an execution
//! past the redrive window, check the refusal and the fallback: new executions with the failed
//! one's input, which apply every update exactly once however often they run.
//!
//! The tests share one stack, so they run one at a time (`SERIAL`); each uses product ids of
//! its own, and looks only at executions started after it began.

mod harness;
mod operator;
mod operator_redrive;
mod producer;
mod suppliers;
mod workflows;

use anyhow::{Context as _, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use base64::Engine as _;
use harness::{Fault, RedriveWindow, SERIAL, Stack, failed_in, local_stack};
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
    let expected = inventory::steps::payloads::ChunkId {
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

/// Puts three updates of one product (one chunk) with Persist failing permanently for it, and
/// checks that their execution failed at Persist with the task's error, applying nothing.
/// Returns the execution's ARN and name, and the fault (Persist fails until it is dropped).
async fn failed_at_persist(st: &Stack) -> Result<(String, String, Fault<'_>)> {
    let key = st.product(0);
    let fault = Fault::add(
        st,
        // After 2 s: the Archive branch beside it has ended by then, as a redrive that re-runs only
        // the failed branch needs (a branch still running when Persist fails is stopped, and
        // re-run by a redrive, on AWS as here).
        json!({"function": "persist", "match": key, "error_type": "Inventory.Internal", "delay_ms": 2000}),
    )?;
    st.put(&[
        (key.clone(), st.update(&key, "acme", 1)),
        (key.clone(), st.update(&key, "globex", 2)),
        (key.clone(), st.update(&key, "initech", 3)),
    ])
    .await?;
    let executions = st.wait_finished(1).await?;
    let (arn, name, status) = executions.first().cloned().context("an execution")?;
    assert_eq!(
        executions.len(),
        1,
        "one chunk, one execution: {executions:?}"
    );
    assert_eq!(status, ExecutionStatus::Failed, "{executions:?}");
    let history = st
        .sfn
        .get_execution_history()
        .execution_arn(&arn)
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
    assert_eq!(
        st.archived(&name).await?,
        1,
        "Archive ran before the failure"
    );
    Ok((arn, name, fault))
}

fn not_redrivable<R>(
    result: Result<
        R,
        aws_sdk_sfn::error::SdkError<
            aws_sdk_sfn::operation::redrive_execution::RedriveExecutionError,
        >,
    >,
) -> bool {
    result
        .err()
        .and_then(|e| {
            e.into_service_error()
                .is_execution_not_redrivable()
                .then_some(())
        })
        .is_some()
}

#[tokio::test]
async fn a_persist_failure_is_redriven_on_the_same_arn_and_resumes_at_persist_alone() -> Result<()>
{
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the local fault switch").await else {
        return Ok(());
    };
    let (arn, name, fault) = failed_at_persist(&st).await?;
    let key = st.product(0);
    let described = st
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await?;
    assert_eq!(
        described.redrive_status(),
        Some(&aws_sdk_sfn::types::ExecutionRedriveStatus::Redrivable)
    );
    assert_eq!(described.redrive_count(), Some(0));
    let input = described.input().context("no input")?.to_owned();

    // Act: fix Persist (it now only takes a moment), count what else runs, redrive.
    drop(fault);
    let slow_persist = Fault::add(
        &st,
        json!({"function": "persist", "match": key, "mode": "delay", "delay_ms": 1500}),
    )?;
    let archive_runs = Fault::add(
        &st,
        json!({"function": "archive", "match": key, "mode": "delay", "delay_ms": 1}),
    )?;
    let validate_runs = Fault::add(
        &st,
        json!({"function": "validate", "match": key, "mode": "delay", "delay_ms": 1}),
    )?;
    st.sfn
        .redrive_execution()
        .execution_arn(&arn)
        .send()
        .await?;
    let during = st
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await?;
    let status = st.finished(&arn).await?;

    // Assert: the same execution ran again and succeeded; only Persist ran.
    assert_eq!(
        during.status(),
        &ExecutionStatus::Running,
        "right after the redrive"
    );
    assert_eq!(status, ExecutionStatus::Succeeded);
    assert_eq!(slow_persist.fired()?, 1, "Persist ran once more");
    assert_eq!(
        archive_runs.fired()?,
        0,
        "Archive succeeded before: not re-run"
    );
    assert_eq!(
        validate_runs.fired()?,
        0,
        "Validate succeeded before: not re-run"
    );
    let executions = st.executions().await?;
    assert_eq!(
        executions.iter().map(|e| &e.0).collect::<Vec<_>>(),
        vec![&arn],
        "no new execution: {executions:?}"
    );
    let after = st
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await?;
    assert_eq!(after.input(), Some(input.as_str()), "the original input");
    assert_eq!(after.redrive_count(), Some(1));
    assert!(after.redrive_date().is_some(), "redriveDate");
    assert_eq!(
        after.redrive_status(),
        Some(&aws_sdk_sfn::types::ExecutionRedriveStatus::NotRedrivable)
    );
    let history = st
        .sfn
        .get_execution_history()
        .execution_arn(&arn)
        .max_results(1000)
        .send()
        .await?;
    let types: Vec<_> = history
        .events()
        .iter()
        .map(|e| e.r#type().clone())
        .collect();
    use aws_sdk_sfn::types::HistoryEventType as T;
    let redriven = types
        .iter()
        .position(|t| *t == T::ExecutionRedriven)
        .context("no ExecutionRedriven event")?;
    assert_eq!(types.first(), Some(&T::ExecutionStarted));
    assert_eq!(types[redriven - 1], T::ExecutionFailed, "{types:?}");
    assert_eq!(types.last(), Some(&T::ExecutionSucceeded), "{types:?}");
    assert_eq!(
        history.events()[redriven]
            .execution_redriven_event_details()
            .and_then(|d| d.redrive_count()),
        Some(1)
    );
    let entered_after: Vec<&str> = history.events()[redriven..]
        .iter()
        .filter_map(|e| e.state_entered_event_details().map(|d| d.name()))
        .collect();
    assert_eq!(
        entered_after,
        vec!["ArchiveAndPersist", "Persist", "CacheInvalidate"],
        "the resumed run starts at the failed state and runs only the failed branch"
    );
    assert!(
        history
            .events()
            .windows(2)
            .all(|w| w[1].id() == w[0].id() + 1),
        "event ids continue"
    );
    assert_eq!(st.events().await?, 3, "every update applied once");
    assert_eq!(
        st.count("SELECT count(*) FROM product_offers WHERE product_id LIKE '{nonce}-%'")
            .await?,
        3
    );
    assert_eq!(st.archived(&name).await?, 1, "the chunk is archived once");

    // A SUCCEEDED execution cannot be redriven.
    assert!(
        not_redrivable(st.sfn.redrive_execution().execution_arn(&arn).send().await),
        "a second redrive must be refused with ExecutionNotRedrivable"
    );
    Ok(())
}

#[tokio::test]
async fn past_the_redrive_window_redrive_is_refused_and_rerunning_the_input_applies_it_once()
-> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the local fault switch and the emulator's redrive window").await
    else {
        return Ok(());
    };
    let (arn, name, fault) = failed_at_persist(&st).await?;
    drop(fault);

    // The execution is "older than 14 days": the emulator's window is shortened to 0 s.
    let window = RedriveWindow::set(&st, 0)?;
    let described = st
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await?;
    assert_eq!(
        described.redrive_status(),
        Some(&aws_sdk_sfn::types::ExecutionRedriveStatus::NotRedrivable)
    );
    assert_eq!(
        described.redrive_status_reason(),
        Some("Execution redrivable period exceeded.")
    );
    assert!(
        not_redrivable(st.sfn.redrive_execution().execution_arn(&arn).send().await),
        "past the window, RedriveExecution is refused with ExecutionNotRedrivable"
    );
    drop(window);
    let input = described.input().context("no input")?.to_owned();

    // Act: what is left: new executions with the failed one's input, twice.
    for attempt in 1..=2 {
        let rerun = st
            .sfn
            .start_execution()
            .state_machine_arn(st.o("StateMachineArn"))
            .name(format!("{}-rerun{attempt}", &name[..name.len().min(70)]))
            .input(&input)
            .send()
            .await?
            .execution_arn()
            .to_owned();
        assert_eq!(
            st.finished(&rerun).await?,
            ExecutionStatus::Succeeded,
            "re-run {attempt}"
        );
        // Assert: every update applied exactly once, whatever the number of runs.
        assert_eq!(st.events().await?, 3, "after re-run {attempt}");
        assert_eq!(
            st.count("SELECT count(*) FROM product_offers WHERE product_id LIKE '{nonce}-%'")
                .await?,
            3
        );
    }
    assert_eq!(
        st.archived(&name).await?,
        1,
        "the chunk is archived once, under its own key"
    );
    Ok(())
}
