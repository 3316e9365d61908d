//! What can go wrong on the command line, and the one table that turns it into an exit
//! code. `functions --help` and docs/cli.md list the same codes.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::api::codes::Status;
use crate::client::ClientError;
use crate::config::ConfigError;
use crate::server::ServeError;

/// The command did what was asked.
pub const SUCCESS: u8 = 0;
/// The command ran and failed: a server ERROR (a build failed, say), an unreadable file.
pub const FAILURE: u8 = 1;
/// Bad flags or values, on the command line or rejected by the server as BAD_REQUEST.
pub const USAGE: u8 = 2;
/// `invoke`: the function answered with an HTTP status of 400 or more.
pub const FUNCTION_ERROR: u8 = 3;
/// No such function or version (NOT_FOUND).
pub const NOT_FOUND: u8 = 4;
/// Nothing listens on the socket, or the server is shutting down (UNAVAILABLE).
pub const UNREACHABLE: u8 = 5;
/// The function did not answer within its timeout (TIMEOUT).
pub const TIMEOUT: u8 = 6;
/// Every worker is busy and the queue is full (BUSY); retrying later may work.
pub const BUSY: u8 = 7;

#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Config(ConfigError),
    Serve(ServeError),
    Client(ClientError),
    /// The server answered a request with a status other than OK.
    Server {
        status: Status,
        message: String,
    },
    /// An invoked function answered with an HTTP error status.
    Function {
        name: String,
        status: u16,
        error_code: Option<String>,
    },
    /// A streamed response was cut after its status went out (`code` says why).
    StreamCut {
        name: String,
        code: String,
        message: String,
    },
    /// A local file or stdin could not be read.
    Read(PathBuf, std::io::Error),
    /// Stdout could not be written (other than a closed pipe, which is not an error).
    Write(std::io::Error),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) => write!(f, "{message}"),
            CliError::Config(e) => write!(f, "{e}"),
            CliError::Serve(e) => write!(f, "{e}"),
            CliError::Client(e) => write!(f, "{e}"),
            CliError::Server { message, .. } => write!(f, "{message}"),
            CliError::StreamCut {
                name,
                code,
                message,
            } => write!(f, "the response of {name} was cut ({code}): {message}"),
            CliError::Function {
                name,
                status,
                error_code,
            } => {
                write!(f, "function {name} answered HTTP {status}")?;
                match error_code {
                    Some(code) => write!(f, " ({code})"),
                    None => Ok(()),
                }
            }
            CliError::Read(path, e) => write!(f, "failed to read {}: {e}", path.display()),
            CliError::Write(e) => write!(f, "failed to write to stdout: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// The exit code of this failure; the only place that decides it.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => USAGE,
            CliError::Serve(_) | CliError::Read(..) | CliError::Write(_) => FAILURE,
            CliError::Client(ClientError::Unreachable(..)) => UNREACHABLE,
            CliError::Client(_) => FAILURE,
            CliError::Server { status, .. } => match status {
                Status::Ok | Status::Error => FAILURE,
                Status::BadRequest => USAGE,
                Status::NotFound => NOT_FOUND,
                Status::Timeout => TIMEOUT,
                Status::Busy => BUSY,
                Status::Unavailable => UNREACHABLE,
            },
            CliError::Function { .. } | CliError::StreamCut { .. } => FUNCTION_ERROR,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_documented_codes() {
        let server = |status| CliError::Server {
            status,
            message: String::new(),
        };
        assert_eq!(server(Status::Error).code(), 1);
        assert_eq!(server(Status::BadRequest).code(), 2);
        assert_eq!(server(Status::NotFound).code(), 4);
        assert_eq!(server(Status::Unavailable).code(), 5);
        assert_eq!(server(Status::Timeout).code(), 6);
        assert_eq!(server(Status::Busy).code(), 7);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let unreachable = CliError::Client(ClientError::Unreachable("s".into(), refused));
        assert_eq!(unreachable.code(), 5);
        let function = CliError::Function {
            name: "f".into(),
            status: 404,
            error_code: None,
        };
        assert_eq!(function.code(), 3);
        assert_eq!(function.to_string(), "function f answered HTTP 404");
        assert_eq!(CliError::Usage("x".into()).code(), 2);
    }

    #[test]
    fn help_lists_every_exit_code() {
        for code in [
            SUCCESS,
            FAILURE,
            USAGE,
            FUNCTION_ERROR,
            NOT_FOUND,
            UNREACHABLE,
            TIMEOUT,
            BUSY,
        ] {
            assert!(
                super::super::USAGE.contains(&format!("\n  {code}  ")),
                "exit code {code} missing from `functions --help`"
            );
        }
    }
}
