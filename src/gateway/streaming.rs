//! Writing a streamed response body to an HTTP client as the function produces it.
//!
//! tiny_http's own chunked encoding buffers 8 KiB before it writes a chunk, which would
//! hold back server-sent events, so a streamed answer takes the connection's raw writer
//! (`Request::into_writer`) and writes the head at once, then each chunk itself,
//! flushing every chunk. The writer blocks while the client's socket buffer is full;
//! meanwhile no chunk is acknowledged, so the worker's stream waits too (see
//! `stream.rs`). While the function is quiet, the connection's state in `/proc/net/tcp`
//! is checked every [`QUIET_CHECK`]: a client that closed its side (or whose socket is
//! gone) cancels the stream, as a failed write does.
//!
//! When the stream fails after the head went out, the status can no longer change: the
//! gateway then writes a line that is not a valid chunk, so the client sees a broken
//! response (curl: "Malformed encoding found in chunked-encoding") instead of a
//! complete-looking, truncated one. tiny_http offers no way to close the socket from
//! here, so the connection stays open until the client closes it.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tiny_http::{Method, Request, StatusCode};

use super::answer::{self, Answer};
use crate::stream::{BodyStream, Polled};

/// How often a quiet stream checks that its client is still there.
const QUIET_CHECK: Duration = Duration::from_secs(1);

/// What became of a streamed answer, for the access log.
pub struct Streamed {
    pub status: u16,
    pub bytes: usize,
    /// Why the body did not reach its end, if it did not.
    pub cut: Option<String>,
}

/// How a streamed body reaches a client.
#[derive(Debug, PartialEq)]
enum Delivery {
    /// HTTP/1.1: chunked transfer encoding, as it comes.
    Chunked,
    /// HTTP/1.0 without keep-alive: the bytes as they come, the end of the connection
    /// marking the end of the body.
    UntilClose,
    /// HEAD, or a status that has no body: the head only; the stream is cancelled.
    HeadOnly,
    /// HTTP/1.0 with keep-alive: the whole body first, with a length.
    Collect,
}

fn delivery(request: &Request, status: u16) -> Delivery {
    if *request.method() == Method::Head || matches!(status, 100..=199 | 204 | 304) {
        return Delivery::HeadOnly;
    }
    let version = request.http_version();
    if (version.0, version.1) == (1, 1) {
        return Delivery::Chunked;
    }
    let keep_alive = request.headers().iter().any(|h| {
        h.field.equiv("connection") && h.value.as_str().eq_ignore_ascii_case("keep-alive")
    });
    if keep_alive {
        Delivery::Collect
    } else {
        Delivery::UntilClose
    }
}

/// Answers `request` with a streamed body the way [`delivery`] says, and returns the
/// status sent and a note for the access line (bytes streamed, why it was cut). `port`
/// is the gateway's, to find the connection in the kernel's table.
pub fn deliver(
    request: Request,
    mut answer: Answer,
    stream: Box<BodyStream>,
    id: &str,
    port: u16,
) -> (u16, String) {
    let how = delivery(&request, answer.status);
    let mut status = answer.status;
    let mut note = String::new();
    match how {
        Delivery::Chunked | Delivery::UntilClose => {
            let streamed = respond(request, answer, stream, id, how, port);
            status = streamed.status;
            note = format!(" streamed_bytes={}", streamed.bytes);
            if let Some(cut) = streamed.cut {
                note.push_str(&format!(" cut={cut:?}"));
            }
            return (status, note);
        }
        Delivery::HeadOnly => {
            // HEAD, or a status without a body: the head, with no length to promise.
            stream.abort("the answer has no body");
            let response = answer.into_head_of_stream(id);
            if let Err(e) = request.respond(response) {
                log::debug!("failed to write the response invocation={id}: {e}");
            }
            return (status, note);
        }
        Delivery::Collect => match collect(&request, stream, port) {
            None => return (status, " cut=\"the client went away\"".into()),
            Some(Ok(body)) => answer.body = body,
            Some(Err(e)) => {
                let failed = answer::stream_failed(e);
                status = failed.status;
                answer = Answer {
                    function: answer.function,
                    cold: answer.cold,
                    ..failed
                };
            }
        },
    }
    if let Err(e) = request.respond(answer.into_response(id, false)) {
        log::debug!("failed to write the response invocation={id}: {e}");
    }
    (status, note)
}

/// Writes the head at once, then the body as it comes (`Chunked` or `UntilClose`).
fn respond(
    request: Request,
    answer: Answer,
    mut body: Box<BodyStream>,
    id: &str,
    how: Delivery,
    port: u16,
) -> Streamed {
    let chunked = how == Delivery::Chunked;
    let close = !chunked
        || request
            .headers()
            .iter()
            .any(|h| h.field.equiv("connection") && h.value.as_str().eq_ignore_ascii_case("close"));
    let peer = request.remote_addr().map(|p| canonical(*p));
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        answer.status,
        StatusCode(answer.status).default_reason_phrase()
    );
    for (name, value) in answer.wire_headers(id) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Date: {}\r\n",
        http_date(std::time::SystemTime::now())
    ));
    if close {
        head.push_str("Connection: close\r\n");
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    }
    head.push_str("\r\n");

    let mut writer = request.into_writer();
    let mut streamed = Streamed {
        status: answer.status,
        bytes: 0,
        cut: None,
    };
    let written = (|| -> std::io::Result<()> {
        writer.write_all(head.as_bytes())?;
        writer.flush()?;
        loop {
            match body.poll_chunk(QUIET_CHECK) {
                Ok(Polled::Chunk(bytes)) => {
                    if chunked {
                        writer.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
                        writer.write_all(&bytes)?;
                        writer.write_all(b"\r\n")?;
                    } else {
                        writer.write_all(&bytes)?;
                    }
                    writer.flush()?;
                    streamed.bytes += bytes.len();
                }
                Ok(Polled::End) => {
                    if chunked {
                        writer.write_all(b"0\r\n\r\n")?;
                    }
                    return writer.flush();
                }
                Ok(Polled::Quiet) => {
                    if peer.is_some_and(|peer| client_gone(peer, port)) {
                        return Err(std::io::ErrorKind::ConnectionAborted.into());
                    }
                }
                Err(e) => {
                    streamed.cut = Some(e.to_string());
                    log::warn!("response stream cut invocation={id}: {e}");
                    if chunked {
                        writer.write_all(b"\r\nstream failed, see the server log\r\n")?;
                    }
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

/// The whole body, for a client that must get a length first (HTTP/1.0 with keep-alive),
/// bounded by `max_response_size`. While the function is quiet the client is checked
/// every [`QUIET_CHECK`]; one that left cancels the stream (`None`).
fn collect(
    request: &Request,
    mut body: Box<BodyStream>,
    port: u16,
) -> Option<Result<Vec<u8>, crate::stream::StreamError>> {
    let peer = request.remote_addr().map(|p| canonical(*p));
    let mut whole = Vec::new();
    loop {
        match body.poll_chunk(QUIET_CHECK) {
            Ok(Polled::Chunk(bytes)) => whole.extend_from_slice(&bytes),
            Ok(Polled::End) => return Some(Ok(whole)),
            Ok(Polled::Quiet) => {
                if peer.is_some_and(|peer| client_gone(peer, port)) {
                    body.abort("the client went away");
                    return None;
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// Whether the client of the connection from `peer` to the gateway's `port` is gone:
/// the connection is closing on the client's side, reset, or no longer in the table.
fn client_gone(peer: SocketAddr, port: u16) -> bool {
    match connection_state(peer, port) {
        None => true,
        // ESTABLISHED stays; CLOSE_WAIT (the client sent FIN) and the rest mean gone.
        Some(state) => state != 0x01,
    }
}

/// The TCP state of the connection from `peer` to local `port`, from `/proc/net/tcp` and
/// `/proc/net/tcp6` (a v4 client of a dual-stack listener is in the second).
fn connection_state(peer: SocketAddr, port: u16) -> Option<u8> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().take(4).collect();
                let [_, here, there, state] = fields[..] else {
                    return None;
                };
                if parse_proc_addr(there)? != peer || parse_proc_addr(here)?.port() != port {
                    return None;
                }
                u8::from_str_radix(state, 16).ok()
            })
        })
}

/// `addr` with a v4-mapped v6 address as plain v4, as [`parse_proc_addr`] gives them.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// An address as `/proc/net/tcp{,6}` prints it: hex words in host byte order, a hex port.
fn parse_proc_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let text = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(text, 16).ok()?.to_ne_bytes())
    };
    let ip: std::net::IpAddr = match ip.len() {
        8 => std::net::Ipv4Addr::from(word(0)?).into(),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = std::net::Ipv6Addr::from(bytes);
            // A v4 client of a dual-stack listener shows as ::ffff:a.b.c.d.
            match v6.to_ipv4_mapped() {
                Some(v4) => v4.into(),
                None => v6.into(),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// `t` as an HTTP date (RFC 9110 IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn http_dates_are_imf_fixdates() {
        let at = |secs: u64| http_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_796_428_800), "Sat, 05 Dec 2026 00:00:00 GMT");
    }

    #[test]
    fn proc_addresses_parse_in_host_byte_order() {
        let v4 = parse_proc_addr("0100007F:1F90").unwrap();
        assert_eq!(v4, "127.0.0.1:8080".parse().unwrap());
        let v6 = parse_proc_addr("00000000000000000000000001000000:0050").unwrap();
        assert_eq!(v6, "[::1]:80".parse().unwrap());
        let mapped = parse_proc_addr("0000000000000000FFFF00000100007F:0050").unwrap();
        assert_eq!(mapped, "127.0.0.1:80".parse().unwrap());
        assert_eq!(parse_proc_addr("zz:1"), None);
    }
}
