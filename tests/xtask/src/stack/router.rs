//! The router on the port moto believes is its own (moto runs with `MOTO_PORT` set to it, so
//! the Step Functions interpreter calls Lambda back through here).
//!
//! - `POST /2015-03-31/functions/{name or ARN}/invocations` goes to the Lambda emulator at
//!   `/2015-03-31/functions/{binary}/invocations`. The emulator's HTTP 500 (a function error)
//!   becomes what real Lambda answers: HTTP 200 with `X-Amz-Function-Error: Unhandled` and the
//!   `{"errorType", "errorMessage"}` body, so `Retry`/`Catch` on `errorType` work.
//! - `/_faults` and `/_stats` are the stack's own controls (see [`super::faults`]).
//! - Everything else is proxied to moto on its real port, with the fault switch applied per
//!   AWS service (the signing name in the `Authorization` header).

use super::faults::{Action, FaultSpec, Faults, Target};
use super::http::{self, Body, HttpClient, respond, respond_json};
use super::stats::Stats;
use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the router sends things, and what it knows.
#[derive(Debug)]
pub struct RouterState {
    pub moto_port: u16,
    pub emulator_port: u16,
    /// Function name (as in its ARN) or binary name -> binary name.
    pub functions: BTreeMap<String, String>,
    /// How long an invocation may run before it counts as timed out (the function timeout).
    pub function_timeout: Duration,
    pub faults: Faults,
    pub stats: Arc<Stats>,
    pub client: HttpClient,
}

/// Serves the router on `listener` until the task is aborted.
pub async fn run(listener: tokio::net::TcpListener, state: Arc<RouterState>) {
    http::serve(listener, move |req, _peer| {
        let state = state.clone();
        async move { handle(state, req).await }
    })
    .await;
}

async fn handle(state: Arc<RouterState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if let Some(name) = invocation_target(&path) {
        return invoke(state, &name, req).await;
    }
    if path == "/_faults" || path.starts_with("/_faults/") {
        return faults(&state, req).await;
    }
    if path == "/_stats" {
        if req.method() == Method::DELETE {
            state.stats.reset_timings();
        }
        return respond_json(
            StatusCode::OK,
            &serde_json::to_value(state.stats.snapshot()).unwrap_or_default(),
        );
    }
    proxy(&state, req).await
}

/// The function named in an invocation path, URL-decoded (an ARN comes percent-encoded).
pub fn invocation_target(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/2015-03-31/functions/")?;
    let name = rest.strip_suffix("/invocations")?;
    Some(
        name.replace("%3A", ":")
            .replace("%3a", ":")
            .replace("%24", "$"),
    )
}

/// The function name in a name or ARN (`arn:aws:lambda:r:a:function:NAME[:qualifier]`).
pub fn function_name(name_or_arn: &str) -> &str {
    match name_or_arn.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => name_or_arn.split(':').next().unwrap_or(name_or_arn),
    }
}

fn lambda_error(kind: &str, message: &str) -> Response<Body> {
    let mut r = respond_json(
        StatusCode::OK,
        &json!({ "errorType": kind, "errorMessage": message }),
    );
    r.headers_mut().insert(
        "x-amz-function-error",
        hyper::header::HeaderValue::from_static("Unhandled"),
    );
    r.headers_mut().insert(
        "x-amz-executed-version",
        hyper::header::HeaderValue::from_static("$LATEST"),
    );
    r
}

fn service_error(status: StatusCode, kind: &'static str, message: &str) -> Response<Body> {
    let mut r = respond_json(status, &json!({ "Type": "Service", "message": message }));
    r.headers_mut().insert(
        "x-amzn-errortype",
        hyper::header::HeaderValue::from_static(kind),
    );
    r
}

async fn invoke(state: Arc<RouterState>, name: &str, req: Request<Incoming>) -> Response<Body> {
    let Some(binary) = state.functions.get(function_name(name)).cloned() else {
        return service_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!(
                "Function not found: {name} (the local stack serves {:?})",
                state.functions.keys()
            ),
        );
    };
    let asynchronous = req
        .headers()
        .get("x-amz-invocation-type")
        .is_some_and(|v| v == "Event");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return service_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                &e.to_string(),
            );
        }
    };
    if asynchronous {
        let state = state.clone();
        tokio::spawn(async move { invoke_sync(&state, &binary, body).await });
        let mut r = respond(StatusCode::ACCEPTED, "application/json", Bytes::new());
        r.headers_mut().insert(
            "x-amz-executed-version",
            hyper::header::HeaderValue::from_static("$LATEST"),
        );
        return r;
    }
    invoke_sync(&state, &binary, body).await
}

async fn invoke_sync(state: &RouterState, binary: &str, body: Bytes) -> Response<Body> {
    let started = Instant::now();
    match state.faults.check(Target::Function(binary), &body) {
        Action::Pass => {}
        Action::Fail { error_type, after } => {
            tokio::time::sleep(after).await;
            state.stats.record_function(binary, started.elapsed(), true);
            return lambda_error(
                &error_type,
                &format!("fault injected by the local stack's router into {binary}"),
            );
        }
        Action::Delay(d) => tokio::time::sleep(d).await,
        Action::Timeout => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            state.stats.record_function(binary, started.elapsed(), true);
            return timed_out(state.function_timeout);
        }
    }
    let url = format!(
        "http://127.0.0.1:{}/2015-03-31/functions/{binary}/invocations",
        state.emulator_port
    );
    let req = match Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header("content-type", "application/json")
        .body(Body::new(body))
    {
        Ok(r) => r,
        Err(e) => {
            return service_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &e.to_string(),
            );
        }
    };
    let reply = tokio::time::timeout(state.function_timeout, http::send(&state.client, req)).await;
    let took = started.elapsed();
    match reply {
        Err(_) => {
            state.stats.record_function(binary, took, true);
            timed_out(state.function_timeout)
        }
        Ok(Err(e)) => {
            state.stats.record_function(binary, took, true);
            service_error(
                StatusCode::BAD_GATEWAY,
                "ServiceException",
                &format!("the Lambda emulator failed: {e:#}"),
            )
        }
        Ok(Ok(reply)) if reply.status.is_success() => {
            state.stats.record_function(binary, took, false);
            let mut r = respond(StatusCode::OK, "application/json", reply.body);
            r.headers_mut().insert(
                "x-amz-executed-version",
                hyper::header::HeaderValue::from_static("$LATEST"),
            );
            r
        }
        Ok(Ok(reply)) => {
            state.stats.record_function(binary, took, true);
            // The emulator answers a function error with HTTP 500 and the runtime's error body.
            let (kind, message) = match reply.json() {
                Ok(v) => (
                    v["errorType"].as_str().unwrap_or("Unhandled").to_owned(),
                    v["errorMessage"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| reply.text()),
                ),
                Err(_) => ("Unhandled".to_owned(), reply.text()),
            };
            lambda_error(&kind, &message)
        }
    }
}

fn timed_out(after: Duration) -> Response<Body> {
    lambda_error(
        "Sandbox.Timedout",
        &format!("Task timed out after {:.2} seconds", after.as_secs_f64()),
    )
}

async fn faults(state: &RouterState, req: Request<Incoming>) -> Response<Body> {
    let id: Option<u64> = req
        .uri()
        .path()
        .strip_prefix("/_faults/")
        .and_then(|s| s.parse().ok());
    match *req.method() {
        Method::GET => respond_json(
            StatusCode::OK,
            &serde_json::to_value(state.faults.list()).unwrap_or_default(),
        ),
        Method::DELETE => {
            state.faults.clear(id);
            respond_json(
                StatusCode::OK,
                &json!({ "cleared": id.map_or("all".to_string(), |i| i.to_string()) }),
            )
        }
        Method::POST => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            match serde_json::from_slice::<FaultSpec>(&body) {
                Ok(spec) if spec.function.is_some() || spec.service.is_some() => respond_json(
                    StatusCode::CREATED,
                    &json!({ "id": state.faults.add(spec) }),
                ),
                Ok(_) => respond_json(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": "a fault needs a function or a service" }),
                ),
                Err(e) => respond_json(StatusCode::BAD_REQUEST, &json!({ "error": e.to_string() })),
            }
        }
        _ => respond_json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "use GET, POST or DELETE" }),
        ),
    }
}

/// The AWS service a request is signed for (`Credential=AKID/date/region/SERVICE/aws4_request`).
pub fn signing_service(req: &Request<Incoming>) -> String {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned()
}

async fn proxy(state: &RouterState, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let service = signing_service(&req);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return service_error(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    match state.faults.check(Target::Service(&service), &body) {
        Action::Pass => {}
        Action::Delay(d) => tokio::time::sleep(d).await,
        Action::Fail { .. } | Action::Timeout => {
            state
                .stats
                .record_service(&service, started.elapsed(), true);
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code>\
                       <Message>fault injected by the local stack's router</Message></Error>";
            let mut r = respond(StatusCode::SERVICE_UNAVAILABLE, "application/xml", xml);
            r.headers_mut().insert(
                "x-amzn-errortype",
                hyper::header::HeaderValue::from_static("ServiceUnavailable"),
            );
            return r;
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = format!("http://127.0.0.1:{}{path}", state.moto_port);
    let mut builder = Request::builder().method(parts.method.clone()).uri(uri);
    for (k, v) in &parts.headers {
        builder = builder.header(k, v);
    }
    let Ok(forward) = builder.body(Body::new(body)) else {
        return service_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "could not forward the request",
        );
    };
    match http::send(&state.client, forward).await {
        Ok(reply) => {
            state
                .stats
                .record_service(&service, started.elapsed(), reply.status.is_server_error());
            let mut r = Response::new(Body::new(reply.body));
            *r.status_mut() = reply.status;
            *r.headers_mut() = reply.headers;
            r
        }
        Err(e) => {
            state
                .stats
                .record_service(&service, started.elapsed(), true);
            service_error(
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                &format!("moto did not answer: {e:#}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_arn_in_the_path_names_the_function() {
        let path = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ainventory-persist-local/invocations";
        let target = invocation_target(path).expect("an invocation");
        assert_eq!(function_name(&target), "inventory-persist-local");
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:1:function:validate:$LATEST"),
            "validate"
        );
        assert_eq!(function_name("validate"), "validate");
        assert_eq!(invocation_target("/2015-03-31/functions/x"), None);
    }
}
