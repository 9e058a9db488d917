//! A canned-answer HTTP server on loopback for the adapters' unit tests: it answers every
//! request with the same response and remembers what it was asked.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// One request as received: the request line and the body.
#[derive(Debug, Clone)]
pub struct Received {
    pub request_line: String,
    pub headers: String,
    pub body: Vec<u8>,
}

/// The server; it stops with the test's runtime.
#[derive(Debug)]
pub struct Stub {
    pub endpoint: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Stub {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

/// Serves `status`, `headers` and `body` to every request.
pub async fn serve(status: u16, headers: &[(&str, &str)], body: &str) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let mut response = format!(
        "HTTP/1.1 {status} Stub\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Headers, then as many body bytes as content-length says.
            let (head, body_start, length) = loop {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), 0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse().ok())
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
            let (request_line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
            log.lock().expect("lock").push(Received {
                request_line: request_line.to_owned(),
                headers: headers.to_owned(),
                body: buf[body_start.min(buf.len())..].to_vec(),
            });
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    Stub { endpoint, received }
}
