//! The command line: `serve` runs the server; every other command is a client of its
//! Unix-socket API. This file picks the command and says how it went as an exit code;
//! `error.rs` holds the one table of exit codes, `args.rs` the argument parsing,
//! `checks.rs` the values several commands share, `connect.rs` finding the server and
//! `output.rs` what goes to stdout. Each command group has a file of its own: `deploy`,
//! `invoke`, `functions` (list, info, rollback, delete, register), `env` and `observe`
//! (logs, metrics, status).

mod args;
mod checks;
mod connect;
mod deploy;
mod env;
mod error;
mod functions;
mod invoke;
mod logs;
mod metrics;
mod observe;
mod output;
mod serve;

use std::ffi::OsString;
use std::process::ExitCode;

use args::{Raw, Spec};
pub use error::CliError;

const USAGE: &str = "\
functions: run TypeScript/JavaScript functions in Bun workers

Usage:
  functions serve [options]              run the server (see `functions serve --help`)
  functions deploy NAME FILE [options]   upload, build and activate a new version
  functions invoke NAME [options]        call a function; its body goes to stdout
  functions list                         every function and its state
  functions info NAME                    versions, settings and workers of a function
  functions rollback NAME [--to V]       serve an earlier version again
  functions delete NAME                  remove a function and its versions
  functions register NAME [options]      register a function without deploying it
  functions env NAME set K=V... | unset K... | list [--reveal]
  functions logs [NAME] [--follow] [--since 10m] [--level L] [--invocation ID]
                                         function output and invocation records
  functions metrics [NAME] [--window 1h] invocations, errors, latency percentiles
  functions status                       server version, uptime and workers
  functions --version | --help

`functions COMMAND --help` shows a command's flags. Every client command takes
--socket PATH (else FUNCTIONS_SOCKET, else `socket` or `data_dir` of --config FILE or
./functions.conf, else ./data/functions.sock) and, except invoke, --json: print the
server's JSON reply on one line instead of a table.

Exit codes:
  0  success
  1  failure (the server answered ERROR, e.g. a build failed; a file was unreadable)
  2  usage error: bad flags or values (also when the server answers BAD_REQUEST)
  3  invoke: the function answered with HTTP status 400 or more
  4  not found: no such function or version
  5  server unreachable: nothing listens on the socket, or it is shutting down
  6  timeout: the function did not answer within its timeout
  7  busy: every worker is busy and the queue is full; retry later
";

pub fn run(args: Vec<OsString>) -> Result<ExitCode, CliError> {
    let mut rest = args.into_iter();
    let Some(first) = rest.next() else {
        return Err(CliError::Usage(
            "no command given; try `functions --help`".into(),
        ));
    };
    let rest: Vec<OsString> = rest.collect();
    let spec = match first.to_string_lossy().as_ref() {
        "serve" => return serve::run(pico_args::Arguments::from_vec(rest)),
        "deploy" => &deploy::DEPLOY,
        "invoke" => &invoke::INVOKE,
        "list" => &functions::LIST,
        "info" => &functions::INFO,
        "rollback" => &functions::ROLLBACK,
        "delete" => &functions::DELETE,
        "register" => &functions::REGISTER,
        "env" => &env::ENV,
        "logs" => &logs::LOGS,
        "metrics" => &metrics::METRICS,
        "status" => &observe::STATUS,
        "-V" | "--version" => {
            output::stdout(format!("functions {}\n", env!("CARGO_PKG_VERSION")).as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
        "help" | "-h" | "--help" => {
            output::stdout(USAGE.as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
        other => {
            return Err(CliError::Usage(format!(
                "unknown command {other:?}; try `functions --help`"
            )))
        }
    };
    client_command(spec, rest)
}

/// The end of every client command's help: the flags they all take.
const CLIENT_FLAGS: &str = concat!(
    "  --socket PATH      the server's socket (else FUNCTIONS_SOCKET, then the config file)\n",
    "  --config FILE      config file to find the socket in (default: ./functions.conf)\n",
    "  -h, --help         print this help\n",
);

/// Parses a client command's arguments, shows its help when asked, else runs it.
fn client_command(spec: &Spec, args: Vec<OsString>) -> Result<ExitCode, CliError> {
    let raw = Raw::parse(spec, args)?;
    if raw.has("--help") || raw.has("-h") {
        output::stdout(format!("{}{CLIENT_FLAGS}", spec.help).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    (spec.run)(raw)?;
    Ok(ExitCode::from(error::SUCCESS))
}
