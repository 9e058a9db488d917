//! Emptying against a loopback stand-in for S3: what is listed and deleted, in which batches,
//! and how S3's answers become the report or the error.

use super::*;
use aws_sdk_s3::types::Error as EntryError;
use test_support::stub_http::{Answer, Received, StubServer};

/// An S3 client for the stub at `endpoint`, without retries (each answer is used once).
pub(crate) fn client(endpoint: &str) -> Client {
    let sdk = test_support::aws::stub_sdk_config(endpoint);
    aws::s3_client(&sdk)
}

fn xml(status: u16, body: &str) -> Answer {
    Answer::new(status, &[("content-type", "application/xml")], body)
}

/// A ListObjectVersions page: `versions` and `markers` as (key, version id); truncated when
/// `next` gives the key and version-id markers to go on from.
pub(crate) fn listing(
    versions: &[(&str, &str)],
    markers: &[(&str, &str)],
    next: Option<(&str, &str)>,
) -> Answer {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>"#,
    );
    match next {
        Some((key, version)) => body.push_str(&format!(
            "<IsTruncated>true</IsTruncated><NextKeyMarker>{key}</NextKeyMarker><NextVersionIdMarker>{version}</NextVersionIdMarker>"
        )),
        None => body.push_str("<IsTruncated>false</IsTruncated>"),
    }
    for (key, version) in versions {
        body.push_str(&format!(
            "<Version><Key>{key}</Key><VersionId>{version}</VersionId><IsLatest>true</IsLatest></Version>"
        ));
    }
    for (key, version) in markers {
        body.push_str(&format!(
            "<DeleteMarker><Key>{key}</Key><VersionId>{version}</VersionId></DeleteMarker>"
        ));
    }
    body.push_str("</ListVersionsResult>");
    xml(200, &body)
}

/// DeleteObjects' answer in quiet mode: only the keys it could not delete.
pub(crate) fn deleted(failures: &[(&str, &str)]) -> Answer {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
    );
    for (key, code) in failures {
        body.push_str(&format!(
            "<Error><Key>{key}</Key><Code>{code}</Code><Message>from S3</Message></Error>"
        ));
    }
    body.push_str("</DeleteResult>");
    xml(200, &body)
}

fn s3_error_answer(status: u16, code: &str) -> Answer {
    xml(
        status,
        &format!("<Error><Code>{code}</Code><Message>from S3</Message></Error>"),
    )
}

fn body(request: &Received) -> String {
    String::from_utf8_lossy(&request.body).into_owned()
}

fn is_listing(request: &Received) -> bool {
    request.method() == "GET" && request.target().contains("versions")
}

fn is_delete(request: &Received) -> bool {
    request.method() == "POST" && request.target().contains("delete")
}

fn entry(key: &str, code: &str) -> EntryError {
    EntryError::builder()
        .key(key)
        .code(code)
        .message("from S3")
        .build()
}

#[tokio::test]
async fn every_version_and_delete_marker_is_deleted_page_by_page_until_a_pass_finds_nothing() {
    let stub = StubServer::start(
        vec![
            listing(
                &[("a", "va1"), ("b", "vb1")],
                &[("c", "vc1")],
                Some(("c", "vc1")),
            ),
            deleted(&[]),
            listing(&[("d", "vd1")], &[], None),
            deleted(&[]),
        ],
        listing(&[], &[], None),
    )
    .await;

    let emptied = empty_bucket(&client(stub.endpoint()), "archive-b")
        .await
        .expect("emptied");

    assert_eq!(
        emptied,
        Emptied {
            deleted: 4,
            passes: 2
        }
    );
    let sent = stub.received();
    assert_eq!(sent.len(), 5, "list, delete, list, delete, list again");
    let kinds: Vec<_> = sent.iter().map(|r| (is_listing(r), is_delete(r))).collect();
    assert_eq!(
        kinds,
        [
            (true, false),
            (false, true),
            (true, false),
            (false, true),
            (true, false)
        ]
    );
    assert!(
        sent[0].target().starts_with("/archive-b/?"),
        "{}",
        sent[0].target()
    );
    assert!(
        !sent[0].target().contains("key-marker"),
        "{}",
        sent[0].target()
    );
    assert!(
        sent[2].target().contains("key-marker=c")
            && sent[2].target().contains("version-id-marker=vc1"),
        "the next page goes on from the markers: {}",
        sent[2].target()
    );
    assert!(
        !sent[4].target().contains("key-marker"),
        "a new pass lists from the start: {}",
        sent[4].target()
    );
    let first = body(&sent[1]);
    for object in [
        "<Object><Key>a</Key><VersionId>va1</VersionId></Object>",
        "<Object><Key>b</Key><VersionId>vb1</VersionId></Object>",
        "<Object><Key>c</Key><VersionId>vc1</VersionId></Object>",
    ] {
        assert!(first.contains(object), "{object} in {first}");
    }
    assert!(first.contains("<Quiet>true</Quiet>"), "{first}");
    assert!(body(&sent[3]).contains("<Key>d</Key><VersionId>vd1</VersionId>"));
    assert_eq!(body(&sent[3]).matches("<Object>").count(), 1);
}

#[tokio::test]
async fn a_page_of_more_than_a_thousand_entries_is_deleted_in_batches_of_a_thousand() {
    let keys: Vec<(String, String)> = (0..1001)
        .map(|n| (format!("k{n:04}"), format!("v{n}")))
        .collect();
    let versions: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let stub = StubServer::start(
        vec![
            listing(&versions[..700], &versions[700..], None),
            deleted(&[]),
            deleted(&[]),
        ],
        listing(&[], &[], None),
    )
    .await;

    let emptied = empty_bucket(&client(stub.endpoint()), "archive-b")
        .await
        .expect("emptied");

    assert_eq!(emptied.deleted, 1001);
    let deletes: Vec<_> = stub.received().into_iter().filter(is_delete).collect();
    let sizes: Vec<_> = deletes
        .iter()
        .map(|r| body(r).matches("<Object>").count())
        .collect();
    assert_eq!(sizes, [1000, 1]);
    assert!(body(&deletes[1]).contains("<Key>k1000</Key>"));
}

#[tokio::test]
async fn a_bucket_that_no_longer_exists_counts_as_empty() {
    let stub = StubServer::always(
        404,
        &[("content-type", "application/xml")],
        "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>",
    )
    .await;

    let emptied = empty_bucket(&client(stub.endpoint()), "gone")
        .await
        .expect("nothing to do");

    assert_eq!(
        emptied,
        Emptied {
            deleted: 0,
            passes: 1
        }
    );
    assert_eq!(stub.received().len(), 1);
}

#[tokio::test]
async fn a_bucket_that_keeps_getting_objects_is_a_conflict_after_the_last_pass() {
    let mut answers = Vec::new();
    for _ in 0..MAX_PASSES {
        answers.push(listing(&[("new", "v")], &[], None));
        answers.push(deleted(&[]));
    }
    let stub = StubServer::start(answers, listing(&[], &[], None)).await;

    let e = empty_bucket(&client(stub.endpoint()), "busy")
        .await
        .expect_err("still written to");

    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.is_transient(), "a later try may find it quiet");
    assert!(
        e.message.contains("busy still had objects after 5 passes"),
        "{}",
        e.message
    );
    assert_eq!(
        stub.received().len(),
        2 * MAX_PASSES as usize,
        "no listing after the last pass"
    );
}

#[tokio::test]
async fn a_refused_listing_is_a_configuration_error_naming_the_operation() {
    let stub = StubServer::start(vec![s3_error_answer(403, "AccessDenied")], deleted(&[])).await;

    let e = empty_bucket(&client(stub.endpoint()), "locked")
        .await
        .expect_err("denied");

    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(
        e.message.starts_with("ListObjectVersions on locked failed"),
        "{}",
        e.message
    );
    assert_eq!(stub.received().len(), 1, "nothing deleted");
}

#[tokio::test]
async fn a_failing_delete_call_is_transient_and_stops_the_emptying() {
    let stub = StubServer::start(
        vec![
            listing(&[("a", "v")], &[], Some(("a", "v"))),
            s3_error_answer(500, "InternalError"),
        ],
        listing(&[], &[], None),
    )
    .await;

    let e = empty_bucket(&client(stub.endpoint()), "archive-b")
        .await
        .expect_err("S3 failed");

    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert!(
        e.message.starts_with("DeleteObjects on archive-b failed"),
        "{}",
        e.message
    );
    assert_eq!(stub.received().len(), 2, "no next page after the failure");
}

#[tokio::test]
async fn keys_delete_objects_could_not_delete_fail_the_emptying_with_their_kind() {
    let stub = StubServer::start(
        vec![
            listing(&[("a", "v1"), ("b", "v2")], &[], None),
            deleted(&[("b", "AccessDenied")]),
        ],
        listing(&[], &[], None),
    )
    .await;

    let e = empty_bucket(&client(stub.endpoint()), "archive-b")
        .await
        .expect_err("a key was not deleted");

    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(
        e.message
            .contains("failed for 1 keys, such as \"b\": AccessDenied"),
        "{}",
        e.message
    );
    assert_eq!(stub.received().len(), 2);
}

#[test]
fn keys_that_could_not_be_deleted_are_sorted_by_the_shared_classifier() {
    assert!(batch_error("b", &[]).is_none());
    let denied = batch_error("b", &[entry("k1", "AccessDenied")]).expect("an error");
    assert_eq!(denied.kind, ErrorKind::Misconfigured);
    assert!(!denied.is_transient(), "a denied key stays denied");
    let busy = batch_error("b", &[entry("k1", "SlowDown")]).expect("an error");
    assert_eq!(busy.kind, ErrorKind::Throttled);
    let failing = batch_error("b", &[entry("k1", "InternalError")]).expect("an error");
    assert_eq!(failing.kind, ErrorKind::DependencyUnavailable);
}

#[test]
fn a_key_that_retrying_cannot_fix_decides_the_batch_and_is_the_one_named() {
    let e = batch_error("b", &[entry("k1", "SlowDown"), entry("k2", "AccessDenied")])
        .expect("an error");
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert!(e.message.contains("failed for 2 keys"), "{}", e.message);
    assert!(e.message.contains("\"k2\": AccessDenied"), "{}", e.message);
}
