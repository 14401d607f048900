//! The gateway's tests, one binary with a module per concern, over the shared
//! [`support`] tree. `tests/cli/` holds the command line's, and
//! `tests/alloc.rs` stands alone because it installs a counting allocator.
//!
//! Tests that need a service from outside Rust (PostgreSQL, Chromium, the
//! OpenAI SDK) are `#[ignore]`d with what they need; `.ci/run` provides the
//! services and runs them with `--include-ignored`.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod architecture;
mod audit;
mod auth;
mod chat;
mod completions;
mod compose;
mod engine;
mod examples;
mod fallback;
mod http_api;
mod loader;
mod openai_sdk;
mod openapi;
mod providers;
mod reload;
mod router;
mod schema;
mod serve_binary;
mod ui;
