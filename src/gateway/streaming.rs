//! Writing a streamed response body to an HTTP client as the function produces it.
//!
//! tiny_http's own chunked encoding buffers 8 KiB before it writes a chunk, which would
//! hold back server-sent events, so a streamed answer takes the connection's raw writer
//! (`Request::into_writer`) and writes the head and each chunk itself, flushing every
//! chunk. The writer blocks while the client's socket buffer is full; meanwhile no chunk
//! is acknowledged, so the worker's stream waits too (see `stream.rs`).
//!
//! When the stream fails after the head went out, the status can no longer change: the
//! gateway then writes a line that is not a valid chunk, so the client sees a broken
//! response (curl: "Malformed encoding found in chunked-encoding") instead of a
//! complete-looking, truncated one, and closes the connection. tiny_http offers no way to
//! close the socket from here.

use std::io::Write;

use tiny_http::{Request, StatusCode};

use super::answer::{self, Answer};
use crate::stream::BodyStream;

/// What became of a streamed answer, for the access log.
pub struct Streamed {
    pub status: u16,
    pub bytes: usize,
    /// Why the body did not reach its end, if it did not.
    pub cut: Option<String>,
}

/// Whether the answer to `request` can be streamed: an HTTP/1.1 request other than HEAD,
/// and a status that has a body.
pub fn can_stream(request: &Request, status: u16) -> bool {
    let version = request.http_version();
    (version.0, version.1) == (1, 1)
        && *request.method() != tiny_http::Method::Head
        && !matches!(status, 100..=199 | 204 | 304)
}

/// Reads the first piece of the body, then writes the head and streams the rest. A
/// stream that fails before its first byte is answered with the error's own status.
pub fn respond(request: Request, answer: Answer, mut body: Box<BodyStream>, id: &str) -> Streamed {
    let first = match body.next_chunk() {
        Ok(first) => first,
        Err(e) => {
            let failed = answer::stream_failed(e);
            let streamed = Streamed {
                status: failed.status,
                bytes: 0,
                cut: None,
            };
            if let Err(e) = request.respond(failed.into_response(id, false)) {
                log::debug!("failed to write the response invocation={id}: {e}");
            }
            return streamed;
        }
    };
    let close = request
        .headers()
        .iter()
        .any(|h| h.field.equiv("connection") && h.value.as_str().eq_ignore_ascii_case("close"));
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        answer.status,
        StatusCode(answer.status).default_reason_phrase()
    );
    for (name, value) in answer.wire_headers(id) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("Transfer-Encoding: chunked\r\n\r\n");

    let mut writer = request.into_writer();
    let mut streamed = Streamed {
        status: answer.status,
        bytes: 0,
        cut: None,
    };
    let mut piece = first;
    let written = (|| -> std::io::Result<()> {
        writer.write_all(head.as_bytes())?;
        writer.flush()?;
        loop {
            let Some(bytes) = piece.take() else {
                writer.write_all(b"0\r\n\r\n")?;
                return writer.flush();
            };
            if !bytes.is_empty() {
                writer.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
                writer.write_all(&bytes)?;
                writer.write_all(b"\r\n")?;
                writer.flush()?;
                streamed.bytes += bytes.len();
            }
            match body.next_chunk() {
                Ok(next) => piece = next,
                Err(e) => {
                    streamed.cut = Some(e.to_string());
                    log::warn!("response stream cut invocation={id}: {e}");
                    writer.write_all(b"\r\nstream failed, see the server log\r\n")?;
                    return writer.flush();
                }
            }
        }
    })();
    if let Err(e) = written {
        // The client went away: stop the function's stream.
        streamed.cut = Some(format!("the client went away: {e}"));
        body.abort("the client went away");
    }
    streamed
}
