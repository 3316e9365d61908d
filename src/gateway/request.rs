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
) -> Result<Invocation, BodyError> {
    let body = read_body(request, context.max_body_size)?;
    let mut headers: Headers = request
        .headers()
        .iter()
        .filter(|h| !h.field.equiv("x-invocation-id"))
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

/// Why a request must be refused before routing (400), if it must: a path with dot
/// segments (which the function's URL parser would resolve to another path than the one
/// routed), or a header that could not be passed on intact.
pub fn framing_problem(request: &Request, path: &str) -> Option<&'static str> {
    if has_dot_segment(path) {
        return Some("the path has `.` or `..` segments");
    }
    let bad_header = request
        .headers()
        .iter()
        .any(|h| !super::answer::safe_header(h.field.as_str().as_str(), h.value.as_str()));
    if bad_header {
        return Some("a header has an invalid name, or CR, LF or NUL in its value");
    }
    None
}

/// Whether a `/`-separated path has a `.` or `..` segment, percent-encoded or not.
fn has_dot_segment(path: &str) -> bool {
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
