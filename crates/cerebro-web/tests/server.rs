//! The one server's limits, on 127.0.0.1 with a trivial router.

use axum::routing::get;
use cerebro_web::daemon::{spawn_server_with, ServerLimits};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server with `limits` answering `GET /` with "hi"; its address.
async fn serve(limits: ServerLimits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/", get(|| async { "hi" }));
    spawn_server_with(listener, app, std::future::pending(), limits);
    address
}

/// Reads until the server closes; `None` if it has not after `wait`.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut seen))
        .await
        .ok()
        .map(|_| seen)
}

#[tokio::test]
async fn a_half_sent_request_is_disconnected() {
    let timeout = Duration::from_millis(300);
    let address = serve(ServerLimits {
        header_read_timeout: timeout,
        ..ServerLimits::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let closed = read_until_closed(&mut stream, Duration::from_secs(20)).await;
    assert!(closed.is_some(), "still open after {:?}", started.elapsed());

    // A connection that never sends anything goes the same way.
    let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
    assert!(read_until_closed(&mut idle, Duration::from_secs(20))
        .await
        .is_some());

    // A whole request is still answered.
    let mut whole = tokio::net::TcpStream::connect(address).await.unwrap();
    whole
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut whole, Duration::from_secs(20))
        .await
        .expect("answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hi"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_their_turn() {
    let address = serve(ServerLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(2),
        ..ServerLimits::default()
    })
    .await;
    // Two silent connections take both slots...
    let mut first = tokio::net::TcpStream::connect(address).await.unwrap();
    let _second = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so a third is not served until they are dropped by the server.
    let mut third = tokio::net::TcpStream::connect(address).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "served beyond the cap");
    assert!(read_until_closed(&mut first, Duration::from_secs(20))
        .await
        .is_some());
    let answer = read_until_closed(&mut third, Duration::from_secs(20))
        .await
        .expect("served once a slot is free");
    assert!(String::from_utf8_lossy(&answer).ends_with("i"));
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let address = serve(ServerLimits::default()).await;
    for path in ["/", "/nowhere", "/assets/cerebro.css", "/assets/cerebro.js"] {
        let response = reqwest_like_get(address, path).await;
        for header in [
            "content-security-policy: default-src 'self'; script-src 'self';",
            "x-frame-options: DENY",
            "x-content-type-options: nosniff",
            "referrer-policy: same-origin",
        ] {
            assert!(
                response
                    .to_ascii_lowercase()
                    .contains(&header.to_ascii_lowercase()),
                "{path}: {header}\n{response}"
            );
        }
    }
}

/// The raw answer to `GET path` (head and body).
async fn reqwest_like_get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(20))
        .await
        .expect("answered");
    String::from_utf8_lossy(&answer).to_string()
}
