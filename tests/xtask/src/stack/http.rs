//! A small HTTP/1 client and server on hyper, which the workspace already compiles for the
//! AWS SDK: the router serves with it, and the router, poller and demo call with it.

use anyhow::{Context, Result};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

pub type Body = Full<Bytes>;
pub type HttpClient = Client<HttpConnector, Body>;

/// A pooled keep-alive client for loopback calls.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON (HTTP {}): {}", self.status, self.text()))
    }
}

/// Sends one request and reads the whole response.
pub async fn send(client: &HttpClient, req: Request<Body>) -> Result<Reply> {
    let what = format!("{} {}", req.method(), req.uri());
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("{what} failed"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .with_context(|| format!("{what}: reading the body failed"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `POST url` with a JSON body.
pub async fn post_json(client: &HttpClient, url: &str, body: &serde_json::Value) -> Result<Reply> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/json")
        .body(Body::new(Bytes::from(serde_json::to_vec(body)?)))?;
    send(client, req).await
}

/// A response with a body and a content type.
pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert("content-type", v);
    }
    r
}

pub fn respond_json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(body).unwrap_or_default(),
    )
}

/// Serves `handler` on `listener` until the task is aborted. One task per connection.
pub async fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A free TCP port on 127.0.0.1 (the OS picks it; there is a small window before use).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}
