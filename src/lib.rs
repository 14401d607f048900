//! Policy Mesh: a local-first AI gateway that routes every chat request between a
//! local model and a cloud provider by a declarative YAML policy.
//!
//! The crate is layered so that each stage can be tested and benchmarked alone:
//!
//! - [`policy`]: the policy language: types, loading files, validation with
//!   `path:line:column` errors, the environment overlay and the version hash.
//! - [`compiler`]: a validated policy compiled into one Aho-Corasick automaton,
//!   one regex set and the ordered rule chain.
//! - [`decision`]: deciding a chat request on a compiled policy, with a trace.
//! - [`normalize`]: the Unicode normalization both sides of matching share.
//! - [`reload`]: the live policy, swapped atomically on every valid change.
//! - [`server`]: the HTTP gateway over the live policy.
//! - [`metrics`]: the Prometheus metrics it exports.
//! - [`cli`]: the `policy-mesh` command line.

pub mod chat;
pub mod cli;
pub mod compiler;
pub mod config;
pub mod decision;
pub mod metrics;
pub mod normalize;
pub mod policy;
pub mod reload;
pub mod server;
