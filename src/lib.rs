//! BunBase Functions: a serverless function runner that executes TypeScript and
//! JavaScript functions in long-lived Bun workers, serves them over HTTP, and is driven
//! over a Unix socket by the `functions` CLI.
//!
//! The binary is a thin layer over this library; [`client::Client`] is the socket API's
//! client for other Rust programs.

pub mod api;
pub mod bundler;
pub mod cli;
pub mod client;
pub mod config;
pub mod deploy;
pub mod gateway;
pub mod metrics;
pub mod observe;
pub mod pool;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod signals;
pub mod store;
pub mod stream;
pub mod watch;
pub mod worker;
