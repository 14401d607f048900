//! What the tests share, reached as `mod support;` from a test binary's root
//! (and, for the raw HTTP server, by path from the benchmarks and examples):
//!
//! - [`http`]: a small HTTP/1.1 server on a raw `TcpListener`, the base of
//!   every fake upstream;
//! - [`fake_providers`]: fake Ollama, OpenAI and Anthropic servers over it
//!   that speak the real wire formats, record what they receive and fail on
//!   demand;
//! - [`server`]: a real gateway on `127.0.0.1:0` over a temporary policy
//!   folder, and waits with a deadline;
//! - [`policies`]: policies built directly in Rust, without the loader.

#![allow(dead_code, clippy::unwrap_used)]

pub mod fake_providers;
pub mod http;
pub mod policies;
pub mod server;
