//! A canned-answer HTTP/1.1 server on loopback: it answers each request with the next of its
//! answers and keeps every request it received, for the tests of HTTP clients (the AWS SDK
//! against a stub endpoint, a CloudFormation `ResponseURL`).
//!
//! It speaks just enough HTTP for one request per connection: the head, then as many body
//! bytes as `content-length` says, then the answer with `connection: close`. Connections are
//! served one after another, so answers go out in the order requests arrive.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One answer: a status, headers and a body (`content-length` and `connection: close` are
/// added).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// `status` with no headers and an empty body.
    pub fn status(status: u16) -> Self {
        Self::new(status, &[], "")
    }

    pub fn new(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        Self {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_owned(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} Stub\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `PUT /path?query HTTP/1.1`, as sent.
    pub request_line: String,
    /// The header lines, as sent, separated by `\r\n`.
    pub headers: String,
    pub body: Vec<u8>,
}

impl Received {
    /// The method, as sent (`PUT`).
    pub fn method(&self) -> &str {
        self.request_line.split(' ').next().unwrap_or("")
    }

    /// The path and query, as sent.
    pub fn target(&self) -> &str {
        self.request_line.split(' ').nth(1).unwrap_or("")
    }

    /// The value of the first header called `name` (any case), trimmed; `Some("")` for a header
    /// sent empty.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body as JSON; `Value::Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The server. It runs on the test's runtime and stops with it.
#[derive(Debug)]
pub struct StubServer {
    endpoint: String,
    log: Arc<Mutex<Vec<Received>>>,
    arrivals: tokio::sync::Mutex<mpsc::UnboundedReceiver<Received>>,
}

impl StubServer {
    /// Answers every request with `status`, `headers` and `body`.
    pub async fn always(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        Self::start(Vec::new(), Answer::new(status, headers, body)).await
    }

    /// Answers with each of `statuses` in turn (empty bodies), then with 200.
    pub async fn statuses(statuses: &[u16]) -> Self {
        Self::start(
            statuses.iter().map(|s| Answer::status(*s)).collect(),
            Answer::status(200),
        )
        .await
    }

    /// Answers with each of `answers` in turn, then with `then` to every later request.
    pub async fn start(answers: Vec<Answer>, then: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let kept = log.clone();
        let mut answers = VecDeque::from(answers);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let request = read_request(&mut socket).await;
                // Kept before it is answered: a client that has its answer finds it here.
                kept.lock().expect("lock").push(request.clone());
                let _ = tx.send(request);
                let answer = answers.pop_front().unwrap_or_else(|| then.clone());
                let _ = socket.write_all(&answer.to_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        Self {
            endpoint,
            log,
            arrivals: tokio::sync::Mutex::new(rx),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `path` (with its query) on this server: `url("/cb?sig=1")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("lock").clone()
    }

    /// The next request not yet taken with this method, waiting for it if need be.
    pub async fn next_request(&self) -> Received {
        self.arrivals
            .lock()
            .await
            .recv()
            .await
            .expect("the stub server stopped")
    }
}

/// The head, then as many body bytes as `content-length` says (fewer if the peer stops).
async fn read_request(socket: &mut TcpStream) -> Received {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, body_start, length) = loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break (String::from_utf8_lossy(&buf).into_owned(), buf.len(), 0);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            break (head, end + 4, length);
        }
    };
    while buf.len() < body_start + length {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf.len().min(body_start + length);
    let (request_line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    Received {
        request_line: request_line.to_owned(),
        headers: headers.to_owned(),
        body: buf[body_start.min(end)..end].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(endpoint: &str, path: &str, body: &str) -> String {
        let addr = endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type:\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn answers_go_out_in_turn_and_every_request_is_kept_whole() {
        let stub = StubServer::statuses(&[500, 503]).await;
        let mut statuses = Vec::new();
        for n in 0..3 {
            let answer = put(stub.endpoint(), "/r?X-Sig=a", &format!("{{\"n\":{n}}}")).await;
            statuses.push(answer.split(' ').nth(1).unwrap_or("").to_owned());
            assert!(answer.contains("content-length: 0\r\n"), "{answer}");
        }
        assert_eq!(statuses, ["500", "503", "200"]);

        let first = stub.next_request().await;
        assert_eq!(first.method(), "PUT");
        assert_eq!(first.target(), "/r?X-Sig=a");
        assert_eq!(first.header("content-type"), Some(""));
        assert_eq!(first.header("CONTENT-LENGTH"), Some("7"));
        assert_eq!(first.header("x-missing"), None);
        assert_eq!(first.json()["n"], 0);
        assert_eq!(stub.next_request().await.json()["n"], 1);
        assert_eq!(stub.received().len(), 3);
        assert_eq!(stub.received()[2].body, b"{\"n\":2}");
    }

    #[tokio::test]
    async fn a_canned_answer_carries_its_headers_and_body() {
        let stub = StubServer::always(404, &[("etag", "\"abc\"")], "gone").await;
        let answer = put(stub.endpoint(), "/", "").await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        assert!(answer.contains("etag: \"abc\"\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\ngone"), "{answer}");
        assert_eq!(stub.next_request().await.body, b"");
    }
}
