//! A minimal, fast Ollama-compatible upstream for the chat gateway's overhead
//! benchmark (`scripts/bench-chat.sh`): `POST /api/chat` answers a fixed reply
//! at once, so that what a load generator measures through the gateway, minus
//! what it measures here directly, is the gateway's own cost.
//!
//! Usage: `cargo run --release --example fake_upstream -- 127.0.0.1:11500`
//! (the address defaults to `127.0.0.1:11500`).

use axum::Router;
use axum::routing::post;

const REPLY: &str = r#"{"model":"bench","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"ok"},"done":true}"#;

async fn chat(
    _body: axum::body::Bytes,
) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        REPLY,
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:11500".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("fake upstream listening on {}", listener.local_addr()?);
    axum::serve(listener, Router::new().route("/api/chat", post(chat))).await
}
