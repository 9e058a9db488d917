//! One custom-resource request: the bucket named by its `BucketName` property is emptied on
//! Delete, and CloudFormation is always answered.

use crate::empty::empty_bucket;
use aws_sdk_s3::Client;
use inventory::PipelineError;
use inventory::adapters::custom_resource::{
    Budget, CustomResourceEvent, Outcome, RequestKind, ResponseSender, respond,
};
use serde_json::Value;

/// Answers one custom-resource request within `budget`; an error only when CloudFormation
/// could not be told.
pub async fn handle(
    payload: Value,
    budget: &Budget,
    s3: &Client,
    sender: &ResponseSender,
) -> Result<(), PipelineError> {
    let s3 = s3.clone();
    respond(payload, budget, sender, move |request| async move {
        on_request(&s3, request).await
    })
    .await
    .map(|_| ())
}

/// Answers one custom-resource request for the bucket named by the `BucketName` property.
pub async fn on_request(s3: &Client, event: CustomResourceEvent) -> Result<Outcome, PipelineError> {
    let bucket = event.property("BucketName")?.to_owned();
    if event.kind == RequestKind::Delete {
        let emptied = empty_bucket(s3, &bucket).await?;
        tracing::info!(bucket = %bucket, deleted = emptied.deleted, passes = emptied.passes, "bucket emptied");
    }
    Ok(Outcome {
        physical_resource_id: Some(bucket.clone()),
        data: [("BucketName".to_owned(), bucket)].into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empty::tests::{client, deleted, listing};
    use inventory::ErrorKind;
    use serde_json::json;
    use std::time::Duration;
    use test_support::stub_http::StubServer;

    fn request(kind: &str, response_url: &str, properties: Value) -> Value {
        let mut request = json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:bucket-emptier-dev",
            "ResponseURL": response_url,
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/inventory-dev/guid",
            "RequestId": "5d478078-13e9-baf0-464a-7ef285ecc786",
            "ResourceType": "Custom::BucketEmptier",
            "LogicalResourceId": "ArchiveBucketEmptier",
            "PhysicalResourceId": "inventory-archive-dev-123",
            "ResourceProperties": properties,
        });
        if kind == "Update" {
            request["OldResourceProperties"] = properties_before();
        }
        request
    }

    fn properties_before() -> Value {
        json!({ "ServiceToken": "arn:x", "BucketName": "inventory-archive-dev-123" })
    }

    fn event(kind: &str) -> CustomResourceEvent {
        CustomResourceEvent::from_value(request(
            kind,
            "https://x",
            json!({ "ServiceToken": "arn:x", "BucketName": "inventory-archive-dev-123" }),
        ))
        .expect("valid")
    }

    fn budget() -> Budget {
        Budget {
            time_left: Duration::from_secs(60),
            log_stream: "2026/01/01/[$LATEST]abc".into(),
        }
    }

    #[tokio::test]
    async fn create_and_update_record_the_bucket_and_touch_nothing_in_it() {
        let s3 = StubServer::statuses(&[]).await;
        for kind in ["Create", "Update"] {
            let outcome = on_request(&client(s3.endpoint()), event(kind))
                .await
                .expect("recorded");
            assert_eq!(
                outcome.physical_resource_id.as_deref(),
                Some("inventory-archive-dev-123")
            );
            assert_eq!(
                outcome.data.get("BucketName").map(String::as_str),
                Some("inventory-archive-dev-123")
            );
        }
        assert!(s3.received().is_empty(), "no S3 call outside a Delete");
    }

    #[tokio::test]
    async fn delete_empties_the_named_bucket() {
        let s3 = StubServer::start(
            vec![listing(&[("a", "v1")], &[], None), deleted(&[])],
            listing(&[], &[], None),
        )
        .await;

        let outcome = on_request(&client(s3.endpoint()), event("Delete"))
            .await
            .expect("emptied");

        assert_eq!(
            outcome.physical_resource_id.as_deref(),
            Some("inventory-archive-dev-123")
        );
        let sent = s3.received();
        assert_eq!(sent.len(), 3);
        assert!(
            sent.iter()
                .all(|r| r.target().starts_with("/inventory-archive-dev-123/?")),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn a_request_without_a_bucket_name_is_refused_before_any_s3_call() {
        let s3 = StubServer::statuses(&[]).await;
        let event = CustomResourceEvent::from_value(request(
            "Delete",
            "https://x",
            json!({ "ServiceToken": "arn:x" }),
        ))
        .expect("valid");

        let e = on_request(&client(s3.endpoint()), event)
            .await
            .expect_err("no bucket");

        assert!(e.message.contains("BucketName"), "{}", e.message);
        assert!(s3.received().is_empty());
    }

    #[tokio::test]
    async fn cloudformation_hears_success_once_the_bucket_is_empty() {
        let s3 = StubServer::start(vec![listing(&[], &[], None)], listing(&[], &[], None)).await;
        let cfn = StubServer::statuses(&[]).await;
        let payload = request(
            "Delete",
            &cfn.url("/cfn-response?X-Amz-Signature=abc"),
            json!({ "ServiceToken": "arn:x", "BucketName": "inventory-archive-dev-123" }),
        );
        let sender = ResponseSender::new().expect("sender");

        handle(payload, &budget(), &client(s3.endpoint()), &sender)
            .await
            .expect("answered");

        let answer = cfn.next_request().await.json();
        assert_eq!(answer["Status"], "SUCCESS");
        assert_eq!(answer["PhysicalResourceId"], "inventory-archive-dev-123");
        assert_eq!(answer["Data"]["BucketName"], "inventory-archive-dev-123");
        assert_eq!(s3.received().len(), 1);
    }

    #[tokio::test]
    async fn cloudformation_hears_failed_with_the_reason_when_the_bucket_cannot_be_emptied() {
        let s3 = StubServer::always(
            403,
            &[("content-type", "application/xml")],
            "<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
        )
        .await;
        let cfn = StubServer::statuses(&[]).await;
        let payload = request(
            "Delete",
            &cfn.url("/cfn-response"),
            json!({ "ServiceToken": "arn:x", "BucketName": "locked" }),
        );
        let sender = ResponseSender::new().expect("sender");

        handle(payload, &budget(), &client(s3.endpoint()), &sender)
            .await
            .expect("answered, with a failure");

        let answer = cfn.next_request().await.json();
        assert_eq!(answer["Status"], "FAILED");
        let reason = answer["Reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(ErrorKind::Misconfigured.name()),
            "{reason}"
        );
        assert!(
            reason.contains("ListObjectVersions on locked failed"),
            "{reason}"
        );
    }
}
