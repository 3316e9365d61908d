//! What the gateway sends back: a function's own response passed through unchanged, or a
//! JSON error. This is the one place where errors become HTTP status codes.

use std::io::Cursor;

use tiny_http::{Header, Response, StatusCode};

use crate::scheduler::{Body, FunctionResponse, InvokeError};
use crate::stream::{BodyStream, StreamError};

/// Headers that describe one connection, not the message; never forwarded either way
/// (tiny_http writes its own on responses).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A body still coming from the worker; `body` is empty then.
    pub stream: Option<Box<BodyStream>>,
    pub function: Option<String>,
    /// Whether a worker had to start; `None` when no worker was involved.
    pub cold: Option<bool>,
}

impl Answer {
    pub fn from_function(response: FunctionResponse) -> Answer {
        let (body, stream) = match response.body {
            Body::Full(body) => (body, None),
            Body::Stream(stream) => (Vec::new(), Some(stream)),
        };
        Answer {
            status: response.status,
            headers: response.headers,
            body,
            stream,
            function: None,
            cold: None,
        }
    }

    pub fn json(status: u16, body: &serde_json::Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            stream: None,
            function: None,
            cold: None,
        }
    }

    pub fn for_function(mut self, name: &str) -> Answer {
        self.function = Some(name.to_string());
        self
    }

    /// The headers to send: the function's, less `Content-Length`, hop-by-hop headers and
    /// any that could split the response or are not ASCII (dropped with a warning), plus
    /// the gateway's.
    pub fn wire_headers(&self, invocation: &str) -> Vec<(String, String)> {
        let mut headers = Vec::with_capacity(self.headers.len() + 3);
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if lower == "content-length" || HOP_BY_HOP.contains(&lower.as_str()) {
                continue;
            }
            // tiny_http takes ASCII values only; streamed heads follow the same rule.
            if !safe_header(name, value) || !value.is_ascii() {
                log::warn!("dropping response header {name:?}: not a valid HTTP header invocation={invocation}");
                continue;
            }
            headers.push((name.clone(), value.clone()));
        }
        headers.push(("X-Invocation-Id".into(), invocation.into()));
        if let Some(cold) = self.cold {
            headers.push(("X-Cold-Start".into(), cold.to_string()));
        }
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("server"))
        {
            headers.push(("Server".into(), "bunbase-functions".into()));
        }
        headers
    }

    /// The tiny_http response. For HEAD the body is not sent, but a Content-Length the
    /// function set is kept (otherwise it is the length of the body it returned).
    pub fn into_response(self, invocation: &str, is_head: bool) -> Response<Cursor<Vec<u8>>> {
        let declared = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        let length = match (is_head, declared) {
            (true, Some(declared)) => declared,
            _ => self.body.len(),
        };
        let headers = self.tiny_headers(invocation);
        Response::new(
            StatusCode(self.status),
            headers,
            Cursor::new(self.body),
            Some(length),
            None,
        )
        .with_chunked_threshold(usize::MAX)
    }
}

impl Answer {
    /// [`Answer::wire_headers`] as tiny_http headers.
    fn tiny_headers(&self, invocation: &str) -> Vec<Header> {
        self.wire_headers(invocation)
            .into_iter()
            .map(|(n, v)| Header::from_bytes(n.as_bytes(), v.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .expect("wire headers are checked: tokens, ASCII values without CR, LF or NUL")
    }

    /// The head of a streamed answer without its body (HEAD, or a status that has none):
    /// no `Content-Length`, since the body's length is unknown; tiny_http then says
    /// chunked, as the GET would be, and sends no body for HEAD.
    pub fn into_head_of_stream(self, invocation: &str) -> Response<Cursor<Vec<u8>>> {
        let headers = self.tiny_headers(invocation);
        let length = matches!(self.status, 100..=199 | 204 | 304).then_some(0);
        Response::new(
            StatusCode(self.status),
            headers,
            Cursor::new(Vec::new()),
            length,
            None,
        )
    }
}

/// Whether a header can be written as is: the name a token, the value free of CR, LF and
/// NUL (which would let a function split the response or forge headers).
pub fn safe_header(name: &str, value: &str) -> bool {
    is_token(name) && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// Whether `text` is an HTTP token (a method or a header name).
pub fn is_token(text: &str) -> bool {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    !text.is_empty() && text.bytes().all(token)
}

fn error_answer(status: u16, code: &str, message: &str) -> Answer {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    Answer::json(status, &body)
}

/// The answer for an invocation that produced no response of the function's own.
/// With `detailed` false (HTTP unless log_level is debug), build output and start errors,
/// which can hold paths and source lines, stay in the server log.
pub fn error(error: InvokeError, detailed: bool) -> Answer {
    const SEE_LOG: &str = "details are in the server log and `functions info`";
    match error {
        InvokeError::NotFound => not_found("no function with this name is deployed"),
        InvokeError::ShuttingDown => shutting_down(),
        InvokeError::NotDeployed(reason) => match detailed {
            true => error_answer(500, "not_deployed", &reason),
            false => error_answer(
                500,
                "not_deployed",
                &format!("the function has no deployable version; {SEE_LOG}"),
            ),
        },
        InvokeError::QueueFull => {
            let mut answer = error_answer(
                429,
                "queue_full",
                "all workers are busy and the queue is full; retry shortly",
            );
            answer.headers.push(("retry-after".into(), "1".into()));
            answer
        }
        InvokeError::Timeout(limit) => error_answer(
            504,
            "timeout",
            &format!(
                "the function did not answer within {} ms",
                limit.as_millis()
            ),
        ),
        InvokeError::StartFailed(reason) => match detailed {
            true => error_answer(
                500,
                "start_failed",
                &format!("the function's worker failed to start: {}", public(&reason)),
            ),
            false => error_answer(
                500,
                "start_failed",
                &format!("the function's worker failed to start; {SEE_LOG}"),
            ),
        },
        InvokeError::Threw { name, message, .. } => {
            error_answer(500, "function_error", &format!("{name}: {message}"))
        }
        InvokeError::Crashed(reason) => error_answer(
            502,
            "worker_crashed",
            &format!("the function's worker died: {}", public(&reason)),
        ),
        InvokeError::BadResponse(reason) => error_answer(502, "bad_response", &reason),
        InvokeError::ResponseTooLarge(limit) => error_answer(
            502,
            "response_too_large",
            &format!("the function's response is larger than max_response_size ({limit} bytes)"),
        ),
    }
}

/// A worker's exit reason without its stderr tail, which belongs in the logs only.
fn public(reason: &str) -> &str {
    reason.split("; stderr:").next().unwrap_or(reason)
}

pub fn not_found(message: &str) -> Answer {
    error_answer(404, "not_found", message)
}

pub fn refused(refusal: super::request::Refusal) -> Answer {
    error_answer(refusal.status, refusal.code, refusal.message)
}

pub fn bad_request(message: &str) -> Answer {
    error_answer(400, "bad_request", message)
}

/// The answer for a streamed body that failed before anything of it was sent.
pub fn stream_failed(error: StreamError) -> Answer {
    match error {
        StreamError::Timeout(limit) => self::error(InvokeError::Timeout(limit), false),
        StreamError::TooLarge(limit) => self::error(InvokeError::ResponseTooLarge(limit), false),
        StreamError::Crashed(reason) => self::error(InvokeError::Crashed(reason), false),
        other => error_answer(502, "bad_response", &other.to_string()),
    }
}

pub fn too_large(max: usize) -> Answer {
    let message = format!("the request body is larger than max_body_size ({max} bytes)");
    error_answer(413, "payload_too_large", &message)
}

pub fn internal() -> Answer {
    error_answer(
        500,
        "internal",
        "the server failed while handling this request; see its log",
    )
}

pub fn shutting_down() -> Answer {
    error_answer(503, "shutting_down", "the server is shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header<'a>(response: &'a Response<Cursor<Vec<u8>>>, name: &'static str) -> Option<&'a str> {
        response
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    }

    #[test]
    fn headers_that_could_split_the_response_are_dropped() {
        assert!(safe_header("x-ok", "value; with=stuff"));
        assert!(!safe_header("x-bad", "a\r\nInjected: yes"));
        assert!(!safe_header("x-bad", "a\rb"));
        assert!(!safe_header("x-bad", "a\nb"));
        assert!(!safe_header("x-bad", "a\0b"));
        assert!(!safe_header("bad name", "v"));
        assert!(!safe_header("", "v"));
        let answer = Answer::from_function(FunctionResponse {
            status: 200,
            headers: vec![("x-evil".into(), "a\r\nInjected: yes".into())],
            body: Body::Full(Vec::new()),
        });
        let response = answer.into_response("id", false);
        assert!(!response
            .headers()
            .iter()
            .any(|h| h.field.equiv("x-evil") || h.field.equiv("injected")));
    }

    #[test]
    fn errors_map_to_status_and_code() {
        let cases = [
            (error(InvokeError::NotFound, false), 404, "not_found"),
            (error(InvokeError::QueueFull, false), 429, "queue_full"),
            (
                error(InvokeError::ResponseTooLarge(1024), false),
                502,
                "response_too_large",
            ),
            (
                error(InvokeError::Timeout(Duration::from_secs(2)), false),
                504,
                "timeout",
            ),
            (
                error(
                    InvokeError::Crashed("exited with code 3; stderr: secret".into()),
                    false,
                ),
                502,
                "worker_crashed",
            ),
            (too_large(10), 413, "payload_too_large"),
            (shutting_down(), 503, "shutting_down"),
        ];
        for (answer, status, code) in cases {
            assert_eq!(answer.status, status);
            let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(body["error"]["code"], code);
            assert!(!body.to_string().contains("secret"));
        }
    }

    #[test]
    fn build_and_start_details_only_when_detailed() {
        let secret = "/srv/app/functions/x.ts:3: Expected \")\"";
        for (detailed, shown) in [(false, false), (true, true)] {
            for e in [
                InvokeError::NotDeployed(secret.into()),
                InvokeError::StartFailed(secret.into()),
            ] {
                let body = String::from_utf8(error(e, detailed).body).unwrap();
                assert_eq!(body.contains("/srv/app"), shown, "{body}");
            }
        }
    }

    #[test]
    fn function_headers_pass_through_with_gateway_headers_added() {
        let mut answer = Answer::from_function(FunctionResponse {
            status: 201,
            headers: vec![
                ("set-cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
                ("transfer-encoding".into(), "chunked".into()),
                ("content-length".into(), "999".into()),
            ],
            body: Body::Full(b"hello".to_vec()),
        });
        answer.cold = Some(true);
        let response = answer.into_response("abc", false);
        let cookies = response
            .headers()
            .iter()
            .filter(|h| h.field.equiv("set-cookie"))
            .count();
        assert_eq!(cookies, 2);
        assert_eq!(header(&response, "x-invocation-id"), Some("abc"));
        assert_eq!(header(&response, "x-cold-start"), Some("true"));
        assert_eq!(header(&response, "transfer-encoding"), None);
        assert_eq!(response.status_code(), 201);
        assert_eq!(response.data_length(), Some(5));
    }
}
