//! The operator commands of the `inventory` binary against the local stack: each test makes
//! the situation through the pipeline (a quarantined record, an on-failure message, archived
//! records, a damaged projection), runs the real binary with the stack's outputs file, and
//! proves the effect through the pipeline and its database. Each command is also run with
//! `--dry-run` (nothing changes) and a second time (nothing more happens).
//!
//! They need the stack's database, so on a deployed stack they say so and pass. The binary is
//! the one built next to this test (`target/debug/inventory`): `cargo xtask stack run` builds
//! every binary of the workspace first.

use super::harness::{Fault, SERIAL, Stack, local_stack};
use super::workflows::{carrying_ours, names_record, on_failure_queue};
use anyhow::{Context as _, Result, bail};
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
use serde_json::json;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// How long to watch for records a command should not have sent.
const QUIET: Duration = Duration::from_secs(3);

/// The `inventory` binary, run with the stack's outputs file.
pub(super) struct Cli {
    binary: PathBuf,
    outputs: String,
}

impl Cli {
    /// The binary built in the same target directory as this test
    /// (`target/debug/deps/integration-*` next to `target/debug/inventory`).
    pub(super) fn new() -> Result<Self> {
        let exe = std::env::current_exe()?;
        let dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .context("the test binary is not in a cargo target directory")?;
        let binary = dir.join("inventory");
        if !binary.is_file() {
            bail!(
                "{} is missing: build it with `cargo build -p inventory-cli` (`cargo xtask stack run` builds every binary unless --no-build)",
                binary.display()
            );
        }
        let outputs = std::env::var("INVENTORY_OUTPUTS").context("INVENTORY_OUTPUTS")?;
        Ok(Self { binary, outputs })
    }

    /// `inventory COMMAND --outputs FILE ARGS...`: the endpoint, names and database come
    /// from the outputs file, as an operator would run it.
    pub(super) async fn run(&self, command: &str, args: &[&str]) -> Result<Output> {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg(command)
            .args(["--outputs", &self.outputs])
            .args(args)
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_PROFILE")
            .stdin(std::process::Stdio::null());
        let out = tokio::time::timeout(
            Duration::from_secs(300),
            tokio::task::spawn_blocking(move || cmd.output()),
        )
        .await
        .with_context(|| format!("inventory {command} did not finish in 5 minutes"))???;
        eprintln!(
            "inventory {command} {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out)
    }
}

/// The command's stderr, after checking it exited 0.
pub(super) fn succeeded(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "exit status; stderr:\n{text}");
    text
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The number before `marker` in a command's report (`... 3 sent to ...`).
pub(super) fn number_before(text: &str, marker: &str) -> Result<u64> {
    let at = text
        .find(marker)
        .with_context(|| format!("no {marker:?} in:\n{text}"))?;
    let number = text[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .with_context(|| format!("no number before {marker:?}"))?;
    Ok(number.parse()?)
}

/// An update of this test with its own update_id, stamped `occurred_at`.
fn update(product: &str, supplier: &str, quantity: u32, occurred_at: DateTime<Utc>) -> Vec<u8> {
    let at = occurred_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({"product_id": product, "quantity": quantity, "price": "4.25", "supplier_id": supplier,
           "update_id": format!("{product}-{supplier}-{quantity}"), "occurred_at": at})
    .to_string()
    .into_bytes()
}

/// `hour` o'clock of a recent day, inside the pipeline's dedup window.
fn at(hour: u32) -> DateTime<Utc> {
    integration_tests::recent_day() + TimeDelta::hours(i64::from(hour))
}

/// One text value from the stack's database (`{nonce}` replaced by the test's).
async fn text(st: &Stack, sql: &str) -> Result<String> {
    let sql = sql.replace("{nonce}", &st.nonce);
    let row = st
        .local()?
        .db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .context("no row")?;
    Ok(row
        .try_get_by_index::<Option<String>>(0)?
        .unwrap_or_default())
}

async fn execute(st: &Stack, sql: &str) -> Result<()> {
    let sql = sql.replace("{nonce}", &st.nonce);
    st.local()?.db.execute_unprepared(&sql).await?;
    Ok(())
}

/// The whole projection, every column but the summaries' wall-clock `updated_at`, one line
/// per row in key order.
async fn projection(st: &Stack) -> Result<String> {
    let offers = text(
        st,
        "SELECT string_agg(concat_ws('|', product_id, supplier_id, quantity, price, currency, occurred_at, update_key, event_seq), E'\\n' ORDER BY product_id, supplier_id) FROM product_offers",
    )
    .await?;
    let summaries = text(
        st,
        "SELECT string_agg(concat_ws('|', product_id, total_quantity, best_price, best_price_currency, best_price_supplier, supplier_count, version), E'\\n' ORDER BY product_id) FROM product_summaries",
    )
    .await?;
    Ok(format!("{offers}\n--\n{summaries}"))
}

/// This test's offers: product, supplier, quantity, price, occurred_at, update key.
async fn our_offers(st: &Stack) -> Result<String> {
    text(
        st,
        "SELECT string_agg(concat_ws('|', product_id, supplier_id, quantity, price, occurred_at, update_key), E'\\n' ORDER BY product_id, supplier_id) FROM product_offers WHERE product_id LIKE '{nonce}-%'",
    )
    .await
}

/// Waits until the poller has taken at least `records` more than `done_before` and nothing is
/// in flight, then until no execution started since the test began is running.
async fn drained(
    st: &Stack,
    done_before: u64,
    records: u64,
) -> Result<Vec<(String, String, ExecutionStatus)>> {
    st.until(
        "the poller to take the records",
        async || st.poller(),
        |(read, done, in_flight)| *done >= done_before + records && done == read && *in_flight == 0,
    )
    .await?;
    st.wait_finished(1).await
}

/// How many records the poller reads over a few seconds: what a dry run or a second run sent.
async fn records_read_over_quiet_period(st: &Stack) -> Result<u64> {
    let (before, _, _) = st.poller()?;
    tokio::time::sleep(QUIET).await;
    let (after, _, _) = st.poller()?;
    Ok(after - before)
}

/// Executions not in `seen` that carry records of this test, with how many of them each
/// carries.
async fn executions_with_ours(
    st: &Stack,
    seen: &HashSet<String>,
) -> Result<Vec<(ExecutionStatus, usize)>> {
    Ok(carrying_ours(st, seen)
        .await?
        .into_iter()
        .map(|r| (r.status, r.ours))
        .collect())
}

/// How many of the records `placed` (shard, sequence number) a message on the on-failure
/// queue names, looked at without taking the messages.
async fn queued(st: &Stack, placed: &[(String, String)]) -> Result<usize> {
    let messages = on_failure_queue(st).await?;
    Ok(placed
        .iter()
        .filter(|(shard, seq)| messages.iter().any(|m| names_record(m, shard, seq)))
        .count())
}

async fn execution_arns(st: &Stack) -> Result<HashSet<String>> {
    Ok(st.executions().await?.into_iter().map(|e| e.0).collect())
}

#[tokio::test]
async fn replay_quarantine_sends_the_filtered_records_that_now_pass_once_and_a_rerun_sends_nothing()
-> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the stack's database (the quarantine the command reads)").await
    else {
        return Ok(());
    };
    let cli = Cli::new()?;
    // Arrange: two suppliers' updates stamped 5 min 20 s after the stream's clock. The
    // contract allows 5 minutes of skew, so both are quarantined (occurred_at_in_future); half
    // a minute later the same bytes pass, as after a supplier's clock was found to be ahead.
    let (late, other) = (format!("{}-late", st.nonce), format!("{}-other", st.nonce));
    let (p_late, p_other) = (st.product(0), st.product(1));
    let put_at = Utc::now();
    let ahead = put_at + TimeDelta::seconds(5 * 60 + 20);
    st.put(&[
        (p_late.clone(), update(&p_late, &late, 4, ahead)),
        (p_other.clone(), update(&p_other, &other, 6, ahead)),
    ])
    .await?;
    st.wait_finished(1).await?;
    let pending = "SELECT count(*) FROM quarantined_records WHERE partition_key LIKE '{nonce}-%' AND reason_code = 'occurred_at_in_future'";
    st.until(
        "both records quarantined",
        async || st.count(pending).await,
        |n| *n == 2,
    )
    .await?;
    assert_eq!(st.events().await?, 0, "a record ahead of time was applied");
    let passes_at = ahead - TimeDelta::seconds(5 * 60 - 10);
    if let Ok(wait) = (passes_at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let args = [
        "--reason",
        "occurred_at_in_future",
        "--supplier",
        late.as_str(),
        "--progress",
        "none",
    ];
    let replayed = |product: &str| {
        format!(
            "SELECT count(*) FROM quarantined_records WHERE partition_key = '{product}' AND replayed_at IS NOT NULL"
        )
    };

    // Act and assert: a dry run lists the one record and sends and marks nothing.
    let dry = cli
        .run("replay-quarantine", &[&args[..], &["--dry-run"]].concat())
        .await?;
    let dry = succeeded(&dry);
    assert_eq!(number_before(&dry, " records to replay")?, 1, "{dry}");
    assert!(dry.contains("dry run, nothing sent or marked"), "{dry}");
    assert_eq!(records_read_over_quiet_period(&st).await?, 0, "sent");
    assert_eq!(st.count(&replayed(&p_late)).await?, 0, "marked");

    // Act: the replay.
    let seen = execution_arns(&st).await?;
    let (_, done_before, _) = st.poller()?;
    let run = succeeded(&cli.run("replay-quarantine", &args).await?);
    drained(&st, done_before, 1).await?;
    let events = st
        .until(
            "the replayed update to be appended",
            async || st.events().await,
            |n| *n >= 1,
        )
        .await?;

    // Assert: the filtered record went through the pipeline once; the other stays pending.
    assert_eq!(number_before(&run, " sent to ")?, 1, "{run}");
    assert_eq!(number_before(&run, " rows marked replayed")?, 1, "{run}");
    let carried = executions_with_ours(&st, &seen).await?;
    assert_eq!(
        carried,
        vec![(ExecutionStatus::Succeeded, 1)],
        "the replay's execution"
    );
    assert_eq!(events, 1);
    assert_eq!(
        our_offers(&st).await?.lines().count(),
        1,
        "{}",
        our_offers(&st).await?
    );
    let offer = format!(
        "SELECT count(*) FROM product_offers WHERE product_id = '{p_late}' AND supplier_id = '{late}' AND quantity = 4"
    );
    assert_eq!(st.count(&offer).await?, 1);
    assert_eq!(st.count(&replayed(&p_late)).await?, 1);
    assert_eq!(
        st.count(&replayed(&p_other)).await?,
        0,
        "outside the filter"
    );
    assert_eq!(
        st.count(pending).await?,
        2,
        "the replayed record was quarantined again"
    );

    // Act and assert: a second run finds nothing left to send.
    let marked_at = format!(
        "SELECT replayed_at::text FROM quarantined_records WHERE partition_key = '{p_late}'"
    );
    let first_mark = text(&st, &marked_at).await?;
    let again = succeeded(&cli.run("replay-quarantine", &args).await?);
    assert_eq!(number_before(&again, " records to replay")?, 0, "{again}");
    assert!(again.contains("1 already replayed"), "{again}");
    assert_eq!(records_read_over_quiet_period(&st).await?, 0, "sent again");
    assert_eq!(text(&st, &marked_at).await?, first_mark);
    assert_eq!(st.events().await?, 1);
    Ok(())
}

#[tokio::test]
async fn rebuild_projection_restores_a_damaged_projection_to_what_the_pipeline_built() -> Result<()>
{
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the stack's database (the projection)").await else {
        return Ok(());
    };
    let cli = Cli::new()?;
    // Arrange: updates through the pipeline, one of them older than the one before it.
    let (a, b) = (st.product(0), st.product(1));
    st.put(&[
        (a.clone(), update(&a, "acme", 5, at(10))),
        (a.clone(), update(&a, "acme", 3, at(9))),
        (a.clone(), update(&a, "globex", 7, at(10))),
        (b.clone(), update(&b, "acme", 2, at(10))),
    ])
    .await?;
    st.wait_finished(1).await?;
    st.until("four events", async || st.events().await, |n| *n == 4)
        .await?;
    let built = projection(&st).await?;
    let a_acme = format!(
        "SELECT count(*) FROM product_offers WHERE product_id = '{a}' AND supplier_id = 'acme' AND quantity = 5"
    );
    assert_eq!(st.count(&a_acme).await?, 1, "newest wins");
    // The damage: an offer lost, a quantity and a version wrong, a summary lost.
    execute(
        &st,
        &format!(
            "DELETE FROM product_offers WHERE product_id = '{a}' AND supplier_id = 'globex';
             UPDATE product_offers SET quantity = 999 WHERE product_id = '{b}';
             DELETE FROM product_summaries WHERE product_id = '{a}';
             UPDATE product_summaries SET version = 1 WHERE product_id = '{b}';"
        ),
    )
    .await?;
    let damaged = projection(&st).await?;
    assert_ne!(damaged, built);

    // Act and assert: a dry run counts and changes nothing.
    let dry = succeeded(&cli.run("rebuild-projection", &["--dry-run"]).await?);
    assert!(dry.contains("dry run, nothing changed"), "{dry}");
    assert_eq!(projection(&st).await?, damaged);

    // Act and assert: the rebuild gives the projection the pipeline built, and again.
    for attempt in 1..=2 {
        let run = succeeded(&cli.run("rebuild-projection", &[]).await?);
        assert!(run.contains("replayed"), "{run}");
        assert_eq!(projection(&st).await?, built, "after rebuild {attempt}");
    }

    // Assert: the pipeline goes on from the rebuilt projection (newest wins, versions rise).
    let seen = execution_arns(&st).await?;
    st.put(&[(a.clone(), update(&a, "acme", 11, at(11)))])
        .await?;
    st.wait_finished(1).await?;
    st.until("five events", async || st.events().await, |n| *n == 5)
        .await?;
    assert_eq!(
        executions_with_ours(&st, &seen).await?,
        vec![(ExecutionStatus::Succeeded, 1)]
    );
    let newest = format!(
        "SELECT count(*) FROM product_offers WHERE product_id = '{a}' AND supplier_id = 'acme' AND quantity = 11"
    );
    assert_eq!(st.count(&newest).await?, 1);
    let version = format!(
        "SELECT (SELECT version FROM product_summaries WHERE product_id = '{a}') - (SELECT max(seq) FROM inventory_events WHERE product_id = '{a}')"
    );
    assert_eq!(
        st.count(&version).await?,
        0,
        "the version is the newest event's"
    );
    Ok(())
}

#[tokio::test]
async fn reingest_archive_feeds_the_archived_hours_through_again_and_applies_nothing_twice()
-> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the stack's database (to count what was applied)").await else {
        return Ok(());
    };
    let cli = Cli::new()?;
    // Arrange: records with an update_id, one in the brief's format (no update_id, no
    // occurred_at: its identity comes from its content and arrival time), and a bad one.
    let (p0, p1, p2) = (st.product(0), st.product(1), st.product(2));
    let brief = json!({"product_id": p2, "inventory": 100, "price": 29.99}).to_string();
    st.put(&[
        (p0.clone(), update(&p0, "acme", 1, at(10))),
        (p1.clone(), update(&p1, "globex", 2, at(10))),
        (p2.clone(), brief.into_bytes()),
        (
            p0.clone(),
            format!(r#"{{"product_id":"{p0}","quantity":-1,"price":"1"}}"#).into_bytes(),
        ),
    ])
    .await?;
    st.wait_finished(1).await?;
    st.until("three events", async || st.events().await, |n| *n == 3)
        .await?;
    let quarantined =
        "SELECT count(*) FROM quarantined_records WHERE partition_key LIKE '{nonce}-%'";
    st.until(
        "the bad record quarantined",
        async || st.count(quarantined).await,
        |n| *n == 1,
    )
    .await?;
    let offers = our_offers(&st).await?;
    let from = (st.began - TimeDelta::minutes(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let args = |to: DateTime<Utc>| {
        let to = to.to_rfc3339_opts(SecondsFormat::Secs, true);
        vec![
            "--from".to_owned(),
            from.clone(),
            "--to".to_owned(),
            to,
            "--progress".to_owned(),
            "none".to_owned(),
        ]
    };

    // Act and assert: a dry run counts the records and sends nothing.
    let mut dry_args = args(Utc::now() + TimeDelta::minutes(1));
    dry_args.push("--dry-run".to_owned());
    let dry = succeeded(&cli.run("reingest-archive", &strs(&dry_args)).await?);
    assert!(number_before(&dry, " records to send")? >= 3, "{dry}");
    assert!(dry.contains("dry run, nothing sent"), "{dry}");
    assert_eq!(records_read_over_quiet_period(&st).await?, 0, "sent");

    for attempt in 1..=2 {
        // Act: the reingest. The second run also finds the first one's records, archived
        // again as the stream delivered them, so it carries each of this test's twice.
        let seen = execution_arns(&st).await?;
        let (_, done_before, _) = st.poller()?;
        let range = args(Utc::now() + TimeDelta::minutes(1));
        let run = succeeded(&cli.run("reingest-archive", &strs(&range)).await?);
        let sent = number_before(&run, " sent to ")?;
        let executions = drained(&st, done_before, sent).await?;

        // Assert: this test's three valid records went through the pipeline again (once per
        // archived copy), every execution succeeded, and nothing was applied twice or
        // quarantined again.
        assert!(
            executions.iter().all(|e| e.2 == ExecutionStatus::Succeeded),
            "{executions:?}"
        );
        let carried = executions_with_ours(&st, &seen).await?;
        assert_eq!(
            carried.iter().map(|c| c.1).sum::<usize>(),
            3 * attempt,
            "run {attempt}: {carried:?}"
        );
        assert_eq!(st.events().await?, 3, "run {attempt}: applied again");
        assert_eq!(our_offers(&st).await?, offers, "run {attempt}");
        assert_eq!(st.count(quarantined).await?, 1, "run {attempt}");
    }
    Ok(())
}

#[tokio::test]
async fn replay_dlq_feeds_the_batch_the_fanout_gave_up_on_back_once_and_deletes_its_message()
-> Result<()> {
    let _serial = SERIAL.lock().await;
    let Some(st) = local_stack("the local fault switch").await else {
        return Ok(());
    };
    let cli = Cli::new()?;
    // Arrange: the fan-out fails for good on this test's product, so the mapping gives its
    // records to the on-failure queue; then the fault is repaired.
    let key = st.product(0);
    let fault = Fault::add(
        &st,
        json!({"function": "fanout", "match": key, "error_type": "Inventory.Internal"}),
    )?;
    let (_, done_before, _) = st.poller()?;
    let placed = st
        .put_records(&[
            (key.clone(), update(&key, "acme", 1, at(10))),
            (key.clone(), update(&key, "globex", 2, at(10))),
        ])
        .await?;
    st.until(
        "the poller to give up on the records",
        async || st.poller(),
        |(read, done, in_flight)| *done >= done_before + 2 && done == read && *in_flight == 0,
    )
    .await?;
    st.until(
        "both records named on the on-failure queue",
        async || queued(&st, &placed).await,
        |n| *n == 2,
    )
    .await?;
    assert_eq!(st.events().await?, 0);
    drop(fault);

    // Act and assert: a dry run sends and deletes nothing, and leaves the messages visible
    // for the real run straight after it.
    let dry = succeeded(
        &cli.run("replay-dlq", &["--dry-run", "--progress", "none"])
            .await?,
    );
    assert!(number_before(&dry, " records to put back")? >= 2, "{dry}");
    assert!(dry.contains("dry run, nothing sent or deleted"), "{dry}");
    assert_eq!(records_read_over_quiet_period(&st).await?, 0, "sent");
    assert_eq!(
        queued(&st, &placed).await?,
        2,
        "a dry run took messages off the queue"
    );

    // Act: the replay.
    let seen = execution_arns(&st).await?;
    let (_, done_before, _) = st.poller()?;
    let run = succeeded(&cli.run("replay-dlq", &["--progress", "none"]).await?);
    let sent = number_before(&run, " sent to ")?;
    drained(&st, done_before, sent).await?;
    let events = st
        .until(
            "the replayed records to be appended",
            async || st.events().await,
            |n| *n >= 2,
        )
        .await?;

    // Assert: both records applied once, by successful executions; their messages are gone.
    assert!(sent >= 2, "{run}");
    assert!(run.contains("messages replayed and deleted"), "{run}");
    let carried = executions_with_ours(&st, &seen).await?;
    assert!(
        carried.iter().all(|c| c.0 == ExecutionStatus::Succeeded),
        "{carried:?}"
    );
    assert_eq!(carried.iter().map(|c| c.1).sum::<usize>(), 2, "{carried:?}");
    assert_eq!(events, 2);
    assert_eq!(
        queued(&st, &placed).await?,
        0,
        "the replayed messages are still queued"
    );

    // Act and assert: a second run has nothing of this test's left to send.
    let seen = execution_arns(&st).await?;
    let (_, done_before, _) = st.poller()?;
    let again = succeeded(&cli.run("replay-dlq", &["--progress", "none"]).await?);
    if let Ok(sent) = number_before(&again, " sent to ") {
        drained(&st, done_before, sent).await?;
    }
    assert_eq!(executions_with_ours(&st, &seen).await?, vec![]);
    assert_eq!(st.events().await?, 2);
    Ok(())
}
