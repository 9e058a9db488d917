//! A Redis server on loopback that answers each command with the next of its scripted replies
//! and keeps every command it received, for the tests of Redis clients without Redis.
//!
//! It reads RESP2 requests (arrays of bulk strings) on any number of connections and answers
//! them in the order they arrive. The client library's `CLIENT SETINFO` handshake is answered
//! `+OK` by the stub itself: it takes no scripted reply and is not kept. When the replies run
//! out, every further command is answered with an error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One scripted reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// `-<message>`: the first word is the error code (`NOSCRIPT ...`, `BUSY ...`).
    Error(String),
    Int(i64),
    /// A bulk string, or the nil bulk string.
    Bulk(Option<String>),
    Array(Vec<Reply>),
    /// No answer at all, to this command or any later one on its connection: a hung server.
    Silence,
}

impl Reply {
    pub fn error(message: &str) -> Self {
        Self::Error(message.to_owned())
    }

    pub fn bulk(text: &str) -> Self {
        Self::Bulk(Some(text.to_owned()))
    }

    pub fn nil() -> Self {
        Self::Bulk(None)
    }

    /// An array of integers, what a Lua script returning `{a, b}` answers.
    pub fn ints(values: &[i64]) -> Self {
        Self::Array(values.iter().map(|v| Self::Int(*v)).collect())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Ok => out.extend_from_slice(b"+OK\r\n"),
            Self::Error(message) => out.extend_from_slice(format!("-{message}\r\n").as_bytes()),
            Self::Int(v) => out.extend_from_slice(format!(":{v}\r\n").as_bytes()),
            Self::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Self::Bulk(Some(text)) => {
                out.extend_from_slice(format!("${}\r\n{text}\r\n", text.len()).as_bytes());
            }
            Self::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
            Self::Silence => {}
        }
    }
}

/// The server. It runs on the test's runtime and stops with it.
#[derive(Debug)]
pub struct RespStub {
    url: String,
    commands: Arc<Mutex<Vec<Vec<String>>>>,
}

impl RespStub {
    /// Answers the commands with `replies`, in turn.
    pub async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("redis://{}", listener.local_addr().expect("address"));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let kept = commands.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, kept.clone(), replies.clone()));
            }
        });
        Self { url, commands }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every command received so far (handshake left out), each as its words.
    pub fn commands(&self) -> Vec<Vec<String>> {
        self.commands.lock().expect("lock").clone()
    }
}

async fn serve(
    socket: TcpStream,
    commands: Arc<Mutex<Vec<Vec<String>>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
) {
    let mut socket = BufReader::new(socket);
    while let Some(command) = read_command(&mut socket).await {
        let reply = if command
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("CLIENT"))
        {
            Reply::Ok
        } else {
            commands.lock().expect("lock").push(command);
            replies
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or_else(|| Reply::error("ERR the stub has no more replies"))
        };
        if reply == Reply::Silence {
            std::future::pending::<()>().await;
        }
        let mut out = Vec::new();
        reply.encode(&mut out);
        if socket.get_mut().write_all(&out).await.is_err() {
            return;
        }
    }
}

/// One request: `*<n>`, then `n` bulk strings. `None` when the peer stops or sends anything else.
async fn read_command(socket: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let count: usize = read_header(socket, b'*').await?;
    let mut words = Vec::with_capacity(count);
    for _ in 0..count {
        let len: usize = read_header(socket, b'$').await?;
        let mut word = vec![0u8; len + 2];
        socket.read_exact(&mut word).await.ok()?;
        word.truncate(len);
        words.push(String::from_utf8_lossy(&word).into_owned());
    }
    Some(words)
}

async fn read_header(socket: &mut BufReader<TcpStream>, marker: u8) -> Option<usize> {
    let mut line = Vec::new();
    socket.read_until(b'\n', &mut line).await.ok()?;
    let text = std::str::from_utf8(line.strip_prefix(&[marker])?).ok()?;
    text.trim_end().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn send(stub: &RespStub, request: &[u8], answers: usize) -> String {
        let mut s = TcpStream::connect(stub.url().trim_start_matches("redis://"))
            .await
            .expect("connect");
        s.write_all(request).await.expect("write");
        let mut got = String::new();
        let mut buf = [0u8; 512];
        let read = async {
            while got.matches("\r\n").count() < answers {
                let n = s.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed after {got:?}");
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(5), read)
            .await
            .is_err()
        {
            return format!("no more after {got:?}");
        }
        got
    }

    #[tokio::test]
    async fn replies_go_out_in_turn_and_the_handshake_is_answered_apart() {
        let stub = RespStub::start(vec![
            Reply::Array(vec![Reply::bulk("1|{}"), Reply::nil()]),
            Reply::ints(&[1, -2]),
        ])
        .await;
        let got = send(
            &stub,
            b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETINFO\r\n$1\r\nx\r\n*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n*1\r\n$4\r\nEVAL\r\n*1\r\n$4\r\nPING\r\n",
            9,
        )
        .await;
        assert_eq!(
            got,
            "+OK\r\n*2\r\n$4\r\n1|{}\r\n$-1\r\n*2\r\n:1\r\n:-2\r\n-ERR the stub has no more replies\r\n"
        );
        assert_eq!(
            stub.commands(),
            [vec!["MGET", "a", "b"], vec!["EVAL"], vec!["PING"]]
        );
    }

    #[tokio::test]
    async fn an_error_reply_is_sent_as_given_and_silence_sends_nothing() {
        let stub = RespStub::start(vec![
            Reply::error("NOSCRIPT No matching script"),
            Reply::Silence,
        ])
        .await;
        let got = send(&stub, b"*1\r\n$3\r\nGET\r\n", 1).await;
        assert_eq!(got, "-NOSCRIPT No matching script\r\n");
        let hung = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            send(&stub, b"*1\r\n$3\r\nSET\r\n", 1),
        )
        .await;
        assert!(hung.is_err(), "answered {hung:?}");
        assert_eq!(stub.commands(), [vec!["GET"], vec!["SET"]]);
    }
}
