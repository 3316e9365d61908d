//! A client of the socket API, for the CLI and for other Rust programs: connect once, then
//! send any number of requests, one after another.

use std::fmt;
use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::codes::{Command, Status};
use crate::api::frame::{Frame, FrameError};

/// The largest response the client accepts.
const MAX_RESPONSE: usize = 1 << 30;

#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens on the socket.
    Unreachable(PathBuf, std::io::Error),
    Io(std::io::Error),
    Frame(FrameError),
    /// The server answered with a status code this client does not know.
    UnknownStatus(u8),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable(path, e) => {
                write!(
                    f,
                    "cannot reach the server at {}: {e} (is `functions serve` running?)",
                    path.display()
                )
            }
            ClientError::Io(e) => write!(f, "failed to talk to the server: {e}"),
            ClientError::Frame(e) => write!(f, "bad answer from the server: {e}"),
            ClientError::UnknownStatus(code) => {
                write!(f, "the server answered with unknown status {code}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// One answer of the server.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    pub json: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    /// The error message of a non-OK reply.
    pub fn error_message(&self) -> String {
        self.json["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string()
    }
}

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .map_err(|e| ClientError::Unreachable(path.to_path_buf(), e))?;
        let write_half = stream.try_clone().map_err(ClientError::Io)?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer: BufWriter::new(write_half),
        })
    }

    /// Sends one request and waits for its answer.
    pub fn call(
        &mut self,
        command: Command,
        json: Value,
        raw: Vec<u8>,
    ) -> Result<Reply, ClientError> {
        let sent = Frame::new(command.code(), json)
            .with_raw(raw)
            .write_to(&mut self.writer);
        // A server that refuses the connection (BUSY) answers and closes before reading:
        // its answer is still worth reading when our write failed.
        match self.next_reply() {
            Err(ClientError::Frame(e)) => {
                Err(sent.err().map_or(ClientError::Frame(e), ClientError::Io))
            }
            other => other,
        }
    }

    /// Reads the next frame the server sends: after an INVOKE whose reply says
    /// `"streaming": true`, the body's `{"chunk":true}` frames and the `{"end":true}` one.
    pub fn next_reply(&mut self) -> Result<Reply, ClientError> {
        let frame = Frame::read_from(&mut self.reader, MAX_RESPONSE).map_err(ClientError::Frame)?;
        let status = Status::from_code(frame.code).ok_or(ClientError::UnknownStatus(frame.code))?;
        Ok(Reply {
            status,
            json: frame.json,
            raw: frame.raw,
        })
    }
}
