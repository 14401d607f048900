//! A minimal, fast Ollama-compatible upstream for the chat gateway's overhead
//! benchmark (`scripts/bench-chat.sh`): `POST /api/chat` answers a fixed reply
//! at once, so that what a load generator measures through the gateway, minus
//! what it measures here directly, is the gateway's own cost. It is the raw
//! HTTP/1.1 server the tests' fake providers are built on
//! (`tests/support/http.rs`), keeping connections alive.
//!
//! Usage: `cargo run --release --example fake_upstream -- 127.0.0.1:11500`
//! (the address defaults to `127.0.0.1:11500`).

#[allow(dead_code)]
#[path = "../tests/support/http.rs"]
mod http;

use tokio::net::TcpStream;

const REPLY: &str = r#"{"model":"bench","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"ok"},"done":true}"#;

/// Answers every `POST /api/chat` on one connection until the peer closes it.
async fn connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    while let Ok(Some(request)) = http::read_request(&mut stream, &mut buf).await {
        let (status, body) = match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/api/chat") => (200, REPLY),
            _ => (404, r#"{"error":"not found"}"#),
        };
        if http::write_response(&mut stream, status, &[], body)
            .await
            .is_err()
        {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:11500".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("fake upstream listening on {}", listener.local_addr()?);
    http::accept(listener, connection).await;
    Ok(())
}
