//! The NDJSON messages between the server and a Bun worker (`bun/worker.ts`).
//!
//! One JSON object a line. Headers travel as ordered `[name, value]` pairs so repeated
//! headers survive; bodies travel as base64. Every message about an invocation carries its
//! id, so several invocations can share a worker. `docs/worker-protocol.md` lists the fields.

use serde::{Deserialize, Serialize};

/// Header pairs in wire order.
pub type Headers = Vec<(String, String)>;

/// Parent -> child. Closing the child's stdin asks it to finish in-flight work and exit.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker<'a> {
    Invoke {
        id: &'a str,
        method: &'a str,
        url: &'a str,
        headers: &'a Headers,
        body: String,
        deadline: u64,
        /// Largest response body in bytes; the worker answers `too_large` past it.
        max_response: usize,
    },
    /// `chunks` more chunks of a streamed body were delivered: the worker may send as
    /// many more.
    Ack { id: &'a str, chunks: u32 },
    /// Stop a streamed body: the worker cancels its stream and sends `end`.
    Cancel { id: &'a str },
}

impl ToWorker<'_> {
    /// The message as one protocol line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("protocol messages always serialize");
        line.push(b'\n');
        line
    }
}

/// A complete response of the handler.
#[derive(Debug, Deserialize)]
pub struct ResponseMsg {
    pub id: String,
    pub status: u16,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub body: String,
}

/// The status and headers of a response whose body follows in `chunk` messages.
#[derive(Debug, Deserialize)]
pub struct HeadMsg {
    pub id: String,
    pub status: u16,
    #[serde(default)]
    pub headers: Headers,
}

/// An error the handler raised, or that kept the module from loading.
#[derive(Debug, Deserialize, Clone)]
pub struct ErrorMsg {
    pub id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub stack: String,
}

/// Child -> parent.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    Ready {
        #[serde(default)]
        pid: Option<u32>,
    },
    Response(ResponseMsg),
    Log {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        level: String,
        #[serde(default)]
        message: String,
    },
    Error(ErrorMsg),
    /// The response body passed the invocation's `max_response`; the worker stopped
    /// reading it. Also ends a streamed body.
    TooLarge {
        id: String,
    },
    /// A streamed response begins.
    Head(HeadMsg),
    /// A piece of a streamed body, base64.
    Chunk {
        id: String,
        data: String,
    },
    /// A streamed body ended; with `error` when the function's stream failed.
    End {
        id: String,
        #[serde(default)]
        error: Option<String>,
    },
}

/// Parses one line; `None` when it is not protocol (stray output of the function).
pub fn parse_line(line: &[u8]) -> Option<FromWorker> {
    if line.first() != Some(&b'{') {
        return None;
    }
    match serde_json::from_slice(line) {
        Ok(message) => Some(message),
        // JavaScript writes a lone surrogate as `\ud800`, which is valid JSON text but
        // no Rust string: read it as U+FFFD rather than lose the message.
        Err(_) => serde_json::from_slice(&replace_lone_surrogates(line)?).ok(),
    }
}

/// `line` with every `\uXXXX` escape of an unpaired surrogate replaced by `\ufffd`;
/// `None` when there is none (the line is broken for another reason).
fn replace_lone_surrogates(line: &[u8]) -> Option<Vec<u8>> {
    let hex_at = |at: usize| -> Option<u16> {
        let digits = line.get(at + 2..at + 6)?;
        (line.get(at..at + 2)? == b"\\u").then_some(())?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut out = Vec::with_capacity(line.len());
    let mut replaced = false;
    let mut i = 0;
    while i < line.len() {
        // An escaped backslash is not the start of an escape.
        if line[i] == b'\\' && line.get(i + 1) == Some(&b'\\') {
            out.extend_from_slice(b"\\\\");
            i += 2;
            continue;
        }
        match hex_at(i) {
            Some(0xd800..=0xdbff) if matches!(hex_at(i + 6), Some(0xdc00..=0xdfff)) => {
                out.extend_from_slice(&line[i..i + 12]);
                i += 12;
            }
            Some(0xd800..=0xdfff) => {
                out.extend_from_slice(b"\\ufffd");
                replaced = true;
                i += 6;
            }
            _ => {
                out.push(line[i]);
                i += 1;
            }
        }
    }
    replaced.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_line_has_pairs_and_newline() {
        let headers = vec![
            ("a".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
        ];
        let msg = ToWorker::Invoke {
            id: "i1",
            method: "GET",
            url: "http://h/functions/x",
            headers: &headers,
            body: String::new(),
            deadline: 5,
            max_response: 1024,
        };
        let line = String::from_utf8(msg.to_line()).unwrap();
        assert!(line.ends_with("}\n"));
        assert!(line.contains(r#""type":"invoke""#));
        assert!(line.contains(r#""headers":[["a","1"],["a","2"]]"#));
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let line = br#"{"type":"error","id":"i","name":"Error","message":"bad \ud800 x \\ud800 \ud83d\udc4b"}"#;
        match parse_line(line) {
            Some(FromWorker::Error(e)) => assert_eq!(e.message, "bad \u{fffd} x \\ud800 👋"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replies_parse_and_stray_output_does_not() {
        let line =
            br#"{"type":"response","id":"i1","status":201,"headers":[["x","y"]],"body":"aGk="}"#;
        match parse_line(line) {
            Some(FromWorker::Response(r)) => assert_eq!((r.status, r.headers.len()), (201, 1)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_line(br#"{"type":"ready","pid":4}"#),
            Some(FromWorker::Ready { .. })
        ));
        assert!(parse_line(b"hello from the function").is_none());
        assert!(parse_line(br#"{"not":"protocol"}"#).is_none());
    }
}
