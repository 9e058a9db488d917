//! The bucket emptier against a moto S3 on loopback: a versioned bucket with more objects
//! than one page, overwritten versions and delete markers ends up with nothing in it.

use anyhow::{Context, Result, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use bucket_emptier::{empty_bucket, on_request};
use inventory::adapters::custom_resource::CustomResourceEvent;
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A moto server on a free loopback port, killed (by its PID) when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn moto_binary() -> std::path::PathBuf {
    std::env::var_os("MOTO_SERVER")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
        })
}

async fn start_moto() -> Result<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let binary = moto_binary();
    let child = Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (run `cargo xtask setup` to create the venv)",
                binary.display()
            )
        })?;
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(moto);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("moto did not start on port {port}")
}

fn client(moto: &Moto) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    Client::from_conf(config)
}

async fn versioned_bucket(s3: &Client, name: &str) -> Result<()> {
    s3.create_bucket().bucket(name).send().await?;
    s3.put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

async fn count_entries(s3: &Client, bucket: &str) -> Result<usize> {
    let (mut total, mut key_marker, mut version_marker) = (0, None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await?;
        total += page.versions().len() + page.delete_markers().len();
        if page.is_truncated() != Some(true) {
            return Ok(total);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
}

fn delete_request(bucket: &str) -> CustomResourceEvent {
    CustomResourceEvent::from_value(json!({
        "RequestType": "Delete",
        "ResponseURL": "https://unused.invalid/",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/inventory-test/x",
        "RequestId": "r-1",
        "ResourceType": "Custom::BucketEmptier",
        "LogicalResourceId": "ArchiveBucketEmptier",
        "PhysicalResourceId": bucket,
        "ResourceProperties": { "BucketName": bucket }
    }))
    .expect("a valid Delete request")
}

#[tokio::test]
async fn a_versioned_bucket_with_more_than_a_page_of_entries_is_emptied_completely() -> Result<()> {
    let moto = start_moto().await?;
    let s3 = client(&moto);
    versioned_bucket(&s3, "archive-many").await?;
    // 1,100 keys (more than one 1,000-entry page), 50 of them overwritten, 25 deleted.
    for i in 0..1100 {
        s3.put_object()
            .bucket("archive-many")
            .key(format!("chunks/{i:05}.jsonl.gz"))
            .body(vec![1u8].into())
            .send()
            .await?;
    }
    for i in 0..50 {
        s3.put_object()
            .bucket("archive-many")
            .key(format!("chunks/{i:05}.jsonl.gz"))
            .body(vec![2u8].into())
            .send()
            .await?;
    }
    for i in 50..75 {
        s3.delete_object()
            .bucket("archive-many")
            .key(format!("chunks/{i:05}.jsonl.gz"))
            .send()
            .await?;
    }
    assert_eq!(count_entries(&s3, "archive-many").await?, 1175);

    let emptied = empty_bucket(&s3, "archive-many").await?;

    assert_eq!(emptied.deleted, 1175);
    assert_eq!(count_entries(&s3, "archive-many").await?, 0);
    s3.delete_bucket()
        .bucket("archive-many")
        .send()
        .await
        .context("the empty bucket can be deleted")?;
    Ok(())
}

#[tokio::test]
async fn a_delete_request_empties_the_bucket_and_keeps_its_name_as_the_physical_id() -> Result<()> {
    let moto = start_moto().await?;
    let s3 = client(&moto);
    versioned_bucket(&s3, "archive-delete").await?;
    s3.put_object()
        .bucket("archive-delete")
        .key("a")
        .body(vec![1u8].into())
        .send()
        .await?;

    let outcome = on_request(&s3, delete_request("archive-delete")).await?;

    assert_eq!(
        outcome.physical_resource_id.as_deref(),
        Some("archive-delete")
    );
    assert_eq!(count_entries(&s3, "archive-delete").await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_create_request_leaves_the_objects_alone() -> Result<()> {
    let moto = start_moto().await?;
    let s3 = client(&moto);
    versioned_bucket(&s3, "archive-create").await?;
    s3.put_object()
        .bucket("archive-create")
        .key("a")
        .body(vec![1u8].into())
        .send()
        .await?;
    let create = json!({
        "RequestType": "Create", "ResponseURL": "https://unused.invalid/", "StackId": "s", "RequestId": "r-2",
        "ResourceType": "Custom::BucketEmptier", "LogicalResourceId": "ArchiveBucketEmptier",
        "ResourceProperties": { "ServiceToken": "arn:x", "BucketName": "archive-create" }
    });

    let outcome = on_request(&s3, CustomResourceEvent::from_value(create)?).await?;

    assert_eq!(
        outcome.physical_resource_id.as_deref(),
        Some("archive-create")
    );
    assert_eq!(count_entries(&s3, "archive-create").await?, 1);
    Ok(())
}

#[tokio::test]
async fn deleting_a_bucket_that_no_longer_exists_succeeds_so_a_rollback_can_finish() -> Result<()> {
    let moto = start_moto().await?;
    let s3 = client(&moto);

    let emptied = empty_bucket(&s3, "never-created").await?;

    assert_eq!(
        emptied,
        bucket_emptier::Emptied {
            deleted: 0,
            passes: 1
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_request_without_a_bucket_name_is_rejected_with_the_property_named() -> Result<()> {
    let moto = start_moto().await?;
    let s3 = client(&moto);
    let mut request = delete_request("x");
    request.properties = json!({});

    let e = on_request(&s3, request).await.expect_err("no BucketName");

    assert!(e.message.contains("BucketName"), "{}", e.message);
    Ok(())
}
