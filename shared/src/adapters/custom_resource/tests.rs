//! Tests for the custom-resource responder, against a loopback HTTP server standing in for
//! CloudFormation's presigned `ResponseURL`.

use super::*;
use serde_json::json;
use test_support::stub_http::StubServer;

/// A fake `ResponseURL` answering with `statuses` in turn (200 after them).
async fn fake_response_url(statuses: &[u16]) -> (String, StubServer) {
    let stub = StubServer::statuses(statuses).await;
    (stub.url("/cfn-response?X-Amz-Signature=abc"), stub)
}

/// The JSON body of the next response the fake `ResponseURL` received.
async fn next_body(stub: &StubServer) -> Value {
    serde_json::from_slice(&stub.next_request().await.body).expect("json body")
}

fn request(kind: &str, url: &str) -> Value {
    let mut v = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:bucket-emptier-dev",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/inventory-dev/guid",
        "RequestId": "5d478078-13e9-baf0-464a-7ef285ecc786",
        "ResourceType": "Custom::BucketEmptier",
        "LogicalResourceId": "ArchiveBucketEmptier",
        "ResourceProperties": { "ServiceToken": "arn:x", "BucketName": "inventory-archive-dev-123" }
    });
    if kind != "Create" {
        v["PhysicalResourceId"] = json!("inventory-archive-dev-123");
    }
    if kind == "Update" {
        v["OldResourceProperties"] = json!({ "BucketName": "old" });
    }
    v
}

fn budget(secs: u64) -> Budget {
    Budget {
        time_left: Duration::from_secs(secs),
        log_stream: "2025/01/01/[$LATEST]abc".into(),
    }
}

fn sender() -> ResponseSender {
    ResponseSender::new().expect("sender").with_quick_retries()
}

#[test]
fn a_create_request_is_read_with_its_properties_and_no_physical_id() {
    let event = CustomResourceEvent::from_value(request("Create", "https://x")).expect("valid");
    assert_eq!(event.kind, RequestKind::Create);
    assert_eq!(event.physical_resource_id, None);
    assert_eq!(
        event.property("BucketName").expect("present"),
        "inventory-archive-dev-123"
    );
    let missing = event.property("Nope").expect_err("absent");
    assert!(missing.message.contains("Nope"));
    assert_eq!(
        event.default_physical_id(),
        "ArchiveBucketEmptier-5d47807813e9"
    );
}

#[test]
fn an_update_keeps_the_physical_id_cloudformation_has_and_sees_the_old_properties() {
    let event = CustomResourceEvent::from_value(request("Update", "https://x")).expect("valid");
    assert_eq!(event.kind, RequestKind::Update);
    assert_eq!(event.default_physical_id(), "inventory-archive-dev-123");
    assert_eq!(event.old_properties, Some(json!({ "BucketName": "old" })));
}

#[test]
fn a_long_reason_is_cut_to_the_limit_on_a_character_boundary() {
    let event = CustomResourceEvent::from_value(request("Delete", "https://x")).expect("valid");
    let reason = "é".repeat(2000);
    let response = Response::failure(&event, &reason);
    assert!(response.reason.len() <= MAX_REASON_BYTES);
    assert!(response.reason.ends_with("..."));
    assert_eq!(response.physical_resource_id, "inventory-archive-dev-123");
}

#[tokio::test]
async fn successful_work_is_answered_with_success_its_id_and_its_data() {
    let (url, received) = fake_response_url(&[]).await;
    let sent = respond(
        request("Create", &url),
        &budget(60),
        &sender(),
        |event| async move {
            let bucket = event.property("BucketName")?.to_owned();
            Ok(Outcome {
                physical_resource_id: Some(bucket.clone()),
                data: [("Bucket".to_owned(), bucket)].into(),
            })
        },
    )
    .await
    .expect("answered");

    let request = received.next_request().await;
    assert_eq!(sent.status, Status::Success);
    assert_eq!(
        request.request_line,
        "PUT /cfn-response?X-Amz-Signature=abc HTTP/1.1"
    );
    assert_eq!(
        request.header("content-type"),
        Some(""),
        "{}",
        request.headers
    );
    let got = request.json();
    assert_eq!(got["Status"], "SUCCESS");
    assert_eq!(got["PhysicalResourceId"], "inventory-archive-dev-123");
    assert_eq!(got["Data"]["Bucket"], "inventory-archive-dev-123");
    assert_eq!(got["RequestId"], "5d478078-13e9-baf0-464a-7ef285ecc786");
    assert_eq!(got["LogicalResourceId"], "ArchiveBucketEmptier");
}

#[tokio::test]
async fn failing_work_is_answered_with_failed_the_error_name_and_the_log_stream() {
    let (url, received) = fake_response_url(&[]).await;
    respond(request("Delete", &url), &budget(60), &sender(), |_| async {
        Err(PipelineError::new(
            ErrorKind::DependencyUnavailable,
            "S3 said no",
        ))
    })
    .await
    .expect("answered");

    let got = next_body(&received).await;
    assert_eq!(got["Status"], "FAILED");
    let reason = got["Reason"].as_str().expect("reason");
    assert!(
        reason.contains("Inventory.DependencyUnavailable: S3 said no"),
        "{reason}"
    );
    assert!(reason.contains("[$LATEST]abc"), "{reason}");
    assert_eq!(got["PhysicalResourceId"], "inventory-archive-dev-123");
}

#[tokio::test]
async fn panicking_work_is_answered_with_failed() {
    let (url, received) = fake_response_url(&[]).await;
    respond(request("Delete", &url), &budget(60), &sender(), |_| async {
        if true {
            panic!("bug in the handler");
        }
        Ok(Outcome::default())
    })
    .await
    .expect("answered");

    let got = next_body(&received).await;
    assert_eq!(got["Status"], "FAILED");
    assert!(
        got["Reason"]
            .as_str()
            .expect("reason")
            .contains("Inventory.Internal")
    );
}

#[tokio::test]
async fn work_that_runs_out_of_time_is_answered_with_failed_before_the_deadline() {
    let (url, received) = fake_response_url(&[]).await;
    let tight = Budget {
        time_left: Budget::RESPONSE_MARGIN + Duration::from_millis(200),
        log_stream: String::new(),
    };
    let started = std::time::Instant::now();
    respond(request("Delete", &url), &tight, &sender(), |_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Outcome::default())
    })
    .await
    .expect("answered");

    let got = next_body(&received).await;
    assert_eq!(got["Status"], "FAILED");
    assert!(
        got["Reason"]
            .as_str()
            .expect("reason")
            .contains("did not finish")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_malformed_request_that_has_a_response_url_is_answered_with_failed() {
    let (url, received) = fake_response_url(&[]).await;
    let payload = json!({ "RequestType": "Delete", "ResponseURL": url, "RequestId": "r-1", "LogicalResourceId": "X" });
    let mut ran = false;
    respond(payload, &budget(60), &sender(), |_| {
        ran = true;
        async { Ok(Outcome::default()) }
    })
    .await
    .expect("answered");

    let got = next_body(&received).await;
    assert!(!ran, "the work must not run on a malformed request");
    assert_eq!(got["Status"], "FAILED");
    assert_eq!(got["RequestId"], "r-1");
    assert!(
        got["Reason"]
            .as_str()
            .expect("reason")
            .contains("Inventory.InvalidPayload")
    );
}

#[tokio::test]
async fn a_payload_without_a_response_url_is_an_error_because_nobody_can_be_answered() {
    let e = respond(
        json!({ "RequestType": "Create" }),
        &budget(60),
        &sender(),
        |_| async { Ok(Outcome::default()) },
    )
    .await
    .expect_err("nothing to answer");
    assert_eq!(e.kind, ErrorKind::InvalidPayload);
}

#[tokio::test]
async fn a_server_error_at_the_response_url_is_retried_until_delivered() {
    let (url, received) = fake_response_url(&[500]).await;
    respond(request("Create", &url), &budget(60), &sender(), |_| async {
        Ok(Outcome::default())
    })
    .await
    .expect("delivered on the second attempt");

    assert_eq!(next_body(&received).await["Status"], "SUCCESS");
    assert_eq!(next_body(&received).await["Status"], "SUCCESS");
}

#[tokio::test]
async fn an_unreachable_response_url_is_a_transient_error() {
    let addr = test_support::free_addr(); // nothing listens there
    let e = respond(
        request("Create", &format!("http://{addr}/x")),
        &budget(60),
        &sender(),
        |_| async { Ok(Outcome::default()) },
    )
    .await
    .expect_err("undeliverable");
    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert!(e.message.contains("after 3 attempts"), "{}", e.message);
}

#[tokio::test]
async fn a_response_url_that_never_answers_is_given_up_after_each_attempts_timeout() {
    // Accepts connections and keeps them open without a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let sender = sender().with_attempt_timeout(Duration::from_secs(1));
    let started = std::time::Instant::now();

    let e = respond(
        request("Create", &format!("http://{addr}/x")),
        &budget(60),
        &sender,
        |_| async { Ok(Outcome::default()) },
    )
    .await
    .expect_err("no answer");

    assert_eq!(e.kind, ErrorKind::DependencyUnavailable);
    assert_eq!(
        e.message,
        "could not deliver the response after 3 attempts: no answer within 1s"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "three attempts of a second each"
    );
}

#[test]
fn the_sender_shows_its_attempts_and_nothing_else() {
    let shown = format!("{:?}", sender());
    assert_eq!(shown, "ResponseSender { attempts: 3, .. }");
}

/// Set in the process that [`without_root_certificates_the_sender_is_a_configuration_error`]
/// starts, whose environment names a certificate file that does not exist.
const NO_ROOTS: &str = "INVENTORY_NO_ROOT_CERTIFICATES";

#[test]
fn without_root_certificates_the_sender_is_a_configuration_error() {
    if std::env::var_os(NO_ROOTS).is_some() {
        let e = ResponseSender::new().expect_err("no roots");
        assert_eq!(e.kind, ErrorKind::Misconfigured);
        assert_eq!(e.message, "no TLS root certificates");
        return;
    }
    let out = test_support::rerun_alone(
        "adapters::custom_resource::tests::without_root_certificates_the_sender_is_a_configuration_error",
        &[
            (NO_ROOTS, "1"),
            ("SSL_CERT_FILE", "/nonexistent/roots.pem"),
            ("SSL_CERT_DIR", "/nonexistent/certs"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[tokio::test]
async fn an_unknown_request_type_is_answered_with_failed_and_runs_no_work() {
    let (url, received) = fake_response_url(&[]).await;
    let mut payload = request("Update", &url);
    payload["RequestType"] = json!("Frobnicate");
    let mut ran = false;

    respond(payload, &budget(60), &sender(), |_| {
        ran = true;
        async { Ok(Outcome::default()) }
    })
    .await
    .expect("answered");

    let got = next_body(&received).await;
    assert!(!ran, "an unknown request type must not run the work");
    assert_eq!(got["Status"], "FAILED");
    assert_eq!(got["RequestId"], "5d478078-13e9-baf0-464a-7ef285ecc786");
    assert_eq!(
        got["PhysicalResourceId"], "inventory-archive-dev-123",
        "the id CloudFormation has is kept"
    );
    assert!(
        got["Reason"]
            .as_str()
            .expect("reason")
            .contains("Inventory.InvalidPayload"),
        "{}",
        got
    );
}

#[tokio::test]
async fn fields_of_the_wrong_type_are_answered_with_failed_when_the_url_is_usable() {
    let (url, received) = fake_response_url(&[]).await;
    let mut payload = request("Create", &url);
    payload["RequestId"] = json!(42);
    payload["ResourceProperties"] = json!("not an object");

    respond(payload, &budget(60), &sender(), |_| async {
        Ok(Outcome::default())
    })
    .await
    .expect("answered");

    let got = next_body(&received).await;
    assert_eq!(got["Status"], "FAILED");
}

#[tokio::test]
async fn payloads_with_no_usable_response_url_are_errors_never_panics() {
    for payload in [
        Value::Null,
        json!([]),
        json!("Create"),
        json!(7),
        json!({}),
        json!({ "RequestType": "Delete", "ResponseURL": 42 }),
        json!({ "RequestType": "Delete", "ResponseURL": null }),
        json!({ "RequestType": "Delete", "ResponseURL": "" }),
        json!({ "RequestType": "Delete", "ResponseURL": "not a url" }),
        json!({ "RequestType": "Delete", "ResponseURL": "ftp://example.com/x" }),
    ] {
        let mut ran = false;
        let outcome = respond(payload.clone(), &budget(60), &sender(), |_| {
            ran = true;
            async { Ok(Outcome::default()) }
        })
        .await;

        let e = outcome.expect_err(&payload.to_string());
        assert!(!ran, "{payload}");
        assert!(!e.message.is_empty(), "{payload}");
    }
}

#[tokio::test]
async fn a_response_url_that_is_not_a_url_is_a_permanent_error_sent_nowhere() {
    let event = CustomResourceEvent::from_value(request("Create", "http://127.0.0.1:9/x"))
        .expect("request");
    let e = sender()
        .send("not a url at all", &Response::failure(&event, "boom"))
        .await
        .expect_err("unusable URL");
    assert_eq!(e.kind, ErrorKind::InvalidPayload);
    assert!(!e.is_transient(), "retrying cannot fix the URL");
    assert!(e.detailed().contains("ResponseURL"), "{}", e.detailed());
}

#[test]
fn the_budget_is_the_time_to_the_deadline_less_the_margin_kept_for_the_response() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let b = Budget::from_deadline_ms(now_ms + 60_000, "stream");
    assert_eq!(b.log_stream, "stream");
    assert!(
        b.time_left <= Duration::from_secs(60) && b.time_left > Duration::from_secs(55),
        "{:?}",
        b.time_left
    );
    assert!(b.for_work() <= Duration::from_secs(50) && b.for_work() > Duration::from_secs(45));

    // A deadline already passed (or closer than the margin) leaves no time, never a panic.
    let late = Budget::from_deadline_ms(now_ms.saturating_sub(1_000), "stream");
    assert_eq!(late.time_left, Duration::ZERO);
    assert_eq!(
        Budget::from_deadline_ms(now_ms + 5_000, "s").for_work(),
        Duration::ZERO
    );
}
