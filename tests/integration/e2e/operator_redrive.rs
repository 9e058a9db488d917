//! `inventory status` and `inventory redrive-failed` against the local stack: an execution is
//! made to fail at Persist through the fault switch, `status` shows it grouped by state and
//! error (and still prints when the database is out of reach), and `redrive-failed` redrives it
//! in place (same ARN, resumed at Persist), or past the redrive window re-runs its input under
//! a derived name, once however often it is run. The local stack's redrive window is set
//! through its emulator's config API (`harness::RedriveWindow`).

use super::harness::{Fault, RedriveWindow, SERIAL, Stack, local_stack};
use super::operator::{Cli, number_before, succeeded};
use anyhow::{Context as _, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes one execution of this test fail at Persist with an error of its own (the state
/// machine retries only transient errors, so it fails there), and returns that error and the
/// failed execution's (ARN, name), with the fault removed again.
async fn failed_at_persist(st: &Stack) -> Result<(String, String, String)> {
    let error = format!("E2e.{}", st.nonce);
    let key = st.product(0);
    let fault = Fault::add(
        st,
        json!({"function": "persist", "match": key, "error_type": error, "delay_ms": 2000}),
    )?;
    st.put(&[(key.clone(), st.update(&key, "acme", 3))]).await?;
    let finished = st.wait_finished(1).await?;
    let failed: Vec<_> = finished
        .iter()
        .filter(|e| e.2 == ExecutionStatus::Failed)
        .collect();
    anyhow::ensure!(failed.len() == 1 && finished.len() == 1, "{finished:?}");
    anyhow::ensure!(fault.fired()? >= 1, "the fault never fired");
    anyhow::ensure!(st.events().await? == 0, "applied despite the fault");
    Ok((error, failed[0].0.clone(), failed[0].1.clone()))
}

#[tokio::test]
async fn status_groups_a_failure_by_state_and_error_and_redrive_failed_reruns_it_once_past_the_window()
-> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the fault switch and the stack's database").await else {
        return Ok(());
    };
    let cli = Cli::new()?;
    // Arrange: a redrive window of one second, and an execution failed at Persist.
    let since = (Utc::now() - TimeDelta::seconds(5)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let window = RedriveWindow::set(&st, 1)?;
    let (error, _, failed_name) = failed_at_persist(&st).await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    // Act and assert: status shows the failure by state and error, and every part is read.
    let out = cli.run("status", &["--since", "15m", "--json"]).await?;
    let summary = succeeded(&out);
    assert!(summary.contains("status: every part read"), "{summary}");
    let report: Value = serde_json::from_str(&stdout(&out)).context("status --json")?;
    assert!(
        report["executions"]["failed"].as_u64() >= Some(1),
        "{report:#}"
    );
    let groups = report["failures"]["groups"].as_array().context("groups")?;
    let ours = groups
        .iter()
        .find(|g| g["error"] == error.as_str())
        .with_context(|| format!("no group for {error}: {report:#}"))?;
    assert_eq!(ours["state"], "Persist", "{report:#}");
    assert_eq!(ours["count"], 1, "{report:#}");
    assert!(
        report["dlqs"]["fanout DLQ"]["visible"].is_u64(),
        "{report:#}"
    );
    assert!(
        report["database"]["size_bytes"].as_i64() > Some(0),
        "{report:#}"
    );
    assert!(report["quarantine"]["pending"].is_array(), "{report:#}");
    assert!(report["alarms"]["not_applicable"].is_string(), "{report:#}");
    let screen = cli.run("status", &["--since", "15m"]).await?;
    succeeded(&screen);
    let screen = stdout(&screen);
    assert!(
        screen
            .lines()
            .any(|l| l.contains("Persist") && l.contains(&error)),
        "{screen}"
    );

    // Act and assert: with the database out of reach, its parts say so, the rest prints, and
    // the exit code is 6.
    let unreachable = cli
        .run(
            "status",
            &[
                "--since",
                "15m",
                "--database-url",
                "postgres://postgres@127.0.0.1:9/inventory",
            ],
        )
        .await?;
    assert_eq!(unreachable.status.code(), Some(6), "exit code");
    let screen = stdout(&unreachable);
    assert!(screen.contains("quarantine    UNAVAILABLE: "), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("executions") && l.contains("failed")),
        "{screen}"
    );
    let summary = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        summary.contains("2 parts unavailable (quarantine, database)"),
        "{summary}"
    );

    // Act and assert: a dry run names the new execution it would start, and starts nothing.
    let rerun = format!("{failed_name}-r1");
    let args = [
        "--since",
        since.as_str(),
        "--error",
        error.as_str(),
        "--new-execution",
    ];
    let dry = cli
        .run("redrive-failed", &[&args[..], &["--dry-run"]].concat())
        .await?;
    let dry_summary = succeeded(&dry);
    assert!(
        dry_summary.contains("dry run, nothing redriven or started"),
        "{dry_summary}"
    );
    let plan = stdout(&dry);
    assert!(
        plan.contains(&format!("would start new execution {rerun}")),
        "{plan}"
    );
    assert!(plan.contains(&format!("[{error} in Persist]")), "{plan}");
    assert_eq!(
        st.executions().await?.len(),
        1,
        "a dry run started an execution"
    );

    // Act: the re-run, after the fault is gone.
    let run = succeeded(&cli.run("redrive-failed", &args).await?);
    assert_eq!(number_before(&run, " new executions started")?, 1, "{run}");
    let finished = st.wait_finished(2).await?;

    // Assert: the new execution has the derived name and succeeded; the update applied once.
    let new: Vec<_> = finished.iter().filter(|e| e.1 == rerun).collect();
    assert_eq!(new.len(), 1, "{finished:?}");
    assert_eq!(new[0].2, ExecutionStatus::Succeeded, "{finished:?}");
    st.until(
        "the update appended",
        async || st.events().await,
        |n| *n >= 1,
    )
    .await?;
    assert_eq!(st.events().await?, 1);

    // Act and assert: run twice, it finds the execution it started and starts nothing.
    let again = cli
        .run("redrive-failed", &[&args[..], &["--json"]].concat())
        .await?;
    let again_summary = succeeded(&again);
    assert_eq!(
        number_before(&again_summary, " new executions started")?,
        0,
        "{again_summary}"
    );
    assert_eq!(
        number_before(&again_summary, " already started earlier")?,
        1,
        "{again_summary}"
    );
    let report: Value = serde_json::from_str(&stdout(&again)).context("redrive-failed --json")?;
    assert_eq!(
        report["executions"][0]["action"], "already_started",
        "{report:#}"
    );
    assert_eq!(
        report["executions"][0]["name"],
        rerun.as_str(),
        "{report:#}"
    );
    assert_eq!(st.executions().await?.len(), 2, "started again");
    assert_eq!(st.events().await?, 1);
    drop(window);
    Ok(())
}

#[tokio::test]
async fn redrive_failed_resumes_a_failure_at_persist_in_the_same_execution_and_a_rerun_does_nothing()
-> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the fault switch and the emulator's redrive").await else {
        return Ok(());
    };
    let cli = Cli::new()?;
    // Arrange: an execution failed at Persist, within the redrive window.
    let since = (Utc::now() - TimeDelta::seconds(5)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (error, arn, _) = failed_at_persist(&st).await?;
    let args = [
        "--since",
        since.as_str(),
        "--state",
        "Persist",
        "--error",
        error.as_str(),
    ];

    // Act and assert: a dry run says it would redrive it, and changes nothing.
    let dry = cli
        .run("redrive-failed", &[&args[..], &["--dry-run"]].concat())
        .await?;
    succeeded(&dry);
    let plan = stdout(&dry);
    assert!(
        plan.contains(&format!("{arn} FAILED")) && plan.contains("would redrive"),
        "{plan}"
    );
    assert!(plan.contains(&format!("[{error} in Persist]")), "{plan}");
    assert_eq!(
        st.wait_finished(1).await?[0].2,
        ExecutionStatus::Failed,
        "a dry run redrove it"
    );

    // Act: the redrive.
    let run = succeeded(&cli.run("redrive-failed", &args).await?);
    assert_eq!(number_before(&run, " redriven")?, 1, "{run}");

    // Assert: the same execution (same ARN, no new one) resumed and succeeded; the update was
    // applied once.
    let finished = st
        .until(
            "the redriven execution to finish",
            async || st.executions().await,
            |v| {
                v.iter().all(|e| e.2 != ExecutionStatus::Running)
                    && v.iter().any(|e| e.2 != ExecutionStatus::Failed)
            },
        )
        .await?;
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(
        (finished[0].0.as_str(), &finished[0].2),
        (arn.as_str(), &ExecutionStatus::Succeeded)
    );
    st.until(
        "the update appended",
        async || st.events().await,
        |n| *n >= 1,
    )
    .await?;
    assert_eq!(st.events().await?, 1);

    // Act and assert: a second run finds nothing failed left, and does nothing.
    let again = succeeded(&cli.run("redrive-failed", &args).await?);
    assert!(again.contains("redrive-failed: 0 executions"), "{again}");
    assert_eq!(st.executions().await?.len(), 1);
    assert_eq!(st.events().await?, 1);
    Ok(())
}
