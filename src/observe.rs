//! The observability hub: every line of function output and one record per invocation
//! arrive here, and go on to the stores that keep them: lines and records to the log
//! store (`store::logs`, logs.db and logs/*.jsonl), records also to the metrics
//! (`metrics`, metrics.db and `/metrics`). Each store writes on a thread of its own;
//! nothing here blocks the request path.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;

use crate::scheduler::InvokeError;
use crate::store::logs::Logs;

/// One line of function output.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub time_ms: i64,
    pub function: String,
    pub version: i64,
    pub invocation: Option<String>,
    pub stream: String,
    pub message: String,
}

/// The log store the hub feeds, once the server started it.
static LOG_STORE: RwLock<Option<Arc<Logs>>> = RwLock::new(None);

/// Plugs the log store in: from now on lines and records go to it.
pub fn attach_logs(logs: Arc<Logs>) {
    *LOG_STORE.write() = Some(logs);
}

/// Unplugs the log store; later lines reach only the server's own log.
pub fn detach_logs() {
    LOG_STORE.write().take();
}

/// The log store, for GET_LOGS.
pub fn logs() -> Option<Arc<Logs>> {
    LOG_STORE.read().clone()
}

/// Takes one line of function output. A line within its budget (see `store::logs`) is
/// echoed to the server's log and queued for the log store; nothing here waits for the
/// store, and a line over budget or finding the queue full is only counted.
pub fn record_log(line: LogLine) {
    match logs() {
        Some(logs) if !logs.sink.admit(&line) => {}
        Some(logs) => {
            echo(&line);
            logs.sink.queue(line);
        }
        None => echo(&line),
    }
}

/// Writes a line of function output to the server's log, under the target `function`.
fn echo(line: &LogLine) {
    let level = match line.stream.as_str() {
        "error" => log::Level::Error,
        "warn" | "stderr" => log::Level::Warn,
        "debug" | "trace" => log::Level::Debug,
        _ => log::Level::Info,
    };
    log::log!(
        target: "function",
        level,
        "function={} version={} invocation={} stream={} {}",
        line.function,
        line.version,
        line.invocation.as_deref().unwrap_or("-"),
        line.stream,
        line.message
    );
}

/// How an invocation ended, for records and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The function answered (any status).
    Ok,
    /// The handler threw or rejected.
    FunctionError,
    Timeout,
    /// The worker died, or answered something that cannot be passed on (unreadable,
    /// not an HTTP status, over max_response_size).
    Crash,
    /// The queue was full (429), or the server was shutting down (503).
    Throttled,
    /// No worker could start, or no version is deployed.
    StartFailed,
}

impl Outcome {
    pub fn of<T>(result: &Result<T, InvokeError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(InvokeError::Threw { .. }) => Outcome::FunctionError,
            Err(InvokeError::Timeout(_)) => Outcome::Timeout,
            Err(
                InvokeError::Crashed(_)
                | InvokeError::BadResponse(_)
                | InvokeError::ResponseTooLarge(_),
            ) => Outcome::Crash,
            Err(InvokeError::QueueFull | InvokeError::ShuttingDown) => Outcome::Throttled,
            Err(
                InvokeError::StartFailed(_) | InvokeError::NotDeployed(_) | InvokeError::NotFound,
            ) => Outcome::StartFailed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::FunctionError => "function_error",
            Outcome::Timeout => "timeout",
            Outcome::Crash => "crash",
            Outcome::Throttled => "throttled",
            Outcome::StartFailed => "start_failed",
        }
    }
}

/// One invocation, like a platform's report line.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    pub function: String,
    pub version: i64,
    pub invocation: String,
    pub start_ms: i64,
    pub duration: Duration,
    /// The HTTP status the caller got.
    pub status: u16,
    pub outcome: Outcome,
    pub cold: bool,
    /// How long the worker took to start, for a cold start.
    pub init: Option<Duration>,
    /// How long the invocation waited for a worker.
    pub queue_wait: Duration,
    pub worker_pid: Option<u32>,
}

/// Takes one finished invocation: its record is queued for the log store (behind the
/// invocation's lines), and it is counted.
pub fn record_invocation(record: InvocationRecord) {
    if let Some(logs) = logs() {
        logs.sink.invocation(&record);
    }
    crate::metrics::record(&record);
}

/// Forgets a deleted function.
pub fn forget(function: &str) {
    if let Some(logs) = logs() {
        logs.sink.forget(function);
    }
    crate::metrics::forget(function);
}

/// Replaces control characters (newlines, escapes) with visible escapes like `\n`.
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            c if c.is_control() => format!("\\u{{{:04x}}}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain ✓"), "plain ✓");
        assert_eq!(escape_controls("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{001b}[31m");
    }
}
