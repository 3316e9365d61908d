//! The observability hub: every line of function output and one record per invocation
//! arrive here, and go on to the stores that keep them.
//!
//! FIXME: today both are kept in memory only (the newest lines per function, counters
//! since start); issue 4 sends them to logs.db + logs/*.jsonl and metrics.db, written by
//! threads of their own.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::scheduler::InvokeError;

/// Lines kept per function.
const LINES_PER_FUNCTION: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub time_ms: i64,
    pub function: String,
    pub version: i64,
    pub invocation: Option<String>,
    pub stream: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub invocations: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub cold_starts: u64,
    pub duration_ms_total: u64,
    pub duration_ms_max: u64,
}

static LOGS: Mutex<BTreeMap<String, VecDeque<LogLine>>> = Mutex::new(BTreeMap::new());
static COUNTERS: Mutex<BTreeMap<String, Counters>> = Mutex::new(BTreeMap::new());

/// Keeps one line of function output.
pub fn record_log(line: LogLine) {
    let mut logs = LOGS.lock();
    let lines = logs.entry(line.function.clone()).or_default();
    if lines.len() == LINES_PER_FUNCTION {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// The newest `limit` lines of one function (or of all), oldest first.
pub fn recent_logs(function: Option<&str>, limit: usize) -> Vec<LogLine> {
    let logs = LOGS.lock();
    let mut lines: Vec<LogLine> = match function {
        Some(name) => logs
            .get(name)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default(),
        None => logs.values().flat_map(|l| l.iter().cloned()).collect(),
    };
    lines.sort_by_key(|l| l.time_ms);
    let skip = lines.len().saturating_sub(limit);
    lines.split_off(skip)
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
    /// The worker died or answered something unreadable.
    Crash,
    /// The queue was full (429).
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
            Err(InvokeError::Crashed(_) | InvokeError::BadResponse(_)) => Outcome::Crash,
            Err(InvokeError::QueueFull) => Outcome::Throttled,
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

/// Counts one finished invocation.
pub fn record_invocation(record: InvocationRecord) {
    let ms = record.duration.as_millis() as u64;
    let mut counters = COUNTERS.lock();
    let c = counters.entry(record.function.clone()).or_default();
    c.invocations += 1;
    c.errors += u64::from(record.outcome != Outcome::Ok || record.status >= 500);
    c.timeouts += u64::from(record.outcome == Outcome::Timeout);
    c.cold_starts += u64::from(record.cold);
    c.duration_ms_total += ms;
    c.duration_ms_max = c.duration_ms_max.max(ms);
}

/// Counters by function name.
pub fn counters(function: Option<&str>) -> BTreeMap<String, Counters> {
    let counters = COUNTERS.lock();
    counters
        .iter()
        .filter(|(name, _)| function.is_none_or(|f| f == name.as_str()))
        .map(|(name, c)| (name.clone(), c.clone()))
        .collect()
}

/// Forgets a deleted function.
pub fn forget(function: &str) {
    LOGS.lock().remove(function);
    COUNTERS.lock().remove(function);
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

    fn line(function: &str, n: i64) -> LogLine {
        LogLine {
            time_ms: n,
            function: function.into(),
            version: 1,
            invocation: None,
            stream: "log".into(),
            message: n.to_string(),
        }
    }

    #[test]
    fn logs_are_bounded_and_newest_kept() {
        for n in 0..(LINES_PER_FUNCTION as i64 + 5) {
            record_log(line("observe-test", n));
        }
        let recent = recent_logs(Some("observe-test"), 3);
        let messages: Vec<&str> = recent.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["1002", "1003", "1004"]);
        assert_eq!(
            recent_logs(Some("observe-test"), usize::MAX).len(),
            LINES_PER_FUNCTION
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain ✓"), "plain ✓");
        assert_eq!(escape_controls("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{001b}[31m");
    }

    fn record(outcome: Outcome, cold: bool, ms: u64) -> InvocationRecord {
        InvocationRecord {
            function: "observe-count".into(),
            version: 1,
            invocation: "i".into(),
            start_ms: 0,
            duration: Duration::from_millis(ms),
            status: 200,
            outcome,
            cold,
            init: None,
            queue_wait: Duration::ZERO,
            worker_pid: None,
        }
    }

    #[test]
    fn counters_add_up() {
        record_invocation(record(Outcome::Ok, true, 5));
        record_invocation(record(Outcome::Timeout, false, 9));
        let c = &counters(Some("observe-count"))["observe-count"];
        assert_eq!(
            (c.invocations, c.errors, c.timeouts, c.cold_starts),
            (2, 1, 1, 1)
        );
        assert_eq!((c.duration_ms_total, c.duration_ms_max), (14, 9));
    }
}
