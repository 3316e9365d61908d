//! Recent function output and per-function invocation counters, kept in memory for the
//! socket API's GET_LOGS and GET_METRICS.
//!
//! FIXME: nothing here survives a restart and only the newest lines are kept; the
//! observability issue (4) moves logs to logs.db + logs/*.jsonl and counters to
//! metrics.db, written by their own threads.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

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

/// Counts one finished invocation.
pub fn record_invocation(
    function: &str,
    failed: bool,
    timed_out: bool,
    cold: bool,
    took: Duration,
) {
    let ms = took.as_millis() as u64;
    let mut counters = COUNTERS.lock();
    let c = counters.entry(function.to_string()).or_default();
    c.invocations += 1;
    c.errors += u64::from(failed);
    c.timeouts += u64::from(timed_out);
    c.cold_starts += u64::from(cold);
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

    #[test]
    fn counters_add_up() {
        record_invocation(
            "observe-count",
            false,
            false,
            true,
            Duration::from_millis(5),
        );
        record_invocation("observe-count", true, true, false, Duration::from_millis(9));
        let c = &counters(Some("observe-count"))["observe-count"];
        assert_eq!(
            (c.invocations, c.errors, c.timeouts, c.cold_starts),
            (2, 1, 1, 1)
        );
        assert_eq!((c.duration_ms_total, c.duration_ms_max), (14, 9));
    }
}
