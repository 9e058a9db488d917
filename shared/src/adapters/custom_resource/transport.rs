//! Sends a custom-resource response: an HTTP PUT of the JSON body to the presigned
//! `ResponseURL` (HTTPS in AWS; plain HTTP is accepted for tests on loopback).

use super::Response;
use crate::error::{ErrorKind, PipelineError};
use backon::{ExponentialBuilder, Retryable};
use http_body_util::Full;
use hyper::Method;
use hyper::body::Bytes;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// An HTTP client for responses, built once per cold start.
pub struct ResponseSender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    attempts: u32,
    attempt_timeout: Duration,
    backoff: Duration,
}

impl std::fmt::Debug for ResponseSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSender")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl ResponseSender {
    /// Three attempts, ten seconds each. TLS with the system's roots (AWS's presigned S3 URL).
    pub fn new() -> Result<Self, PipelineError> {
        // The workspace links both of rustls' providers, so name one instead of relying on a
        // process default.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| {
                PipelineError::with_source(ErrorKind::Misconfigured, "no TLS root certificates", e)
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            attempts: 3,
            attempt_timeout: Duration::from_secs(10),
            backoff: Duration::from_millis(500),
        })
    }

    /// Sends the response, retrying transport failures and non-2xx answers (backon: waits of
    /// `backoff`, then twice that, ...).
    #[tracing::instrument(skip_all, fields(request_id = %response.request_id, status = ?response.status))]
    pub async fn send(&self, url: &str, response: &Response) -> Result<(), PipelineError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| PipelineError::invalid_payload("the ResponseURL is not a valid URL"))?;
        let body = Bytes::from(serde_json::to_vec(response).map_err(|e| {
            PipelineError::with_source(ErrorKind::Internal, "could not serialise the response", e)
        })?);
        let attempt = AtomicU32::new(0);
        let deliver =
            || async {
                let attempt = attempt.fetch_add(1, Ordering::Relaxed) + 1;
                let mut request = hyper::Request::new(Full::new(body.clone()));
                *request.method_mut() = Method::PUT;
                *request.uri_mut() = uri.clone();
                // The presigned URL is signed for an empty content type.
                let headers = request.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(""));
                headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                let failure =
                    match tokio::time::timeout(self.attempt_timeout, self.client.request(request))
                        .await
                    {
                        Ok(Ok(answer)) if answer.status().is_success() => {
                            tracing::info!(attempt, "response delivered to CloudFormation");
                            return Ok(());
                        }
                        Ok(Ok(answer)) => format!("HTTP {}", answer.status()),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {}s", self.attempt_timeout.as_secs()),
                    };
                Err(PipelineError::new(
                    ErrorKind::DependencyUnavailable,
                    format!("could not deliver the response after {attempt} attempts: {failure}"),
                ))
            };
        let schedule = ExponentialBuilder::default()
            .with_min_delay(self.backoff)
            .with_factor(2.0)
            .with_max_times(self.attempts.saturating_sub(1) as usize);
        deliver
            .retry(schedule)
            .sleep(tokio::time::sleep)
            .when(PipelineError::is_transient)
            .notify(|e, wait| {
                tracing::warn!(error = %e.message, ?wait, "response not delivered; retrying");
            })
            .await
    }

    #[cfg(test)]
    pub(super) fn with_quick_retries(mut self) -> Self {
        self.attempt_timeout = Duration::from_secs(2);
        self.backoff = Duration::from_millis(10);
        self
    }

    #[cfg(test)]
    pub(super) fn with_attempt_timeout(mut self, attempt_timeout: Duration) -> Self {
        self.attempt_timeout = attempt_timeout;
        self
    }
}
