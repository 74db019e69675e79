//! What the gateway's end-to-end tests share. Each test file opens with the same preamble:
//! the lint allowances test code needs (`#![allow(clippy::unwrap_used, …)]`), then
//! `mod common;` and a `use` of the parts it drives:
//! - `console`: the approval console over raw HTTP, sign-in, an approvers file;
//! - `fuzz`: the fuzz tests' seeded generator and their knobs;
//! - `gateway`: `mcp-policy gateway` as a real process between the test and a real MCP
//!   server process, and the Python SDK scripts;
//! - `issuer`: the OAuth tests' authorization server (`oidc-provider` on Node);
//! - `http_stack`: the HTTP gateway in front of an upstream, and raw HTTP/1.1 to it;
//! - `redis_cluster`: a real local Redis Cluster (three masters, three replicas);
//! - `redis_server`: a real `redis-server` on a free port, stopped when dropped.

// Not every test file uses every helper; helpers fail a test the way tests do.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod console;
pub mod fuzz;
pub mod gateway;
pub mod http_stack;
pub mod issuer;
#[path = "../../../tests/common/redis_cluster.rs"]
pub mod redis_cluster;
#[path = "../../../tests/common/redis_server.rs"]
pub mod redis_server;
