//! The validate, persist and schema-migrate handlers against real PostgreSQL, as the state
//! machine and CloudFormation invoke them (JSON in, JSON out): nothing lost (SPEC invariant
//! 1), exactly-once (2), newest wins under any delivery (3, property test), bad input never
//! stops good input (5).

use crate::event_store::{count, newest_per_offer, pid, update};
use crate::quarantine::{mixed_chunk, soon_after};
use anyhow::Result;
use integration_tests::postgres::TestDb;
use inventory::adapters::custom_resource::{Budget, ResponseSender};
use inventory::adapters::postgres::{
    DatabaseConfig, DatabaseTarget, PgEventStore, PgQuarantine, TlsMode, connect, load_offers,
    load_summary,
};
use inventory::ports::SchemaMigrator;
use inventory::steps::payloads::{PersistOutput, ValidateOutput};
use inventory::{ErrorKind, InventoryUpdate};
use inventory_schema_migrate::PgSchemaMigrator;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use test_support::stub_http::StubServer;

/// What the state machine hands persist: the chunk and validate's valid updates.
fn persist_payload(validated: &Value) -> Value {
    json!({"chunk": validated["chunk"], "updates": validated["valid"]})
}

#[tokio::test]
async fn validate_then_persist_keeps_every_record_once_even_when_the_chunk_is_redelivered()
-> Result<()> {
    let t = TestDb::new().await?;
    let quarantine = PgQuarantine::new(t.db.clone());
    let store = PgEventStore::new(t.db.clone());
    let chunk = serde_json::to_value(mixed_chunk())?;

    let mut outputs = Vec::new();
    for _delivery in 0..2 {
        let validated = serde_json::to_value(
            inventory_validate::handle(chunk.clone(), &quarantine, soon_after(&mixed_chunk()))
                .await?,
        )?;
        let persisted = inventory_persist::handle(
            persist_payload(&validated),
            &store,
            soon_after(&mixed_chunk()),
        )
        .await?;
        outputs.push((
            serde_json::from_value::<ValidateOutput>(validated)?,
            persisted,
        ));
    }

    let (validated, first) = &outputs[0];
    let (_, second) = &outputs[1];
    assert_eq!(
        validated.valid.len() + validated.rejected.len(),
        9,
        "every record is valid or rejected"
    );
    assert_eq!(
        count(&t.db, "quarantined_records").await?,
        5,
        "every rejected record is quarantined, once"
    );
    assert_eq!(
        count(&t.db, "inventory_events").await?,
        3,
        "every distinct valid update is stored, once"
    );
    assert_eq!((first.appended, first.duplicates), (3, 1));
    assert_eq!((second.appended, second.duplicates), (0, 4));
    assert_eq!(
        second.changed, first.changed,
        "a redelivery reports the same products for the cache step"
    );
    let products: Vec<&str> = first
        .changed
        .iter()
        .map(|c| c.product_id.as_str())
        .collect();
    assert_eq!(products, ["SKU-1", "product123"]);
    let s = load_summary(&t.db, &pid("SKU-1")).await?.expect("summary");
    assert_eq!((s.total_quantity, s.supplier_count), (12, 2));
    assert_eq!(s.best_price.map(|p| p.to_string()), Some("9.99".into()));
    t.cleanup().await
}

#[tokio::test]
async fn a_payload_that_does_not_deserialize_is_an_invalid_payload_at_every_function() -> Result<()>
{
    let t = TestDb::new().await?;
    let garbage = json!({"unexpected": [1, 2, 3]});

    let v = inventory_validate::handle(
        garbage.clone(),
        &PgQuarantine::new(t.db.clone()),
        chrono::Utc::now(),
    )
    .await
    .expect_err("validate");
    let p = inventory_persist::handle(
        garbage.clone(),
        &PgEventStore::new(t.db.clone()),
        chrono::Utc::now(),
    )
    .await
    .expect_err("persist");
    let migrator: Arc<dyn SchemaMigrator> = Arc::new(PgSchemaMigrator {
        db: t.db.clone(),
        login: None,
        retention: None,
    });
    let m = inventory_schema_migrate::handle(garbage, &budget(), &ResponseSender::new()?, migrator)
        .await
        .expect_err("migrate");

    for e in [v, p, m] {
        assert_eq!(e.kind, ErrorKind::InvalidPayload, "{}", e.message);
    }
    assert_eq!(
        count(&t.db, "inventory_events").await? + count(&t.db, "quarantined_records").await?,
        0
    );
    t.cleanup().await
}

fn budget() -> Budget {
    Budget {
        time_left: Duration::from_secs(60),
        log_stream: "test".into(),
    }
}

/// A loopback `ResponseURL` that answers 200 to everything.
async fn response_url() -> (String, StubServer) {
    let stub = StubServer::always(200, &[], "").await;
    (stub.url("/response?X-Amz-Signature=abc"), stub)
}

fn cfn_event(request_type: &str, url: &str) -> Result<Value> {
    let mut e: Value =
        serde_json::from_str(include_str!("../fixtures/cfn-schema-migrate-create.json"))?;
    e["RequestType"] = json!(request_type);
    e["ResponseURL"] = json!(url);
    if request_type != "Create" {
        e["PhysicalResourceId"] = json!(inventory_schema_migrate::PHYSICAL_ID);
        e["OldResourceProperties"] = json!({});
    }
    Ok(e)
}

#[tokio::test]
async fn schema_migrate_as_a_custom_resource_migrates_a_fresh_database_and_answers_success()
-> Result<()> {
    let t = TestDb::empty().await?;
    let (url, answers) = response_url().await;
    let sender = ResponseSender::new()?;
    let migrator: Arc<dyn SchemaMigrator> = Arc::new(PgSchemaMigrator {
        db: t.db.clone(),
        login: None,
        retention: None,
    });

    inventory_schema_migrate::handle(
        cfn_event("Create", &url)?,
        &budget(),
        &sender,
        migrator.clone(),
    )
    .await?;
    inventory_schema_migrate::handle(
        cfn_event("Update", &url)?,
        &budget(),
        &sender,
        migrator.clone(),
    )
    .await?;
    inventory_schema_migrate::handle(cfn_event("Delete", &url)?, &budget(), &sender, migrator)
        .await?;

    let create = answers.next_request().await.json();
    let update = answers.next_request().await.json();
    let delete = answers.next_request().await.json();
    // Every migration the crate ships is applied on Create, whatever their number.
    let shipped = <migration::Migrator as migration::MigratorTrait>::migrations()
        .len()
        .to_string();
    assert_eq!(
        (
            create["Status"].as_str(),
            create["Data"]["Applied"].as_str()
        ),
        (Some("SUCCESS"), Some(shipped.as_str()))
    );
    assert_eq!(
        (
            update["Status"].as_str(),
            update["Data"]["Applied"].as_str()
        ),
        (Some("SUCCESS"), Some("0"))
    );
    assert_eq!(delete["Status"], "SUCCESS");
    assert_eq!(create["PhysicalResourceId"], update["PhysicalResourceId"]);
    assert_eq!(
        count(&t.db, "inventory_events").await?,
        0,
        "the tables exist, and Delete dropped nothing"
    );
    t.cleanup().await
}

#[tokio::test]
async fn schema_migrate_answers_failed_when_the_database_cannot_be_migrated() -> Result<()> {
    let (url, answers) = response_url().await;
    let config = DatabaseConfig {
        target: DatabaseTarget::Url(inventory::redact::SecretUrl::new(
            "postgres://postgres@127.0.0.1:5432/it_no_such_database",
        )),
        tls: TlsMode::AsConfigured,
        pool_max: 1,
    };
    let migrator: Arc<dyn SchemaMigrator> = Arc::new(PgSchemaMigrator {
        db: connect(&config, None).await?,
        login: None,
        retention: None,
    });

    inventory_schema_migrate::handle(
        cfn_event("Create", &url)?,
        &budget(),
        &ResponseSender::new()?,
        migrator,
    )
    .await?;

    let answer = answers.next_request().await.json();
    assert_eq!(answer["Status"], "FAILED");
    let reason = answer["Reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Inventory.Misconfigured") && reason.contains("it_no_such_database"),
        "{reason}"
    );
    Ok(())
}

/// One generated update: product, supplier, quantity, price, minute.
type Row = (u8, u8, i64, u32, u32);

fn deliveries() -> impl Strategy<Value = (Vec<Row>, Vec<usize>, usize)> {
    prop::collection::vec((0..3u8, 0..2u8, 0..20i64, 1..50u32, 0..30u32), 1..12).prop_flat_map(
        |base| {
            let n = base.len();
            prop::collection::vec(0..n, 0..20).prop_flat_map(move |extra| {
                let order: Vec<usize> = (0..n).chain(extra).collect();
                (Just(base.clone()), Just(order).prop_shuffle(), 1..6usize)
            })
        },
    )
}

#[test]
fn any_permutation_duplication_and_chunking_yields_the_newest_update_per_offer() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let t = rt.block_on(TestDb::new())?;
    let store = PgEventStore::new(t.db.clone());
    let cases = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });

    let result = runner.run(&deliveries(), |(base, order, chunk_size)| {
        let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Each case has its own products, so cases share one database without meeting.
        let updates: Vec<InventoryUpdate> = base
            .iter()
            .map(|(p, s, q, price, minute)| update(&format!("c{case}-p{p}"), &format!("s{s}"), *q, &price.to_string(), *minute))
            .collect();
        let delivered: Vec<InventoryUpdate> = order.iter().map(|i| updates[*i].clone()).collect();
        let newest = newest_per_offer(&updates);
        let products: BTreeSet<String> = updates.iter().map(|u| u.product_id.to_string()).collect();

        let stored = rt.block_on(async {
            for (i, chunk) in delivered.chunks(chunk_size).enumerate() {
                let payload = json!({"chunk": crate::event_store::chunk(u32::try_from(i).unwrap_or(0)), "updates": chunk});
                let _: PersistOutput = inventory_persist::handle(payload, &store, crate::event_store::arrived_at()).await?;
            }
            let mut stored = Vec::new();
            for p in &products {
                stored.push((load_offers(&t.db, &pid(p)).await?, load_summary(&t.db, &pid(p)).await?));
            }
            Ok::<_, inventory::PipelineError>(stored)
        });
        let stored = stored.map_err(|e| TestCaseError::fail(e.detailed()))?;

        let got: Vec<String> = stored.iter().flat_map(|(offers, _)| offers.iter().map(|o| o.update_key.to_string())).collect();
        let want: Vec<String> = newest.values().map(|u| u.update_key.to_string()).collect();
        prop_assert_eq!(got, want);
        for (offers, summary) in &stored {
            let summary = summary.as_ref().ok_or_else(|| TestCaseError::fail("a product with offers has a summary"))?;
            prop_assert_eq!(summary.total_quantity, offers.iter().map(|o| o.quantity.get()).sum::<i64>());
            prop_assert_eq!(Some(summary.version), offers.iter().map(|o| o.event_seq).max());
        }
        Ok(())
    });

    rt.block_on(t.cleanup())?;
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

/// `DB_TLS_CA_FILE` really verifies: the local server's own certificate (self-signed, for
/// `localhost`) as the bundle connects; the system bundle, or the right bundle with a host
/// name the certificate does not name, is refused.
#[tokio::test]
async fn verified_tls_accepts_only_a_server_certificate_from_the_configured_bundle() -> Result<()> {
    let t = TestDb::new().await?;
    let row =
        t.db.query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_setting('ssl') AS ssl, current_setting('ssl_cert_file') AS cert",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no settings"))?;
    let (ssl, cert): (String, String) = (row.try_get("", "ssl")?, row.try_get("", "cert")?);
    anyhow::ensure!(
        ssl == "on",
        "this test needs the local PostgreSQL to offer TLS (ssl = on)"
    );
    let config = |host: &str, ca: &str| DatabaseConfig {
        target: DatabaseTarget::Url(inventory::redact::SecretUrl::new(format!(
            "postgres://postgres@{host}:5432/{}",
            t.name()
        ))),
        tls: TlsMode::VerifyFull { ca_file: ca.into() },
        pool_max: 1,
    };
    let ping = |config: DatabaseConfig| async move {
        let mut opts = inventory::adapters::postgres::connect_options(&config, None)?;
        opts.acquire_timeout(Duration::from_secs(3));
        let db = sea_orm::Database::connect(opts).await?;
        db.execute_unprepared("SELECT 1").await?;
        anyhow::Ok(())
    };

    let trusted = ping(config("localhost", &cert)).await;
    let untrusted = ping(config("localhost", "/etc/ssl/certs/ca-certificates.crt")).await;
    let wrong_name = ping(config("127.0.0.1", &cert)).await;

    trusted.map_err(|e| e.context("the server's own certificate as the bundle"))?;
    assert!(
        untrusted.is_err(),
        "a certificate outside the bundle must be refused"
    );
    assert!(
        wrong_name.is_err(),
        "a host name the certificate does not name must be refused"
    );
    t.cleanup().await
}
