//! The moto server of the integration tests ([`test_support::moto`]), and the S3 client the
//! functions would build on it.

use anyhow::{Context as _, Result};
pub use test_support::moto::{MotoServer, unique_name};

/// S3 on a [`MotoServer`], with the project's own client builder.
pub trait MotoS3 {
    /// An S3 client addressing buckets by path (`http://127.0.0.1:port/bucket/key`), built as
    /// the functions build theirs.
    fn s3_client(&self) -> aws_sdk_s3::Client;

    /// A fresh bucket with a name no other test uses.
    fn create_bucket(&self, purpose: &str) -> impl Future<Output = Result<String>> + Send;
}

impl MotoS3 for MotoServer {
    fn s3_client(&self) -> aws_sdk_s3::Client {
        inventory::adapters::aws::s3_client(&self.sdk_config())
    }

    async fn create_bucket(&self, purpose: &str) -> Result<String> {
        let bucket = unique_name(purpose);
        self.s3_client()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .context("creating a bucket in moto")?;
        Ok(bucket)
    }
}
