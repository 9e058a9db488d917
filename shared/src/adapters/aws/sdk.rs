//! The AWS SDK's configuration, built one way for every function: the SDK's defaults (region,
//! credentials and endpoint from the environment, so `AWS_ENDPOINT_URL` points every client at
//! a local emulator) with timeouts on every call. Each process loads it once, in `main`, and
//! builds its clients on it.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use std::time::Duration;

/// The longest one attempt of an AWS call may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest an AWS call may take, its retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// The SDK's defaults at the latest behaviour version: what every process starts from. A
/// function adds [`timeouts`] ([`sdk_config`]); the CLI adds its own region, endpoint and
/// credentials.
pub fn config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
}

/// A hung call must come back as a transient error (its chunk or request is reported and
/// retried) long before the function's own timeout fails the whole invocation. The SDK's
/// default connect timeout stays.
pub fn timeouts() -> TimeoutConfig {
    timeouts_of(ATTEMPT_TIMEOUT, OPERATION_TIMEOUT)
}

fn timeouts_of(attempt: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build()
}

/// The configuration a function loads once per process: the SDK's defaults from the
/// environment, with [`timeouts`].
pub async fn sdk_config() -> SdkConfig {
    config_loader().timeout_config(timeouts()).load().await
}

/// The longest one attempt may take in the functions that move bulk data within a long budget
/// (schema-migrate's day exports and their read-back, the bucket emptier's 1,000-key deletes),
/// where an attempt cut at [`ATTEMPT_TIMEOUT`] would fail work that was progressing.
pub const BULK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a bulk call may take, its retries included.
pub const BULK_OPERATION_TIMEOUT: Duration = Duration::from_secs(180);

/// [`sdk_config`] with the bulk functions' timeouts.
pub async fn bulk_sdk_config() -> SdkConfig {
    config_loader()
        .timeout_config(timeouts_of(BULK_ATTEMPT_TIMEOUT, BULK_OPERATION_TIMEOUT))
        .load()
        .await
}

/// An S3 client on `sdk`. With an endpoint override (`AWS_ENDPOINT_URL`, a local emulator) it
/// addresses buckets by path, since `bucket.127.0.0.1` names no host.
#[cfg(feature = "s3-client")]
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_loaded_configuration_keeps_the_timeouts_and_the_sdks_connect_timeout() {
        let sdk = config_loader()
            .timeout_config(timeouts())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .load()
            .await;
        let t = sdk.timeout_config().expect("timeouts");
        assert_eq!(t.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_timeout(), Some(OPERATION_TIMEOUT));
        assert!(t.connect_timeout().is_some(), "the SDK's default stays");
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:1"));
    }

    #[tokio::test]
    async fn a_function_gets_the_per_call_timeouts() {
        let sdk = sdk_config().await;
        let t = sdk.timeout_config().expect("timeouts");
        assert_eq!(t.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_timeout(), Some(OPERATION_TIMEOUT));
    }

    #[cfg(feature = "s3-client")]
    #[tokio::test]
    async fn with_an_endpoint_override_buckets_are_addressed_by_path() {
        let stub = test_support::stub_http::StubServer::always(200, &[], "").await;
        let sdk = test_support::aws::stub_sdk_config(stub.endpoint());

        s3_client(&sdk)
            .head_object()
            .bucket("archive-test")
            .key("raw/k.gz")
            .send()
            .await
            .expect("the stub answers 200");

        let request = stub.next_request().await;
        assert_eq!(request.method(), "HEAD");
        assert!(
            request.target().starts_with("/archive-test/raw/k.gz"),
            "{}",
            request.target()
        );
    }

    #[tokio::test]
    async fn the_bulk_functions_get_the_longer_timeouts() {
        let sdk = bulk_sdk_config().await;
        let t = sdk.timeout_config().expect("timeouts");
        assert_eq!(t.operation_attempt_timeout(), Some(BULK_ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_timeout(), Some(BULK_OPERATION_TIMEOUT));
    }
}
