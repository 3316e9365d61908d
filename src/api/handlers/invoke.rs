//! INVOKE: run a function with a request built from the frame, answer what HTTP would.

use std::time::Instant;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{checked_name, payload, ApiContext, Failure};
use crate::api::codes::Status;
use crate::api::error_frame;
use crate::api::frame::Frame;
use crate::gateway::answer;
use crate::gateway::request::{has_dot_segment, new_invocation_id};
use crate::scheduler::{Invocation, InvokeError};
use crate::stream::{BodyStream, Polled};

/// How often a quiet streamed body checks that its socket client is still there.
const QUIET_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Deserialize)]
struct InvokeRequest {
    name: String,
    method: Option<String>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// Whether the client reads a streamed body as frames (else it is collected).
    #[serde(default)]
    stream: bool,
}

/// An INVOKE reply, and the body still to send as frames when the function streams it
/// and the client asked for that.
pub type Invoked = Result<(Frame, Option<Box<BodyStream>>), Failure>;

pub fn invoke(context: &ApiContext, request: Frame) -> Invoked {
    let received = Instant::now();
    let p: InvokeRequest = payload(&request.json)?;
    let name = checked_name(&p.name)?;
    if !p.path.is_empty() && !p.path.starts_with('/') && !p.path.starts_with('?') {
        return Err(Failure(
            Status::BadRequest,
            "bad_request",
            "path must start with / or ?".into(),
        ));
    }
    // The same rules as over HTTP: the function must see the path that was asked for.
    let route = p.path.split('?').next().unwrap_or("");
    if has_dot_segment(route) || p.path.chars().any(|c| c.is_control() || c == ' ') {
        let message = "path must not hold `.` or `..` segments, spaces or control characters";
        return Err(Failure(Status::BadRequest, "bad_request", message.into()));
    }
    let max_body = match context.registry.lookup(name) {
        Some(crate::registry::Route::Active(pool)) => pool.limits.max_body_size,
        _ => context.max_body_size,
    };
    if request.raw.len() > max_body {
        let message = format!("the body is larger than max_body_size ({max_body} bytes)");
        return Err(Failure(Status::BadRequest, "payload_too_large", message));
    }
    let method = p.method.unwrap_or_else(|| {
        if request.raw.is_empty() {
            "GET"
        } else {
            "POST"
        }
        .into()
    });
    if !answer::is_token(&method) {
        return Err(Failure(
            Status::BadRequest,
            "bad_request",
            format!("{method:?} is not an HTTP method"),
        ));
    }
    if let Some((name, _)) = p.headers.iter().find(|(n, v)| !answer::safe_header(n, v)) {
        return Err(Failure(
            Status::BadRequest,
            "bad_request",
            format!("header {name:?} has a bad name or value"),
        ));
    }
    let id = new_invocation_id();
    let mut headers: Vec<(String, String)> = p
        .headers
        .into_iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("x-invocation-id"))
        .collect();
    headers.push(("x-invocation-id".into(), id.clone()));
    let invocation = Invocation {
        id: id.clone(),
        function: name.to_string(),
        method: method.to_ascii_uppercase(),
        url: format!("http://localhost/functions/{name}{}", p.path),
        headers,
        body: request.raw,
        received,
        // The API's fixed threads and backlog bound its callers (BUSY past them).
        may_queue: true,
    };
    let completed = context.scheduler.invoke(&invocation);
    let facts = json!({ "invocation_id": id, "cold": completed.facts.cold, "version": completed.facts.version,
        "duration_ms": completed.duration.as_millis() as u64 });
    let (response, error_code) = match completed.result {
        Ok(response) => {
            let mut answer = answer::Answer::from_function(response);
            if p.stream {
                if let Some(stream) = answer.stream.take() {
                    let mut json = json!({ "status": answer.status, "headers": answer.headers,
                        "error_code": null, "streaming": true });
                    merge(&mut json, facts);
                    return Ok((Frame::new(Status::Ok.code(), json), Some(stream)));
                }
            }
            match answer.stream.take().map(|stream| stream.collect()) {
                None => (answer, None),
                Some(Ok(body)) => {
                    answer.body = body;
                    (answer, None)
                }
                Some(Err(e)) => {
                    let answer = answer::stream_failed(e);
                    let code = error_code(&answer);
                    (answer, code)
                }
            }
        }
        Err(InvokeError::NotFound) => {
            return Err(Failure(
                Status::NotFound,
                "not_found",
                format!("no function named {name}"),
            ))
        }
        Err(InvokeError::Timeout(limit)) => {
            let message = format!(
                "the function did not answer within {} ms",
                limit.as_millis()
            );
            let mut frame = error_frame(Status::Timeout, "timeout", &message);
            merge(&mut frame.json, facts);
            return Ok((frame, None));
        }
        Err(InvokeError::QueueFull) => {
            return Err(Failure(
                Status::Busy,
                "queue_full",
                "all workers are busy and the queue is full".into(),
            ))
        }
        Err(e) => {
            // The socket is the operator's channel: errors come with their details.
            let answer = answer::error(e, true);
            let code = error_code(&answer);
            (answer, code)
        }
    };
    let mut json =
        json!({ "status": response.status, "headers": response.headers, "error_code": error_code });
    merge(&mut json, facts);
    Ok((
        Frame::new(Status::Ok.code(), json).with_raw(response.body),
        None,
    ))
}

/// Sends a streamed body as frames: `{"chunk":true}` with the bytes as the raw part, as
/// they come, then `{"end":true}`, or `{"end":true,"error":{code,message}}` when the
/// stream was cut. A client that goes away cancels the function's stream.
/// `gone` says whether the client closed its side; it is asked while the stream is quiet.
pub fn stream_frames(
    out: &mut impl std::io::Write,
    mut stream: Box<BodyStream>,
    gone: impl Fn() -> bool,
) -> std::io::Result<()> {
    loop {
        let frame = match stream.poll_chunk(QUIET_CHECK) {
            Ok(Polled::Chunk(bytes)) => {
                Frame::new(Status::Ok.code(), json!({ "chunk": true })).with_raw(bytes)
            }
            Ok(Polled::End) => Frame::new(Status::Ok.code(), json!({ "end": true })),
            Ok(Polled::Quiet) => {
                if gone() {
                    stream.abort("the socket client went away");
                    return Err(std::io::ErrorKind::ConnectionAborted.into());
                }
                continue;
            }
            Err(e) => {
                log::warn!("response stream cut on the socket: {e}");
                let error = json!({ "code": e.code(), "message": e.to_string() });
                Frame::new(Status::Ok.code(), json!({ "end": true, "error": error }))
            }
        };
        let last = frame.json.get("end").is_some();
        if let Err(e) = frame.write_to(out) {
            stream.abort("the socket client went away");
            return Err(e);
        }
        if last {
            return Ok(());
        }
    }
}

/// The `error.code` of a JSON error answer.
fn error_code(answer: &answer::Answer) -> Option<String> {
    serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(String::from))
}

pub(super) fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}
