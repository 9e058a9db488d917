//! Test doubles shared by the workspace's tests, benchmarks and examples: a canned-answer HTTP
//! server on loopback ([`stub_http`]), free loopback ports, and with their features a proxy in
//! front of a Kinesis endpoint that fails chosen PutRecords entries (`fault-proxy`), a moto
//! server on loopback (`moto`), SDK configuration pointed at either (`aws`), log lines kept in
//! memory (`logs`), a Redis server on loopback with scripted replies (`resp`), the Lambda
//! Runtime API that runs a function's binary on one invocation (`lambda-runtime-api`); a peer
//! that accepts connections and closes them at once, and a way to rerun one test alone in a
//! process of its own.
//!
//! It depends on nothing of the project, so every crate can take it as a dev-dependency,
//! `inventory`'s own unit tests included. Doubles of the project's ports live behind
//! `inventory`'s `test-util` feature instead.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "fault-proxy")]
pub mod fault_proxy;
#[cfg(feature = "lambda-runtime-api")]
pub mod lambda_runtime_api;
#[cfg(feature = "logs")]
pub mod logs;
#[cfg(feature = "moto")]
pub mod moto;
#[cfg(feature = "resp")]
pub mod resp;
pub mod stub_http;

/// A loopback port nothing listens on at the moment of the call: the OS picked it free and the
/// listener that held it is closed again. A server may be started on it (there is a small window
/// in which another process could take it), or a client pointed at it to see a refused
/// connection.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// [`free_port`] as a socket address on 127.0.0.1.
pub fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("the listener's address")
}

/// A loopback peer that accepts every connection and closes it at once: a database or a cache
/// that is there but does not answer, which clients give up on at once (a refused port makes
/// a pool retry until its acquire timeout). Returns its `host:port` and the count of the
/// connections it was offered.
pub fn closing_peer() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("address").to_string();
    let offered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = offered.clone();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (address, offered)
}

/// Runs the test `path` (`module::tests::name`) of the current test binary again, alone, in a
/// child process with `env` added, and returns what it printed: for tests of something that
/// is process-wide (a global log subscriber, TLS roots read from the environment). The test
/// tells the two runs apart by one of the variables of `env`.
pub fn rerun_alone(path: &str, env: &[(&str, &str)]) -> std::process::Output {
    let binary = std::env::current_exe().expect("the test binary");
    std::process::Command::new(binary)
        .args([path, "--exact", "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .expect("the test binary runs again")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_free_port_refuses_connections() {
        let addr = super::free_addr();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} answered"
        );
    }
}
