//! The command line: parse the subcommand, dispatch, and say how it went as an exit code.
//!
//! Exit codes: 0 success; 1 the command ran and failed (or `serve` had to cut off
//! invocations at shutdown); 2 bad usage or configuration.

mod serve;

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

const USAGE: &str = "\
functions: run TypeScript/JavaScript functions in Bun workers

Usage:
  functions serve [options]    run the server (see `functions serve --help`)
  functions --version          print the version
  functions --help             print this help
";

#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Config(crate::config::ConfigError),
    Serve(crate::server::ServeError),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) => write!(f, "{message}"),
            CliError::Config(e) => write!(f, "{e}"),
            CliError::Serve(e) => write!(f, "{e}"),
        }
    }
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) | CliError::Config(_) => ExitCode::from(2),
            CliError::Serve(_) => ExitCode::from(1),
        }
    }
}

pub fn run(args: Vec<OsString>) -> Result<ExitCode, CliError> {
    let mut args = pico_args::Arguments::from_vec(args);
    if args.contains(["-V", "--version"]) {
        println!("functions {}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    match args
        .subcommand()
        .map_err(|e| CliError::Usage(e.to_string()))?
        .as_deref()
    {
        Some("serve") => serve::run(args),
        Some("help") | None => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(CliError::Usage(format!(
            "unknown command {other:?}; try `functions --help`"
        ))),
    }
}
