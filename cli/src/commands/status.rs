//! `inventory status`: the pipeline's health on one screen, from the stack's outputs. Each
//! part is read on its own; one that cannot be read (the database out of reach from where the
//! operator runs, a denied call) is shown as unavailable with the reason, and the rest still
//! prints.

use super::status_view;
use crate::executions::{Executions, Failure};
use crate::exit::{Outcome, usage};
use crate::send::aws_error_text;
use crate::target::{Outputs, TargetArgs, connect_database, sdk_config};
use crate::window::TimeArg;
use anyhow::{Context as _, Result};
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StateValue};
use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, TimeDelta, Utc};
use inventory::adapters::postgres::list_quarantine;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, Statement};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// Options of `inventory status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The window for executions, metrics and throughput: RFC 3339, or a duration back from
    /// now (`30m`, `1h`, `1d`).
    #[arg(long, value_name = "TIME", default_value = "1h")]
    pub since: TimeArg,
    /// Group at most this many of the window's newest failed executions by state and error
    /// (one GetExecutionHistory call each).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub failure_details: usize,
    /// Alarms in ALARM whose name starts with this (and ends with -EnvironmentSuffix).
    #[arg(long, value_name = "PREFIX", default_value = "inventory-")]
    pub alarm_prefix: String,
    /// Print one JSON object on stdout instead of the screen for people.
    #[arg(long)]
    pub json: bool,
    /// PostgreSQL URL. Default: LocalDatabaseUrl from --outputs, else the functions' variables.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// One part of the report: read, not applicable here (with why), or unavailable (with why).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Part<T> {
    Read(T),
    NotApplicable { not_applicable: String },
    Unavailable { unavailable: String },
}

impl<T> Part<T> {
    fn from_result(r: Result<T>) -> Self {
        r.map_or_else(
            |e| Part::Unavailable {
                unavailable: format!("{e:#}"),
            },
            Part::Read,
        )
    }

    fn na(why: impl Into<String>) -> Self {
        Part::NotApplicable {
            not_applicable: why.into(),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, Part::Unavailable { .. })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stream {
    /// The fan-out's iterator age (AWS/Lambda IteratorAge): the newest value and the window's
    /// maximum, in seconds.
    pub iterator_age_now_s: Option<f64>,
    pub iterator_age_max_s: Option<f64>,
    /// Records put on the stream in the window (AWS/Kinesis IncomingRecords) and per second.
    pub incoming_records: Option<f64>,
    pub records_per_second: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutionCounts {
    /// Executions started in the window, by how they ended; `running` counts every open one.
    pub succeeded: usize,
    pub failed: usize,
    pub timed_out: usize,
    pub aborted: usize,
    pub running: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureGroup {
    pub state: Option<String>,
    pub error: Option<String>,
    pub count: usize,
    /// The newest execution of the group.
    pub example: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failures {
    /// How many of the window's failed and timed-out executions were grouped (the newest).
    pub looked_at: usize,
    pub of: usize,
    pub groups: Vec<FailureGroup>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantineCount {
    pub reason: String,
    pub supplier: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quarantine {
    /// Records waiting for a replay, by reason and supplier; replayed ones are only counted.
    pub pending: Vec<QuarantineCount>,
    pub replayed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Database {
    pub size_bytes: i64,
    /// Seconds since the newest event was appended; none without events.
    pub newest_event_age_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alarm {
    pub name: String,
    pub since: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// The whole report, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub environment: Option<String>,
    pub at: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub stream: Part<Stream>,
    pub executions: Part<ExecutionCounts>,
    pub failures: Part<Failures>,
    pub dlqs: BTreeMap<&'static str, Part<QueueDepth>>,
    pub quarantine: Part<Quarantine>,
    pub database: Part<Database>,
    pub free_storage_bytes: Part<Option<f64>>,
    pub alarms: Part<Vec<Alarm>>,
}

impl Report {
    /// The names of the parts that could not be read.
    pub fn unavailable(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut note = |name: &str, bad: bool| {
            if bad {
                out.push(name.to_owned());
            }
        };
        note("stream", self.stream.is_unavailable());
        note("executions", self.executions.is_unavailable());
        note("failures", self.failures.is_unavailable());
        for (name, part) in &self.dlqs {
            note(name, part.is_unavailable());
        }
        note("quarantine", self.quarantine.is_unavailable());
        note("database", self.database.is_unavailable());
        note("free storage", self.free_storage_bytes.is_unavailable());
        note("alarms", self.alarms.is_unavailable());
        out
    }
}

/// How long one part may take before it is reported unavailable.
const PART_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting to the database may take (out of reach: fail fast).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, limit: Duration, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .with_context(|| format!("{what} did not answer within {} s", limit.as_secs()))?
}

pub async fn run(args: StatusArgs) -> Result<Outcome> {
    let at = Utc::now();
    let since = args.since.at(at);
    if since >= at {
        return Err(usage(format!("--since {since} is not in the past")));
    }
    let outputs = Outputs::read(&args.target)?;
    let conf = sdk_config(&args.target, &outputs).await;
    let environment = outputs.get("EnvironmentSuffix");
    // The local stack emulates no CloudWatch: its metrics and alarms are not applicable.
    let local = args.target.endpoint_url.is_none() && outputs.get("LocalEndpointUrl").is_some();
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let machine = outputs.get("StateMachineArn");
    let sfn = machine.map(|m| Executions::new(aws_sdk_sfn::Client::new(&conf), m));

    let stream = match (
        local,
        outputs.get("FanoutFunctionName"),
        outputs.get("StreamName"),
    ) {
        (true, _, _) => Part::na("the local stack has no CloudWatch metrics"),
        (false, Some(function), Some(stream)) => Part::from_result(
            within(
                "CloudWatch",
                PART_TIMEOUT,
                stream_metrics(&cw, &function, &stream, since, at),
            )
            .await,
        ),
        _ => Part::Unavailable {
            unavailable: "FanoutFunctionName or StreamName not in the outputs (give --outputs)"
                .into(),
        },
    };
    let (executions, failures) = match &sfn {
        Some(sfn) => {
            let counts = within("Step Functions", PART_TIMEOUT * 5, counts(sfn, since)).await;
            let failures = match &counts {
                Ok((_, failed)) => Part::from_result(
                    within(
                        "Step Functions",
                        PART_TIMEOUT * 5,
                        group_failures(sfn, failed, args.failure_details),
                    )
                    .await,
                ),
                Err(e) => Part::Unavailable {
                    unavailable: format!("{e:#}"),
                },
            };
            (Part::from_result(counts.map(|(c, _)| c)), failures)
        }
        None => {
            let why = "StateMachineArn not in the outputs (give --outputs)".to_owned();
            (
                Part::Unavailable {
                    unavailable: why.clone(),
                },
                Part::Unavailable { unavailable: why },
            )
        }
    };
    let mut dlqs = BTreeMap::new();
    for (name, key) in [
        ("fanout DLQ", "FanoutDlqUrl"),
        ("lambda DLQ", "LambdaDlqUrl"),
        ("alarm-delivery DLQ", "AlarmDeliveryDlqUrl"),
    ] {
        let part = match outputs.get(key) {
            Some(url) => Part::from_result(within("SQS", PART_TIMEOUT, depth(&sqs, &url)).await),
            None if key == "AlarmDeliveryDlqUrl" => {
                Part::na("no AlarmDeliveryDlqUrl in the outputs (the stack has no alarm e-mail)")
            }
            None => Part::Unavailable {
                unavailable: format!("{key} not in the outputs (give --outputs)"),
            },
        };
        dlqs.insert(name, part);
    }
    let db = within(
        "the database",
        CONNECT_TIMEOUT,
        connect_database(&args.database_url, &outputs, &conf),
    )
    .await;
    let (quarantine, database) = match &db {
        Ok(db) => (
            Part::from_result(within("the database", PART_TIMEOUT, quarantine(db)).await),
            Part::from_result(within("the database", PART_TIMEOUT, database(db)).await),
        ),
        Err(e) => {
            let why = format!("{e:#} (docs/runbooks.md, \"Reaching the database\")");
            (
                Part::Unavailable {
                    unavailable: why.clone(),
                },
                Part::Unavailable { unavailable: why },
            )
        }
    };
    let free_storage_bytes = match (local, outputs.get("DbInstanceId")) {
        (true, _) | (false, None) => {
            Part::na("no DbInstanceId in the outputs (the local stack's PostgreSQL)")
        }
        (false, Some(id)) => {
            Part::from_result(within("CloudWatch", PART_TIMEOUT, free_storage(&cw, &id, at)).await)
        }
    };
    let alarms = if local {
        Part::na("the local stack has no CloudWatch alarms")
    } else {
        Part::from_result(
            within(
                "CloudWatch",
                PART_TIMEOUT,
                alarms(&cw, &args.alarm_prefix, environment.as_deref()),
            )
            .await,
        )
    };
    let report = Report {
        environment,
        at,
        since,
        stream,
        executions,
        failures,
        dlqs,
        quarantine,
        database,
        free_storage_bytes,
        alarms,
    };

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", status_view::render(&report));
    }
    let missing = report.unavailable();
    if missing.is_empty() {
        eprintln!("status: every part read");
        Ok(Outcome::Done)
    } else {
        eprintln!(
            "status: {} parts unavailable ({}); the rest is shown",
            missing.len(),
            missing.join(", ")
        );
        Ok(Outcome::PartlyRead)
    }
}

fn metric(
    id: &str,
    namespace: &str,
    name: &str,
    dimension: (&str, &str),
    stat: &str,
    period: i32,
) -> MetricDataQuery {
    let dimension = Dimension::builder()
        .name(dimension.0)
        .value(dimension.1)
        .build();
    let metric = Metric::builder()
        .namespace(namespace)
        .metric_name(name)
        .dimensions(dimension)
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period)
                .stat(stat)
                .build(),
        )
        .build()
}

/// Values of each query id, newest first.
async fn metric_values(
    cw: &aws_sdk_cloudwatch::Client,
    queries: Vec<MetricDataQuery>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<BTreeMap<String, Vec<f64>>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = cw
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                since.timestamp(),
            ))
            .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                until.timestamp(),
            ))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GetMetricData: {}", aws_error_text(&e)))?;
        for r in page.metric_data_results() {
            out.entry(r.id().unwrap_or_default().to_owned())
                .or_default()
                .extend(r.values());
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// A period that keeps a window's datapoints few (CloudWatch keeps 1-minute data 15 days).
fn period_for(window: TimeDelta) -> i32 {
    if window <= TimeDelta::days(1) {
        60
    } else {
        3600
    }
}

async fn stream_metrics(
    cw: &aws_sdk_cloudwatch::Client,
    function: &str,
    stream: &str,
    since: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<Stream> {
    let period = period_for(at - since);
    let values = metric_values(
        cw,
        vec![
            metric(
                "age",
                "AWS/Lambda",
                "IteratorAge",
                ("FunctionName", function),
                "Maximum",
                period,
            ),
            metric(
                "incoming",
                "AWS/Kinesis",
                "IncomingRecords",
                ("StreamName", stream),
                "Sum",
                period,
            ),
        ],
        since,
        at,
    )
    .await?;
    let age = values.get("age").cloned().unwrap_or_default();
    let incoming = values.get("incoming").map(|v| v.iter().sum::<f64>());
    let seconds = (at - since).num_seconds().max(1) as f64;
    Ok(Stream {
        iterator_age_now_s: age.first().map(|ms| ms / 1000.0),
        iterator_age_max_s: age.iter().copied().reduce(f64::max).map(|ms| ms / 1000.0),
        incoming_records: incoming,
        records_per_second: incoming.map(|n| n / seconds),
    })
}

async fn free_storage(
    cw: &aws_sdk_cloudwatch::Client,
    instance: &str,
    at: DateTime<Utc>,
) -> Result<Option<f64>> {
    let q = metric(
        "free",
        "AWS/RDS",
        "FreeStorageSpace",
        ("DBInstanceIdentifier", instance),
        "Minimum",
        60,
    );
    let values = metric_values(cw, vec![q], at - TimeDelta::minutes(15), at).await?;
    Ok(values.get("free").and_then(|v| v.first().copied()))
}

async fn alarms(
    cw: &aws_sdk_cloudwatch::Client,
    prefix: &str,
    environment: Option<&str>,
) -> Result<Vec<Alarm>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = cw
            .describe_alarms()
            .alarm_name_prefix(prefix)
            .state_value(StateValue::Alarm)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DescribeAlarms: {}", aws_error_text(&e)))?;
        let metric = page.metric_alarms().iter().map(|a| {
            (
                a.alarm_name(),
                a.state_updated_timestamp(),
                a.state_reason(),
            )
        });
        let composite = page.composite_alarms().iter().map(|a| {
            (
                a.alarm_name(),
                a.state_updated_timestamp(),
                a.state_reason(),
            )
        });
        for (name, since, reason) in metric.chain(composite) {
            let name = name.unwrap_or_default();
            if environment.is_some_and(|env| !name.ends_with(&format!("-{env}"))) {
                continue;
            }
            out.push(Alarm {
                name: name.to_owned(),
                since: since.map(|t| {
                    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
                }),
                reason: reason.map(str::to_owned),
            });
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<QueueDepth> {
    let got = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GetQueueAttributes {url}: {}", aws_error_text(&e)))?;
    let attribute = |name: QueueAttributeName| {
        got.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default()
    };
    Ok(QueueDepth {
        visible: attribute(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: attribute(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

/// Counts by status of the executions started since `since` (running: all), and the failed
/// and timed-out ones, newest first.
async fn counts(
    sfn: &Executions,
    since: DateTime<Utc>,
) -> Result<(ExecutionCounts, Vec<crate::executions::Listed>)> {
    let n = |s| sfn.list(s, Some(since), usize::MAX);
    let failed = n(ExecutionStatus::Failed).await?;
    let timed_out = n(ExecutionStatus::TimedOut).await?;
    let counts = ExecutionCounts {
        succeeded: n(ExecutionStatus::Succeeded).await?.len(),
        failed: failed.len(),
        timed_out: timed_out.len(),
        aborted: n(ExecutionStatus::Aborted).await?.len(),
        running: sfn
            .list(ExecutionStatus::Running, None, usize::MAX)
            .await?
            .len(),
    };
    let mut stopped = [failed, timed_out].concat();
    stopped.sort_by_key(|e| std::cmp::Reverse(e.stopped));
    Ok((counts, stopped))
}

async fn group_failures(
    sfn: &Executions,
    failed: &[crate::executions::Listed],
    limit: usize,
) -> Result<Failures> {
    let mut groups: BTreeMap<(Option<String>, Option<String>), FailureGroup> = BTreeMap::new();
    let looked_at = failed.len().min(limit);
    for e in &failed[..looked_at] {
        let Failure { state, error, .. } = sfn.failure(&e.arn).await?;
        groups
            .entry((state.clone(), error.clone()))
            .or_insert_with(|| FailureGroup {
                state,
                error,
                count: 0,
                example: e.arn.clone(),
            })
            .count += 1;
    }
    let mut groups: Vec<FailureGroup> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    Ok(Failures {
        looked_at,
        of: failed.len(),
        groups,
    })
}

async fn quarantine(db: &DatabaseConnection) -> Result<Quarantine> {
    let mut pending: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut replayed = 0;
    let mut after = 0;
    loop {
        let page = list_quarantine(db, after, 1_000)
            .await
            .context("reading the quarantine")?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for entry in page {
            if entry.replayed_at.is_some() {
                replayed += 1;
                continue;
            }
            let supplier = entry.record.raw.as_deref().map_or_else(
                || "(payload in S3)".to_owned(),
                super::replay_quarantine::supplier_of,
            );
            *pending
                .entry((entry.record.reason.code.to_string(), supplier))
                .or_default() += 1;
        }
    }
    let mut pending: Vec<QuarantineCount> = pending
        .into_iter()
        .map(|((reason, supplier), count)| QuarantineCount {
            reason,
            supplier,
            count,
        })
        .collect();
    pending.sort_by_key(|c| std::cmp::Reverse(c.count));
    Ok(Quarantine { pending, replayed })
}

async fn database(db: &DatabaseConnection) -> Result<Database> {
    let sql = "SELECT pg_database_size(current_database())::bigint, \
               (SELECT extract(epoch FROM now() - max(recorded_at))::float8 FROM inventory_events)";
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .context("reading the database size and newest event")?
        .context("no row")?;
    Ok(Database {
        size_bytes: row.try_get_by_index(0)?,
        newest_event_age_s: row.try_get_by_index(1)?,
    })
}
