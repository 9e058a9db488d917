//! Emptying a bucket: every object version and delete marker, page by page
//! (ListObjectVersions, then DeleteObjects of up to 1,000 keys), listing again until a pass
//! finds nothing.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use inventory::adapters::aws;
use inventory::{ErrorKind, PipelineError};

/// Full listings before we give up on a bucket that keeps getting new objects.
pub const MAX_PASSES: u32 = 5;
/// The most keys DeleteObjects takes at once.
const DELETE_BATCH: usize = 1000;

/// What emptying did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emptied {
    /// Object versions and delete markers removed.
    pub deleted: u64,
    /// Full listings made; the last one found nothing.
    pub passes: u32,
}

/// Deletes every version and delete marker, listing again until a pass finds nothing. A
/// bucket that no longer exists counts as empty.
#[tracing::instrument(skip(s3))]
pub async fn empty_bucket(s3: &Client, bucket: &str) -> Result<Emptied, PipelineError> {
    let mut deleted = 0;
    for pass in 1..=MAX_PASSES {
        let removed = delete_one_pass(s3, bucket).await?;
        deleted += removed;
        if removed == 0 {
            return Ok(Emptied {
                deleted,
                passes: pass,
            });
        }
    }
    Err(PipelineError::new(
        ErrorKind::Conflict,
        format!(
            "bucket {bucket} still had objects after {MAX_PASSES} passes: is something still writing to it?"
        ),
    ))
}

/// One full listing, deleting each page as it comes. Returns how many entries it removed.
async fn delete_one_pass(s3: &Client, bucket: &str) -> Result<u64, PipelineError> {
    let (mut key_marker, mut version_marker) = (None, None);
    let mut removed = 0u64;
    loop {
        let page = match s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
        {
            Ok(page) => page,
            Err(e) if e.code() == Some("NoSuchBucket") => return Ok(removed),
            Err(e) => return Err(s3_error("ListObjectVersions", bucket, &e)),
        };
        let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
        let markers = page
            .delete_markers()
            .iter()
            .map(|m| (m.key(), m.version_id()));
        let ids = versions
            .chain(markers)
            .filter_map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(key?)
                    .set_version_id(version.map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        for batch in ids.chunks(DELETE_BATCH) {
            delete_batch(s3, bucket, batch.to_vec()).await?;
            removed += batch.len() as u64;
        }
        if page.is_truncated() != Some(true) {
            return Ok(removed);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
}

async fn delete_batch(
    s3: &Client,
    bucket: &str,
    ids: Vec<ObjectIdentifier>,
) -> Result<(), PipelineError> {
    let delete = Delete::builder()
        .set_objects(Some(ids))
        .quiet(true)
        .build()
        .map_err(|e| {
            PipelineError::with_source(ErrorKind::Internal, "could not build DeleteObjects", e)
        })?;
    let out = s3
        .delete_objects()
        .bucket(bucket)
        .delete(delete)
        .send()
        .await
        .map_err(|e| s3_error("DeleteObjects", bucket, &e))?;
    batch_error(bucket, out.errors()).map_or(Ok(()), Err)
}

/// The error for the keys DeleteObjects could not delete, if any: its kind from the shared
/// classifier, by the code of the first entry that retrying does not fix (or, when every
/// entry is worth another try, the first entry).
fn batch_error(bucket: &str, errors: &[aws_sdk_s3::types::Error]) -> Option<PipelineError> {
    let classified = errors
        .iter()
        .map(|e| (e, aws::classify_code(e.code(), 200)));
    let (named, kind) = classified
        .clone()
        .find(|(_, kind)| !kind.is_transient())
        .or_else(|| classified.clone().next())?;
    Some(PipelineError::new(
        kind,
        format!(
            "DeleteObjects on {bucket} failed for {} keys, such as {:?}: {} {}",
            errors.len(),
            named.key().unwrap_or_default(),
            named.code().unwrap_or_default(),
            named.message().unwrap_or_default()
        ),
    ))
}

fn s3_error<E: aws::OperationError>(
    operation: &str,
    bucket: &str,
    e: &SdkError<E>,
) -> PipelineError {
    aws::pipeline_error(format_args!("{operation} on {bucket} failed"), e)
}

#[cfg(test)]
#[path = "empty_tests.rs"]
pub(crate) mod tests;
