//! How entries look once stored: the JSON objects of lines and records (GET_LOGS and the
//! JSONL files), the text of the notices about lost output, and the peak memory of a
//! record's worker, which the writer reads from `/proc` (never the request path).

use std::time::Duration;

use serde::Serialize;

use super::budget::Dropped;
use super::level;
use super::query::{StoredLine, StoredRecord};
use super::sink::Overflow;
use crate::observe::{InvocationRecord, LogLine};

/// "log writer fell behind: N lines / M bytes dropped".
pub fn overflow_message(counts: &Overflow) -> String {
    let mut message = format!(
        "log writer fell behind: {} lines / {} bytes dropped",
        counts.lines, counts.bytes
    );
    if counts.records > 0 {
        message.push_str(&format!(", {} invocation records lost", counts.records));
    }
    message
}

pub fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

pub fn stored_line(line: &LogLine, id: Option<i64>) -> StoredLine {
    StoredLine {
        id,
        time_ms: line.time_ms,
        function: line.function.clone(),
        version: line.version,
        invocation: line.invocation.clone(),
        stream: line.stream.clone(),
        level: level::name(level::rank(&line.stream)),
        message: line.message.clone(),
    }
}

pub fn stored_record(
    r: &InvocationRecord,
    dropped: Dropped,
    peak: Option<u64>,
    id: Option<i64>,
) -> StoredRecord {
    let ms = |d: Duration| micros(d) as f64 / 1000.0;
    StoredRecord {
        id,
        invocation: r.invocation.clone(),
        function: r.function.clone(),
        version: r.version,
        start_ms: r.start_ms,
        duration_ms: ms(r.duration),
        status: r.status,
        outcome: r.outcome.as_str().into(),
        cold: r.cold,
        init_ms: r.init.map(ms),
        queue_wait_ms: ms(r.queue_wait),
        worker_pid: r.worker_pid,
        peak_rss_bytes: peak,
        lines_dropped: dropped.lines,
        bytes_dropped: dropped.bytes,
    }
}

/// A JSONL object: the entry's fields after `"type"`.
pub fn tagged<T: Serialize>(kind: &'static str, entry: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct Tagged<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        entry: &'a T,
    }
    serde_json::to_vec(&Tagged { kind, entry }).expect("log entries serialize")
}

/// The peak resident memory of worker `pid` since it started (`VmHWM`), if it still runs
/// as our child.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_peak_rss(&status, std::process::id())
}

/// `VmHWM` in bytes from a `/proc/PID/status` text, if its `PPid` is `parent` (a pid
/// reused by a stranger does not count).
fn parse_peak_rss(status: &str, parent: u32) -> Option<u64> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    if field("PPid:")? != u64::from(parent) {
        return None;
    }
    field("VmHWM:").map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_reads_vm_hwm_of_our_children_only() {
        let status = "Name:\tbun\nPPid:\t42\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_peak_rss(status, 42), Some(51200 * 1024));
        assert_eq!(parse_peak_rss(status, 7), None);
        assert_eq!(parse_peak_rss("PPid:\t42\n", 42), None);
    }

    #[test]
    fn overflow_notices_say_what_was_lost() {
        let counts = Overflow {
            version: 1,
            lines: 3,
            bytes: 30,
            records: 0,
        };
        assert_eq!(
            overflow_message(&counts),
            "log writer fell behind: 3 lines / 30 bytes dropped"
        );
        let counts = Overflow {
            records: 2,
            ..counts
        };
        assert!(overflow_message(&counts).ends_with(", 2 invocation records lost"));
    }
}
