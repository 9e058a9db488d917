//! The bucket emptier (the archive bucket's custom resource) against moto: on Delete every
//! object version and delete marker goes, across ListObjectVersions pages and DeleteObjects
//! batches, until a pass finds nothing; a bucket that is already gone counts as empty; Create
//! and Update touch nothing and answer with the bucket name.

use anyhow::{Context as _, Result};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::operation::list_object_versions::{
    ListObjectVersionsInput, ListObjectVersionsOutput,
};
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use integration_tests::moto::{MotoS3 as _, MotoServer, unique_name};
use inventory::ErrorKind;
use inventory::adapters::custom_resource::CustomResourceEvent;
use inventory_bucket_emptier::{Emptied, empty_bucket, on_request};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Uploads in flight at once when filling a bucket.
const UPLOADERS: usize = 16;

/// What a bucket holds: object versions and delete markers, over every listing page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entries {
    versions: usize,
    markers: usize,
}

/// A fresh bucket with versioning on, as the archive bucket is.
async fn versioned_bucket(moto: &MotoServer, purpose: &str) -> Result<String> {
    let bucket = moto.create_bucket(purpose).await?;
    moto.s3_client()
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .context("enabling versioning")?;
    Ok(bucket)
}

async fn put(s3: &Client, bucket: &str, key: &str, body: &str) -> Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .with_context(|| format!("putting {key}"))?;
    Ok(())
}

/// On a versioned bucket, adds a delete marker on top of the key.
async fn delete(s3: &Client, bucket: &str, key: &str) -> Result<()> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("deleting {key}"))?;
    Ok(())
}

async fn entries(s3: &Client, bucket: &str) -> Result<Entries> {
    let mut found = Entries {
        versions: 0,
        markers: 0,
    };
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .context("listing versions")?;
        found.versions += page.versions().len();
        found.markers += page.delete_markers().len();
        if page.is_truncated() != Some(true) {
            return Ok(found);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
}

/// Three keys with one version each, one overwritten twice (three versions), one deleted (a
/// version and a marker) and one deleted twice (a version and two markers).
async fn fill_with_history(s3: &Client, bucket: &str) -> Result<Entries> {
    for key in ["chunks/a.jsonl.gz", "chunks/b.jsonl.gz", "oversize/c.json"] {
        put(s3, bucket, key, "v1").await?;
    }
    for body in ["v1", "v2", "v3"] {
        put(s3, bucket, "chunks/overwritten.jsonl.gz", body).await?;
    }
    put(s3, bucket, "chunks/deleted.jsonl.gz", "v1").await?;
    delete(s3, bucket, "chunks/deleted.jsonl.gz").await?;
    put(s3, bucket, "chunks/deleted-twice.jsonl.gz", "v1").await?;
    delete(s3, bucket, "chunks/deleted-twice.jsonl.gz").await?;
    delete(s3, bucket, "chunks/deleted-twice.jsonl.gz").await?;
    let expected = Entries {
        versions: 3 + 3 + 1 + 1,
        markers: 1 + 2,
    };
    assert_eq!(entries(s3, bucket).await?, expected, "the bucket as filled");
    Ok(expected)
}

/// Puts `count` one-byte objects, `UPLOADERS` at a time.
async fn put_many(s3: &Client, bucket: &str, count: usize) -> Result<()> {
    let mut uploads = tokio::task::JoinSet::new();
    for worker in 0..UPLOADERS {
        let (s3, bucket) = (s3.clone(), bucket.to_owned());
        uploads.spawn(async move {
            for i in (worker..count).step_by(UPLOADERS) {
                put(&s3, &bucket, &format!("chunks/{i:05}.jsonl.gz"), "x").await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = uploads.join_next().await {
        done??;
    }
    Ok(())
}

/// One ListObjectVersions call: the markers it went on from, and the entries it got.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listing {
    from: Option<(String, String)>,
    entries: usize,
}

/// Records every ListObjectVersions call made through the client it is installed on.
#[derive(Debug, Clone, Default)]
struct ListingLog(Arc<Mutex<Vec<Listing>>>);

impl ListingLog {
    fn listings(&self) -> Vec<Listing> {
        self.0.lock().expect("not poisoned").clone()
    }
}

impl Intercept for ListingLog {
    fn name(&self) -> &'static str {
        "ListingLog"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = context.input().downcast_ref::<ListObjectVersionsInput>() {
            let from = input.key_marker().map(|key| {
                let version = input.version_id_marker().unwrap_or_default();
                (key.to_owned(), version.to_owned())
            });
            let listing = Listing { from, entries: 0 };
            self.0.lock().expect("not poisoned").push(listing);
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let page = context.output_or_error().ok();
        if let Some(page) = page.and_then(|o| o.downcast_ref::<ListObjectVersionsOutput>())
            && let Some(last) = self.0.lock().expect("not poisoned").last_mut()
        {
            last.entries = page.versions().len() + page.delete_markers().len();
        }
        Ok(())
    }
}

/// A request as CloudFormation sends it, for the bucket in `properties`.
fn request(kind: &str, properties: Value) -> Result<CustomResourceEvent> {
    let mut v = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:bucket-emptier-test",
        "ResponseURL": "https://cloudformation-response.invalid/presigned",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/inventory-test/guid",
        "RequestId": "5d478078-13e9-baf0-464a-7ef285ecc786",
        "ResourceType": "Custom::BucketEmptier",
        "LogicalResourceId": "ArchiveBucketEmptier",
        "ResourceProperties": properties.clone()
    });
    if kind != "Create" {
        v["PhysicalResourceId"] = properties["BucketName"].clone();
    }
    if kind == "Update" {
        v["OldResourceProperties"] = properties.clone();
    }
    CustomResourceEvent::from_value(v).context("a well-formed request")
}

fn bucket_properties(bucket: &str) -> Value {
    json!({ "ServiceToken": "arn:x", "BucketName": bucket })
}

#[tokio::test]
async fn every_version_and_delete_marker_goes_and_the_last_pass_finds_nothing() -> Result<()> {
    let moto = MotoServer::shared()?;
    let s3 = moto.s3_client();
    let bucket = versioned_bucket(moto, "emptier-history").await?;
    let there = fill_with_history(&s3, &bucket).await?;

    let emptied = empty_bucket(&s3, &bucket).await?;

    let none = Entries {
        versions: 0,
        markers: 0,
    };
    assert_eq!(entries(&s3, &bucket).await?, none);
    assert_eq!(
        emptied,
        Emptied {
            deleted: (there.versions + there.markers) as u64,
            passes: 2,
        },
        "one pass deletes everything, the second finds nothing"
    );
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .context("an emptied bucket can be deleted")?;
    Ok(())
}

#[tokio::test]
async fn more_than_a_page_is_emptied_page_by_page_until_a_pass_finds_nothing() -> Result<()> {
    let moto = MotoServer::shared()?;
    let s3 = moto.s3_client();
    let bucket = versioned_bucket(moto, "emptier-many").await?;
    put_many(&s3, &bucket, 1_150).await?;
    // Second versions and delete markers among them, on the first listing page.
    for i in 0..100 {
        put(&s3, &bucket, &format!("chunks/{i:05}.jsonl.gz"), "y").await?;
    }
    for i in 100..150 {
        delete(&s3, &bucket, &format!("chunks/{i:05}.jsonl.gz")).await?;
    }
    let there = entries(&s3, &bucket).await?;
    assert_eq!(
        there,
        Entries {
            versions: 1_250,
            markers: 50
        }
    );
    let first_page = s3.list_object_versions().bucket(&bucket).send().await?;
    assert_eq!(
        first_page.versions().len() + first_page.delete_markers().len(),
        1_000,
        "a full page, deleted as one full DeleteObjects batch"
    );
    assert_eq!(first_page.is_truncated(), Some(true), "more than one page");
    let log = ListingLog::default();
    let logged = Client::from_conf(s3.config().to_builder().interceptor(log.clone()).build());

    let emptied = empty_bucket(&logged, &bucket).await?;

    assert_eq!(
        entries(&s3, &bucket).await?,
        Entries {
            versions: 0,
            markers: 0
        }
    );
    assert_eq!(emptied.deleted, 1_300);
    let listings = log.listings();
    let second_page_from = first_page
        .next_key_marker()
        .zip(first_page.next_version_id_marker())
        .map(|(key, version)| (key.to_owned(), version.to_owned()));
    assert_eq!(
        listings
            .iter()
            .take(2)
            .map(|l| l.from.clone())
            .collect::<Vec<_>>(),
        [None, second_page_from],
        "the first pass goes on from where its first page ended: {listings:?}"
    );
    // Each pass lists from the top. moto answers a listing that goes on after an entry
    // deleted since with nothing (S3 goes on from the marker), so there the first pass
    // ends after one page and the next pass finds the rest: count passes, not pages.
    let mut passes: Vec<usize> = Vec::new();
    for listing in &listings {
        if listing.from.is_none() {
            passes.push(0);
        }
        if let Some(found) = passes.last_mut() {
            *found += listing.entries;
        }
    }
    assert_eq!(
        emptied.passes as usize,
        passes.len(),
        "one pass per listing from the top: {listings:?}"
    );
    assert_eq!(passes.last(), Some(&0), "the last pass found nothing");
    assert!(
        passes[..passes.len() - 1].iter().all(|&found| found > 0),
        "every earlier pass found something: {passes:?}"
    );
    assert_eq!(passes.iter().sum::<usize>(), 1_300, "{passes:?}");
    Ok(())
}

#[tokio::test]
async fn a_bucket_that_does_not_exist_counts_as_empty() -> Result<()> {
    let moto = MotoServer::shared()?;
    let s3 = moto.s3_client();

    let emptied = empty_bucket(&s3, &unique_name("emptier-never-created")).await?;

    assert_eq!(
        emptied,
        Emptied {
            deleted: 0,
            passes: 1
        }
    );
    Ok(())
}

#[tokio::test]
async fn create_and_update_delete_nothing_and_answer_with_the_bucket_name() -> Result<()> {
    let moto = MotoServer::shared()?;
    let s3 = moto.s3_client();
    let bucket = versioned_bucket(moto, "emptier-create").await?;
    let there = fill_with_history(&s3, &bucket).await?;
    let named = BTreeMap::from([("BucketName".to_owned(), bucket.clone())]);

    for kind in ["Create", "Update"] {
        let outcome = on_request(&s3, request(kind, bucket_properties(&bucket))?).await?;

        assert_eq!(
            outcome.physical_resource_id.as_deref(),
            Some(bucket.as_str()),
            "{kind}"
        );
        assert_eq!(outcome.data, named, "{kind}");
        assert_eq!(
            entries(&s3, &bucket).await?,
            there,
            "{kind} deletes nothing"
        );
    }
    Ok(())
}

#[tokio::test]
async fn delete_empties_the_bucket_and_answers_with_its_name() -> Result<()> {
    let moto = MotoServer::shared()?;
    let s3 = moto.s3_client();
    let bucket = versioned_bucket(moto, "emptier-delete").await?;
    fill_with_history(&s3, &bucket).await?;

    let outcome = on_request(&s3, request("Delete", bucket_properties(&bucket))?).await?;

    assert_eq!(
        outcome.physical_resource_id.as_deref(),
        Some(bucket.as_str())
    );
    assert_eq!(
        outcome.data,
        BTreeMap::from([("BucketName".to_owned(), bucket.clone())])
    );
    assert_eq!(
        entries(&s3, &bucket).await?,
        Entries {
            versions: 0,
            markers: 0
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_request_without_a_bucket_name_is_an_error_that_names_the_property() -> Result<()> {
    let moto = MotoServer::shared()?;
    let s3 = moto.s3_client();
    let bucket = versioned_bucket(moto, "emptier-unnamed").await?;
    let there = fill_with_history(&s3, &bucket).await?;

    for (kind, properties) in [
        ("Create", json!({ "ServiceToken": "arn:x" })),
        ("Delete", json!({ "ServiceToken": "arn:x" })),
        (
            "Delete",
            json!({ "ServiceToken": "arn:x", "BucketName": "" }),
        ),
        (
            "Delete",
            json!({ "ServiceToken": "arn:x", "BucketName": 7 }),
        ),
    ] {
        let mut event = request(kind, bucket_properties(&bucket))?;
        event.properties = properties.clone();

        let e = on_request(&s3, event)
            .await
            .expect_err("no usable BucketName");

        assert_eq!(e.kind, ErrorKind::InvalidPayload, "{kind} {properties}");
        assert!(
            e.message.contains("BucketName"),
            "{kind} {properties}: {}",
            e.message
        );
    }
    assert_eq!(
        entries(&s3, &bucket).await?,
        there,
        "nothing was deleted on a guess"
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_s3_is_a_transient_error_naming_the_operation_and_the_bucket() -> Result<()>
{
    let closed = test_support::free_addr(); // nothing listens there
    let s3 = inventory::adapters::aws::s3_client(&test_support::aws::stub_sdk_config(&format!(
        "http://{closed}"
    )));
    let bucket = unique_name("emptier-unreachable");

    let e = empty_bucket(&s3, &bucket)
        .await
        .expect_err("S3 cannot be reached");

    // Transient, so CloudFormation hears FAILED and a retried Delete can finish the job; a
    // bucket that merely cannot be listed must never count as empty.
    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert!(e.is_transient());
    let message = e.detailed();
    assert!(
        message.contains("ListObjectVersions") && message.contains(&bucket),
        "{message}"
    );
    Ok(())
}
