//! The `expect` block of a shared case and how an answer is held against it, field by
//! field as `tests/cases/README.md` defines them. Each check returns what differed, in
//! words, so one run can report every case at once.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::support::{Response, Server};

/// Logs may reach the server's stderr a little after the answer.
const LOG_DEADLINE: Duration = Duration::from_secs(5);

/// Unknown fields are refused, so a new kind of expectation is never silently skipped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    status: Option<u16>,
    #[serde(default)]
    headers_contains: BTreeMap<String, HeaderValue>,
    #[serde(default)]
    headers_match: BTreeMap<String, String>,
    #[serde(default)]
    headers_absent: Vec<String>,
    body_equals: Option<String>,
    body_base64: Option<String>,
    body_sha256: Option<String>,
    body_length: Option<usize>,
    body_contains: Option<OneOrMany>,
    logs_contains: Option<OneOrMany>,
    pub timing: Option<Timing>,
    pub all_status: Option<u16>,
    /// For people: what must not happen. The fields above say it for the machine.
    #[serde(rename = "notes")]
    _notes: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderValue {
    /// The value as `Headers.get()` combines it.
    Combined(String),
    /// Separate header lines, in order (Set-Cookie).
    Lines(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    ttfb_ms_max: Option<u64>,
    total_ms_min: Option<u64>,
    total_ms_max: Option<u64>,
}

/// Everything but `timing` and `all_status`, which depend on how the request was sent,
/// and `logs_contains` (see `check_logs`).
pub fn check_response(expect: &Expect, response: &Response) -> Vec<String> {
    let mut problems = Vec::new();
    let mut differ = |what: String| problems.push(what);

    if let Some(status) = expect.status.filter(|s| *s != response.status) {
        differ(format!(
            "status {} instead of {status}; body {}",
            response.status,
            excerpt(&response.body)
        ));
    }
    for (name, want) in &expect.headers_contains {
        match want {
            HeaderValue::Combined(want) if response.header(name).as_ref() != Some(want) => {
                differ(format!(
                    "header {name}: {:?} instead of {want:?}",
                    response.header(name)
                ));
            }
            HeaderValue::Lines(want) if response.header_lines(name) != *want => {
                differ(format!(
                    "{name} lines: {:?} instead of {want:?}",
                    response.header_lines(name)
                ));
            }
            _ => {}
        }
    }
    for (name, pattern) in &expect.headers_match {
        let regex = regex::Regex::new(pattern).expect("bad headers_match regex in cases.json");
        let value = response.header(name);
        if !value.as_deref().is_some_and(|v| regex.is_match(v)) {
            differ(format!(
                "header {name} does not match /{pattern}/: {:?}",
                value.map(|v| excerpt(v.as_bytes()))
            ));
        }
    }
    for name in expect
        .headers_absent
        .iter()
        .filter(|n| response.header(n).is_some())
    {
        differ(format!(
            "header {name} should be absent: {:?}",
            response.header(name)
        ));
    }

    let body = &response.body;
    if let Some(want) = expect.body_equals.as_ref().filter(|w| w.as_bytes() != body) {
        differ(format!(
            "body {} instead of {}",
            excerpt(body),
            excerpt(want.as_bytes())
        ));
    }
    if let Some(want) = &expect.body_base64 {
        let want = base64::engine::general_purpose::STANDARD
            .decode(want)
            .expect("bad body_base64");
        if want != *body {
            differ(format!("body {} instead of the base64 one", excerpt(body)));
        }
    }
    if let Some(want) = expect.body_length.filter(|len| *len != body.len()) {
        differ(format!("body of {} bytes instead of {want}", body.len()));
    }
    if let Some(want) = &expect.body_sha256 {
        let got: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != *want {
            differ(format!("body sha256 {got} instead of {want}"));
        }
    }
    let text = String::from_utf8_lossy(body);
    for needle in expect.body_contains.iter().flat_map(OneOrMany::items) {
        if !text.contains(needle.as_str()) {
            differ(format!("body lacks {needle:?}: {}", excerpt(body)));
        }
    }
    problems
}

/// `logs_contains`, checked once the whole case ran: a case may list what its `then`
/// steps log too (43-throws does).
pub fn check_logs(expect: &Expect, server: &Server) -> Vec<String> {
    let needles = expect.logs_contains.iter().flat_map(OneOrMany::items);
    let missing = needles.filter(|needle| !server.wait_for_log(needle, LOG_DEADLINE));
    missing
        .map(|needle| format!("server log lacks {needle:?} after {LOG_DEADLINE:?}"))
        .collect()
}

/// `ttfb` is the slowest first byte, `total` the time of the request or of the group.
pub fn check_timing(timing: &Timing, ttfb: Duration, total: Duration) -> Vec<String> {
    let ms = |d: Duration| d.as_millis() as u64;
    let mut problems = Vec::new();
    if let Some(max) = timing.ttfb_ms_max.filter(|max| ms(ttfb) > *max) {
        problems.push(format!("first byte after {} ms, limit {max} ms", ms(ttfb)));
    }
    if let Some(min) = timing.total_ms_min.filter(|min| ms(total) < *min) {
        problems.push(format!(
            "done after {} ms, expected at least {min} ms",
            ms(total)
        ));
    }
    if let Some(max) = timing.total_ms_max.filter(|max| ms(total) > *max) {
        problems.push(format!("done after {} ms, limit {max} ms", ms(total)));
    }
    problems
}

/// The start of a body for messages: text when it is text, and its length.
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
    let more = if bytes.len() > 300 { "..." } else { "" };
    format!("{text:?}{more} ({} bytes)", bytes.len())
}
