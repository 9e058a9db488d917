//! SDK configuration pointed at a server on loopback (a [`crate::stub_http::StubServer`], or
//! moto): one region, dummy credentials, and whatever endpoint the test gives.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

/// For a stub that answers each request from a script: no retries, so each call takes exactly
/// the answers the test wrote for it. Every SDK's client builds from it
/// (`aws_sdk_sfn::Client::new(&config)`).
pub fn stub_sdk_config(endpoint: &str) -> SdkConfig {
    loopback(endpoint, RetryConfig::disabled())
}

/// The configuration for a server at `endpoint` on loopback, retrying as `retry` says.
pub(crate) fn loopback(endpoint: &str, retry: RetryConfig) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "loopback",
        )))
        .endpoint_url(endpoint)
        .retry_config(retry)
        .build()
}
