//! The archive bucket's [`S3ObjectStore`] as the fan-out uses it: an oversized record's bytes
//! under its key, SSE-KMS with the configured key, and S3's errors sorted like every call's.

use inventory::adapters::s3::{ArchiveConfig, S3ObjectStore};
use inventory::ports::{ObjectKind, ObjectStore as _};
use inventory::{ArchiveKey, ErrorKind};
use test_support::stub_http::StubServer;

fn store(endpoint: &str, kms_key_id: Option<&str>) -> S3ObjectStore {
    let sdk = test_support::aws::stub_sdk_config(endpoint);
    let config = ArchiveConfig {
        bucket: "inventory-archive-dev".into(),
        kms_key_id: kms_key_id.map(str::to_owned),
    };
    S3ObjectStore::new(inventory::adapters::aws::s3_client(&sdk), config)
}

fn key() -> ArchiveKey {
    ArchiveKey::for_oversized_record("inventory-updates-dev", "shardId-000000000000", "4965")
}

#[tokio::test]
async fn an_oversized_record_is_put_under_its_key_encrypted_with_the_kms_key() {
    let stub = StubServer::always(200, &[("etag", "\"abc\"")], "").await;
    let data = b"an oversized record".to_vec();

    store(stub.endpoint(), Some("alias/inventory-dev"))
        .put(&key(), data.clone(), ObjectKind::Bytes)
        .await
        .expect("stored");

    let request = &stub.received()[0];
    assert!(
        request
            .request_line
            .starts_with("PUT /inventory-archive-dev/oversized/inventory-updates-dev/shardId-000000000000/4965.bin"),
        "{}",
        request.request_line
    );
    let headers = request.headers.to_ascii_lowercase();
    assert!(
        headers.contains("x-amz-server-side-encryption: aws:kms"),
        "{headers}"
    );
    assert!(
        headers.contains("x-amz-server-side-encryption-aws-kms-key-id: alias/inventory-dev"),
        "{headers}"
    );
    assert!(
        headers.contains("x-amz-server-side-encryption-bucket-key-enabled: true"),
        "{headers}"
    );
    assert!(
        headers.contains("content-type: application/octet-stream"),
        "{headers}"
    );
    assert!(
        request
            .body
            .windows(data.len())
            .any(|w| w == data.as_slice()),
        "the record's bytes are sent"
    );
}

#[tokio::test]
async fn without_a_kms_key_the_bucket_default_encryption_applies() {
    let stub = StubServer::always(200, &[], "").await;

    store(stub.endpoint(), None)
        .put(&key(), b"x".to_vec(), ObjectKind::Bytes)
        .await
        .expect("stored");

    assert!(
        !stub.received()[0]
            .headers
            .to_ascii_lowercase()
            .contains("x-amz-server-side-encryption")
    );
}

#[tokio::test]
async fn a_bucket_that_does_not_exist_is_misconfiguration() {
    let body = "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
    let stub = StubServer::always(404, &[("content-type", "application/xml")], body).await;

    let e = store(stub.endpoint(), None)
        .put(&key(), b"x".to_vec(), ObjectKind::Bytes)
        .await
        .expect_err("no bucket");

    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(
        e.message.contains("s3://inventory-archive-dev/oversized/"),
        "{}",
        e.message
    );
}
