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
