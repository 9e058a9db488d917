//! Tests for the handler with an in-memory migrator and a loopback server standing in for
//! CloudFormation's presigned `ResponseURL`.

use crate::{
    Config, MaintainOutput, MigrateOutput, PHYSICAL_ID, UnavailableMigrator, ensure_login, handle,
};
use async_trait::async_trait;
use inventory::adapters::custom_resource::{Budget, ResponseSender};
use inventory::adapters::postgres::DatabaseConfig;
use inventory::config::DbCredentials;
use inventory::config::FromEnv;
use inventory::domain::partitions::PartitionReport;
use inventory::domain::retention::RetentionReport;
use inventory::ports::{LoginSecret, SchemaMigrator};
use inventory::{ErrorKind, PipelineError};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use test_support::stub_http::StubServer;

/// Counts calls; fails with `error` when set; maintenance reports `partitions`.
#[derive(Default)]
struct FakeMigrator {
    calls: AtomicUsize,
    maintained: AtomicUsize,
    error: Option<ErrorKind>,
    partitions: Option<PartitionReport>,
    retained: AtomicUsize,
    retention: Option<RetentionReport>,
}

#[async_trait]
impl SchemaMigrator for FakeMigrator {
    async fn migrate(&self) -> Result<Vec<String>, PipelineError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.error {
            Some(kind) => Err(PipelineError::new(kind, "could not reach PostgreSQL")),
            None => Ok(vec!["m20261124_000001_create_event_store".to_owned()]),
        }
    }

    async fn maintain(&self) -> Result<PartitionReport, PipelineError> {
        self.maintained.fetch_add(1, Ordering::SeqCst);
        self.partitions.clone().ok_or_else(|| {
            PipelineError::new(
                ErrorKind::DependencyUnavailable,
                "could not reach PostgreSQL",
            )
        })
    }

    async fn retain(&self, _: std::time::Instant) -> Result<RetentionReport, PipelineError> {
        self.retained.fetch_add(1, Ordering::SeqCst);
        self.retention.clone().ok_or_else(|| {
            PipelineError::new(ErrorKind::DependencyUnavailable, "could not reach S3")
        })
    }
}

fn partitions(days_ahead: i64, default_rows: i64) -> PartitionReport {
    let today = chrono::Utc::now()
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    PartitionReport {
        partitions: 7 + days_ahead,
        oldest_from: Some(today - chrono::Duration::days(7)),
        covered_until: Some(today + chrono::Duration::days(days_ahead)),
        default_rows,
        pruned_keys: 0,
        database_bytes: 8 << 20,
    }
}

#[tokio::test]
async fn maintain_runs_the_partition_maintenance_only_and_reports_the_partitions() {
    let fake = Arc::new(FakeMigrator {
        partitions: Some(partitions(8, 0)),
        ..Default::default()
    });
    let sender = ResponseSender::new().expect("client");
    let out = handle(
        serde_json::json!({"action": "maintain"}),
        &budget(),
        &sender,
        fake.clone(),
    )
    .await
    .expect("maintained");
    let out: MaintainOutput = serde_json::from_value(out).expect("output");
    assert_eq!(out.event_store, partitions(8, 0));
    assert_eq!(fake.maintained.load(Ordering::SeqCst), 1);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0, "no migration ran");
}

/// The stack's daily schedule sends exactly a payload this handler reads as "maintain".
#[tokio::test]
async fn the_templates_maintenance_schedule_sends_a_payload_that_maintains() {
    let template = include_str!("../../../infra/template.yaml");
    let schedule = template
        .split_once("EventStoreMaintenance:\n")
        .expect("the template's EventStoreMaintenance schedule")
        .1;
    let input = schedule
        .lines()
        .find_map(|l| l.trim().strip_prefix("Input: '")?.strip_suffix('\''))
        .expect("the schedule's Input");
    let fake = Arc::new(FakeMigrator {
        partitions: Some(partitions(8, 0)),
        ..Default::default()
    });
    let sender = ResponseSender::new().expect("client");
    handle(
        serde_json::from_str(input).expect("JSON"),
        &budget(),
        &sender,
        fake.clone(),
    )
    .await
    .expect("maintained");
    assert_eq!(fake.maintained.load(Ordering::SeqCst), 1, "{input}");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0, "{input}");
}

/// The stack's hourly retention schedule sends exactly a payload this handler reads as
/// "retain", and only the retention runs.
#[tokio::test]
async fn the_templates_retention_schedule_sends_a_payload_that_retains() {
    let template = include_str!("../../../infra/template.yaml");
    let schedule = template
        .split_once("EventStoreRetention:\n")
        .expect("the template's EventStoreRetention schedule")
        .1;
    let input = schedule
        .lines()
        .find_map(|l| l.trim().strip_prefix("Input: '")?.strip_suffix('\''))
        .expect("the schedule's Input");
    let fake = Arc::new(FakeMigrator {
        retention: Some(RetentionReport::default()),
        ..Default::default()
    });
    let sender = ResponseSender::new().expect("client");
    let out = handle(
        serde_json::from_str(input).expect("JSON"),
        &budget(),
        &sender,
        fake.clone(),
    )
    .await
    .expect("retained");
    assert_eq!(fake.retained.load(Ordering::SeqCst), 1, "{input}");
    assert_eq!(fake.maintained.load(Ordering::SeqCst), 0, "{input}");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0, "{input}");
    assert_eq!(out["event_store"]["overdue_days"], 0, "{out}");
}

/// A retention that fails (S3 unreachable) fails the invocation, so Lambda counts an error
/// and retries, and the heartbeat alarm sees no completed run.
#[tokio::test]
async fn a_failed_retention_fails_the_invocation_with_its_reason() {
    let fake = Arc::new(FakeMigrator::default());
    let sender = ResponseSender::new().expect("client");
    let err = handle(
        serde_json::json!({"action": "retain"}),
        &budget(),
        &sender,
        fake.clone(),
    )
    .await
    .expect_err("S3 is down");
    assert_eq!(err.kind, ErrorKind::DependencyUnavailable);
    assert!(
        err.message.contains("could not reach S3"),
        "{}",
        err.message
    );
}

#[test]
fn retention_is_configured_by_its_days_and_the_archive_bucket_or_not_at_all() {
    let mut vars = RDS.to_vec();
    let c = Config::from_lookup(env(&vars)).expect("valid");
    assert!(
        c.retention.is_none(),
        "no EVENT_RETENTION_DAYS: no retention"
    );
    vars.push(("EVENT_RETENTION_DAYS", "30"));
    let missing = Config::from_lookup(env(&vars)).expect_err("no bucket");
    assert!(
        missing.message.contains("ARCHIVE_BUCKET"),
        "{}",
        missing.message
    );
    vars.push(("ARCHIVE_BUCKET", "inventory-archive-dev-1"));
    let (days, archive) = Config::from_lookup(env(&vars))
        .expect("valid")
        .retention
        .expect("configured");
    assert_eq!(days.days, 30);
    assert_eq!(archive.bucket, "inventory-archive-dev-1");
    vars.retain(|(k, _)| *k != "EVENT_RETENTION_DAYS");
    vars.push(("EVENT_RETENTION_DAYS", "1"));
    let short = Config::from_lookup(env(&vars)).expect_err("one day");
    assert_eq!(short.kind, ErrorKind::Misconfigured);
}

/// The schedule's invocation fails, so Lambda counts an error and the alarm on it fires, when
/// the partitions are about to run out or events went to the default partition.
#[tokio::test]
async fn maintain_fails_when_the_partitions_end_soon_or_the_default_partition_holds_events() {
    let sender = ResponseSender::new().expect("client");
    for (report, says) in [
        (partitions(1, 0), "less than 2 days ahead"),
        (partitions(8, 5), "5 events are in"),
    ] {
        let fake = Arc::new(FakeMigrator {
            partitions: Some(report),
            ..Default::default()
        });
        let e = handle(
            serde_json::json!({"action": "maintain"}),
            &budget(),
            &sender,
            fake,
        )
        .await
        .expect_err("unhealthy partitions");
        assert!(e.message.contains(says), "{}", e.message);
    }
}

/// A loopback `ResponseURL` that answers 200 to everything.
async fn response_url() -> (String, StubServer) {
    let stub = StubServer::always(200, &[], "").await;
    (stub.url("/cfn-response?X-Amz-Signature=abc"), stub)
}

/// The body of the next response CloudFormation would have received: PUT, JSON.
async fn put_body(stub: &StubServer) -> Value {
    let request = stub.next_request().await;
    assert_eq!(request.method(), "PUT", "{}", request.request_line);
    serde_json::from_slice(&request.body).expect("json body")
}

fn budget() -> Budget {
    Budget {
        time_left: Duration::from_secs(60),
        log_stream: "2026/11/24/[$LATEST]abc".into(),
    }
}

fn cfn_event(request_type: &str, url: &str) -> Value {
    let mut e: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/cfn-schema-migrate-create.json"
    ))
    .expect("fixture");
    e["RequestType"] = Value::from(request_type);
    e["ResponseURL"] = Value::from(url);
    if request_type != "Create" {
        e["PhysicalResourceId"] = Value::from(PHYSICAL_ID);
    }
    if request_type == "Update" {
        e["OldResourceProperties"] = serde_json::json!({"MigrationsVersion": "2"});
    }
    e
}

#[tokio::test]
async fn a_direct_invocation_migrates_and_says_what_it_applied() {
    let fake = Arc::new(FakeMigrator::default());
    let sender = ResponseSender::new().expect("client");

    let out = handle(serde_json::json!({}), &budget(), &sender, fake.clone())
        .await
        .expect("migrated");
    let null = handle(Value::Null, &budget(), &sender, fake.clone())
        .await
        .expect("migrated");

    let out: MigrateOutput = serde_json::from_value(out).expect("output");
    assert_eq!(out.applied, ["m20261124_000001_create_event_store"]);
    assert_eq!(out.known, migration::known());
    assert!(null.get("applied").is_some());
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_direct_invocation_with_an_unknown_payload_is_an_invalid_payload() {
    let fake = Arc::new(FakeMigrator::default());
    let sender = ResponseSender::new().expect("client");
    for payload in [
        serde_json::json!({"drop": true}),
        serde_json::json!({"action": "vacuum"}),
        serde_json::json!("migrate"),
        serde_json::json!([1]),
    ] {
        let e = handle(payload, &budget(), &sender, fake.clone())
            .await
            .expect_err("invalid");
        assert_eq!(e.kind, ErrorKind::InvalidPayload);
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0, "nothing ran");
    assert_eq!(fake.maintained.load(Ordering::SeqCst), 0, "nothing ran");
}

#[tokio::test]
async fn create_and_update_migrate_and_answer_success_with_a_stable_physical_id() {
    let (url, answers) = response_url().await;
    let fake = Arc::new(FakeMigrator::default());
    let sender = ResponseSender::new().expect("client");

    for kind in ["Create", "Update"] {
        handle(cfn_event(kind, &url), &budget(), &sender, fake.clone())
            .await
            .expect("answered");
        let body = put_body(&answers).await;
        assert_eq!(body["Status"], "SUCCESS", "{kind}: {body}");
        assert_eq!(body["PhysicalResourceId"], PHYSICAL_ID, "{kind}");
        assert_eq!(body["RequestId"], "0b5a3f1e-6c2d-4e7f-9a8b-1c2d3e4f5a6b");
        assert_eq!(body["LogicalResourceId"], "SchemaMigration");
        assert_eq!(body["Data"]["Applied"], "1");
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn delete_touches_nothing_and_still_answers() {
    let (url, answers) = response_url().await;
    let fake = Arc::new(FakeMigrator::default());
    let sender = ResponseSender::new().expect("client");

    handle(cfn_event("Delete", &url), &budget(), &sender, fake.clone())
        .await
        .expect("answered");

    let body = put_body(&answers).await;
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], PHYSICAL_ID);
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        0,
        "Delete never migrates or drops anything"
    );
}

#[tokio::test]
async fn a_migration_error_is_answered_as_failed_with_the_reason() {
    let (url, answers) = response_url().await;
    let fake = Arc::new(FakeMigrator {
        error: Some(ErrorKind::DependencyUnavailable),
        ..FakeMigrator::default()
    });
    let sender = ResponseSender::new().expect("client");

    handle(cfn_event("Create", &url), &budget(), &sender, fake)
        .await
        .expect("answered even though it failed");

    let body = put_body(&answers).await;
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().expect("reason");
    assert!(
        reason.contains("could not reach PostgreSQL")
            && reason.contains("Inventory.DependencyUnavailable"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_malformed_request_is_answered_as_failed() {
    let (url, answers) = response_url().await;
    let fake = Arc::new(FakeMigrator::default());
    let sender = ResponseSender::new().expect("client");
    let mut event = cfn_event("Create", &url);
    event.as_object_mut().expect("object").remove("StackId");

    handle(event, &budget(), &sender, fake.clone())
        .await
        .expect("answered");

    let body = put_body(&answers).await;
    assert_eq!(body["Status"], "FAILED");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_request_without_a_response_url_cannot_be_answered_and_says_so() {
    let fake = Arc::new(FakeMigrator::default());
    let sender = ResponseSender::new().expect("client");
    let mut event = cfn_event("Create", "http://127.0.0.1:1/");
    event.as_object_mut().expect("object").remove("ResponseURL");

    let e = handle(event, &budget(), &sender, fake)
        .await
        .expect_err("no ResponseURL");

    assert_eq!(e.kind, ErrorKind::InvalidPayload);
}

#[tokio::test]
async fn a_failed_cold_start_is_reported_on_every_request() {
    let (url, answers) = response_url().await;
    let cause = PipelineError::misconfigured(
        "environment variable DB_HOST is required when DATABASE_URL is not set",
    );
    let broken: Arc<dyn SchemaMigrator> = Arc::new(UnavailableMigrator::new(&cause));
    let sender = ResponseSender::new().expect("client");

    handle(
        cfn_event("Create", &url),
        &budget(),
        &sender,
        broken.clone(),
    )
    .await
    .expect("answered");
    let direct = handle(Value::Null, &budget(), &sender, broken)
        .await
        .expect_err("direct call fails");

    let body = put_body(&answers).await;
    assert_eq!(body["Status"], "FAILED");
    assert!(
        body["Reason"]
            .as_str()
            .is_some_and(|r| r.contains("DB_HOST")),
        "{body}"
    );
    assert_eq!(direct.kind, ErrorKind::Misconfigured);
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

const RDS: [(&str, &str); 4] = [
    ("DB_HOST", "db.example.internal"),
    ("DB_NAME", "inventory"),
    (
        "DB_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:1:secret:master",
    ),
    ("DB_TLS_CA_FILE", "/opt/rds-ca/global-bundle.pem"),
];

#[test]
fn without_an_app_secret_no_login_role_is_managed() {
    let c = Config::from_lookup(env(&[("DATABASE_URL", "postgres://127.0.0.1/x")])).expect("valid");
    assert_eq!(c.app_secret_arn, None);
    let c = Config::from_lookup(env(&[
        ("DATABASE_URL", "postgres://127.0.0.1/x"),
        ("APP_DB_SECRET_ARN", " "),
    ]))
    .expect("valid");
    assert_eq!(c.app_secret_arn, None, "blank is unset");
}

#[test]
fn the_app_secret_is_read_beside_the_master_secret_and_must_differ_from_it() {
    let mut vars = RDS.to_vec();
    vars.push((
        "APP_DB_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:1:secret:app",
    ));
    let c = Config::from_lookup(env(&vars)).expect("valid");
    assert_eq!(
        c.app_secret_arn.as_deref(),
        Some("arn:aws:secretsmanager:us-east-1:1:secret:app")
    );
    assert_eq!(
        c.database.secret_arn(),
        Some("arn:aws:secretsmanager:us-east-1:1:secret:master")
    );

    let mut same = RDS.to_vec();
    same.push((
        "APP_DB_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:1:secret:master",
    ));
    let e = Config::from_lookup(env(&same)).expect_err("same secret");
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(e.message.contains("APP_DB_SECRET_ARN"), "{}", e.message);
}

/// A login secret that is read without any AWS call.
struct FixedLogin(&'static str, &'static str);

#[async_trait]
impl LoginSecret for FixedLogin {
    async fn read(&self) -> Result<DbCredentials, PipelineError> {
        Ok(DbCredentials {
            username: self.0.to_owned(),
            password: self.1.into(),
        })
    }
}

#[tokio::test]
async fn an_unusable_login_secret_is_a_configuration_error_that_never_shows_the_password() {
    // Refused before any query: the pool is lazy and points nowhere.
    let db = inventory::adapters::postgres::connect(
        &DatabaseConfig::from_lookup(env(&[("DATABASE_URL", "postgres://127.0.0.1:1/none")]))
            .expect("config"),
        None,
    )
    .await
    .expect("lazy pool");
    for (name, password) in [
        ("app\"; DROP ROLE postgres; --", "Abcdefghijklmnop1234"),
        ("inventory_app", "tooshort-pw"),
        ("inventory_app", "has a space in the password"),
    ] {
        let e = ensure_login(&db, &FixedLogin(name, password))
            .await
            .expect_err("refused");
        assert_eq!(e.kind, ErrorKind::Misconfigured, "{name}: {e:?}");
        assert!(e.message.contains("APP_DB_SECRET_ARN"), "{}", e.message);
        assert!(!e.detailed().contains(password), "{}", e.detailed());
    }
}
