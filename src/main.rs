//! The `functions` binary: a serverless function runner that executes TypeScript and
//! JavaScript functions in long-lived Bun workers and serves them over HTTP.

mod bundler;
mod cli;
mod config;
mod deploy;
mod gateway;
mod pool;
mod registry;
mod runtime;
mod scheduler;
mod server;
mod signals;
mod store;
mod worker;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run(std::env::args_os().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("functions: {e}");
            e.exit_code()
        }
    }
}
