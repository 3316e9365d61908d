//! Turning a tiny_http request into an [`Invocation`]: method, full URL, every header in
//! order, and the body read up to `max_body_size`.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tiny_http::Request;

use super::Context;
use crate::scheduler::Invocation;
use crate::worker::protocol::Headers;

pub enum BodyError {
    TooLarge,
    Read(std::io::Error),
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new invocation id: milliseconds since the epoch and a counter, in hex.
pub fn new_invocation_id() -> String {
    let ms = crate::store::now_ms() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{ms:011x}{:05x}", n & 0xf_ffff)
}

pub fn to_invocation(
    received: Instant,
    request: &mut Request,
    context: &Context,
    id: &str,
    function: &str,
    max_body: usize,
) -> Result<Invocation, BodyError> {
    let body = read_body(request, max_body)?;
    // Hop-by-hop headers (and those Connection names) describe the client's connection
    // to the gateway, not the request: they are not forwarded, as a proxy would not.
    let named_by_connection: Vec<String> = request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("connection"))
        .flat_map(|h| {
            h.value
                .as_str()
                .split(',')
                .map(|n| n.trim().to_ascii_lowercase())
        })
        .collect();
    let mut headers: Headers = request
        .headers()
        .iter()
        .filter(|h| {
            let name = h.field.as_str().as_str().to_ascii_lowercase();
            name != "x-invocation-id"
                && !super::answer::HOP_BY_HOP.contains(&name.as_str())
                && !named_by_connection.contains(&name)
        })
        .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
        .collect();
    headers.push(("x-invocation-id".to_string(), id.to_string()));

    let host = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("host"))
        .map(|h| h.value.as_str())
        .filter(|host| valid_host(host))
        .map(str::to_string)
        .unwrap_or_else(|| context.local_addr.to_string());
    Ok(Invocation {
        id: id.to_string(),
        function: function.to_string(),
        method: request.method().as_str().to_string(),
        url: format!("http://{host}{}", request.url()),
        headers,
        body,
        received,
        may_queue: context.may_queue(),
    })
}

/// Reads the whole body, refusing more than `max` bytes (before reading, when the
/// declared Content-Length already says so).
fn read_body(request: &mut Request, max: usize) -> Result<Vec<u8>, BodyError> {
    if request.body_length().is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::with_capacity(request.body_length().unwrap_or(0));
    request
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(BodyError::Read)?;
    if body.len() > max {
        return Err(BodyError::TooLarge);
    }
    Ok(body)
}

/// Most request headers accepted, and most bytes of names and values together.
const MAX_HEADERS: usize = 200;
const MAX_HEADER_BYTES: usize = 64 << 10;

/// Why a request is refused before routing.
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

fn refuse(status: u16, code: &'static str, message: &'static str) -> Option<Refusal> {
    Some(Refusal {
        status,
        code,
        message,
    })
}

/// Why a request must be refused before routing, if it must: a path with dot segments
/// (the function's URL parser would resolve it to another path than the one routed), too
/// many or too large headers, a header that cannot be passed on intact, or ambiguous
/// body framing (a request smuggling attempt, or a client bug).
pub fn framing_problem(request: &Request, path: &str) -> Option<Refusal> {
    if has_dot_segment(path) {
        return refuse(400, "bad_request", "the path has `.` or `..` segments");
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|h| h.field.as_str().len() + h.value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return refuse(
            431,
            "headers_too_large",
            "more than 200 headers or 64 KiB of headers",
        );
    }
    let unsafe_header = headers
        .iter()
        .any(|h| !super::answer::safe_header(h.field.as_str().as_str(), h.value.as_str()));
    if unsafe_header {
        return refuse(
            400,
            "bad_request",
            "a header has an invalid name, or CR, LF or NUL in its value",
        );
    }
    let values = |name: &'static str| -> Vec<&str> {
        headers
            .iter()
            .filter(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().trim())
            .collect()
    };
    let lengths = values("content-length");
    let encodings = values("transfer-encoding");
    let bad_length = lengths
        .iter()
        .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
        || lengths.windows(2).any(|pair| pair[0] != pair[1]);
    let bad_encoding = encodings.len() > 1
        || encodings.iter().any(|v| !v.eq_ignore_ascii_case("chunked"))
        || (!encodings.is_empty() && !lengths.is_empty());
    if bad_length || bad_encoding {
        return refuse(
            400,
            "bad_framing",
            "ambiguous body framing: Content-Length must be one number, Transfer-Encoding only `chunked`, and not both",
        );
    }
    None
}

/// Whether a `/`-separated path has a `.` or `..` segment, percent-encoded or not.
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// Whether a Host header is safe to put into a URL: host name or address, optional port.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_checked() {
        assert!(valid_host("example.com:8080"));
        assert!(valid_host("[::1]:80"));
        assert!(!valid_host("evil.com/path"));
        assert!(!valid_host("a b"));
        assert!(!valid_host(""));
    }

    #[test]
    fn dot_segments_are_found_encoded_or_not() {
        assert!(has_dot_segment("/functions/a/../b"));
        assert!(has_dot_segment("/functions/a/%2E%2e/b"));
        assert!(has_dot_segment("/functions/a/./b"));
        assert!(!has_dot_segment("/functions/a/b.c/..d"));
    }

    #[test]
    fn invocation_ids_are_unique() {
        let a = new_invocation_id();
        let b = new_invocation_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }
}
