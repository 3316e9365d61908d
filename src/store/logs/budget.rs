//! Output budgets: how much a function may print before the rest is dropped and counted.
//!
//! An invocation keeps at most `log_invocation_max` bytes of output. Lines printed outside
//! any invocation (module top level, timers, raw stderr) get the same number of bytes per
//! function per minute. Once a budget is spent, every further line it covers is dropped,
//! so what is kept is a clean prefix; the drops are counted and reported in one notice
//! line: an invocation's with its record, a minute's once the minute is over. The hub
//! checks every line here before queuing it, so a flood never reaches the writer.

use std::collections::HashMap;

use crate::observe::LogLine;

const MINUTE_MS: i64 = 60_000;
/// Invocations tracked at once; past this the least recently active tenth is forgotten.
const MAX_TRACKED: usize = 10_000;
/// An invocation silent this long is forgotten: its record came already (the lines came
/// from a timer it left behind) or never will.
const IDLE_MS: i64 = 5 * MINUTE_MS;
/// Notices waiting for the writer at most (it takes them at least once a second).
const MAX_PENDING: usize = 1024;

/// Lines and bytes dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub lines: u64,
    pub bytes: u64,
}

impl Dropped {
    pub fn any(&self) -> bool {
        self.lines > 0
    }
}

/// Dropped output that has not been reported yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub function: String,
    pub version: i64,
    pub invocation: Option<String>,
    pub dropped: Dropped,
}

impl Notice {
    /// The text of the notice line, given the budget in bytes.
    pub fn message(&self, limit: u64) -> String {
        truncation_message(self.invocation.is_some(), self.dropped, limit)
    }
}

/// "output truncated: N lines / M bytes dropped (...)".
pub fn truncation_message(in_invocation: bool, dropped: Dropped, limit: u64) -> String {
    let scope = match in_invocation {
        true => format!("log_invocation_max keeps {limit} bytes per invocation"),
        false => format!("outside invocations, {limit} bytes a minute are kept per function"),
    };
    format!(
        "output truncated: {} lines / {} bytes dropped ({scope})",
        dropped.lines, dropped.bytes
    )
}

struct Usage {
    function: String,
    version: i64,
    kept: u64,
    dropped: Dropped,
    last_ms: i64,
}

struct Window {
    version: i64,
    minute: i64,
    kept: u64,
    dropped: Dropped,
}

pub struct Budgets {
    limit: u64,
    invocations: HashMap<String, Usage>,
    windows: HashMap<String, Window>,
    pending: Vec<Notice>,
}

impl Budgets {
    pub fn new(limit: u64) -> Budgets {
        Budgets {
            limit,
            invocations: HashMap::new(),
            windows: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Charges a line to its invocation (or to its function's minute): true to keep it.
    pub fn admit(&mut self, line: &LogLine) -> bool {
        let bytes = line.message.len() as u64;
        match &line.invocation {
            Some(id) => self.admit_invocation(id, line, bytes),
            None => self.admit_outside(line, bytes),
        }
    }

    fn admit_invocation(&mut self, id: &str, line: &LogLine, bytes: u64) -> bool {
        if !self.invocations.contains_key(id) {
            if self.invocations.len() >= MAX_TRACKED {
                self.evict();
            }
            let usage = Usage {
                function: line.function.clone(),
                version: line.version,
                kept: 0,
                dropped: Dropped::default(),
                last_ms: line.time_ms,
            };
            self.invocations.insert(id.to_string(), usage);
        }
        let usage = self.invocations.get_mut(id).expect("inserted above");
        usage.last_ms = line.time_ms;
        charge(&mut usage.kept, &mut usage.dropped, bytes, self.limit)
    }

    fn admit_outside(&mut self, line: &LogLine, bytes: u64) -> bool {
        let minute = line.time_ms.div_euclid(MINUTE_MS);
        let window = self.windows.entry(line.function.clone()).or_insert(Window {
            version: line.version,
            minute,
            kept: 0,
            dropped: Dropped::default(),
        });
        if window.minute != minute {
            let dropped = std::mem::take(&mut window.dropped);
            let version = window.version;
            (window.minute, window.kept) = (minute, 0);
            if dropped.any() {
                let notice = Notice {
                    function: line.function.clone(),
                    version,
                    invocation: None,
                    dropped,
                };
                push(&mut self.pending, notice);
            }
        }
        let window = self
            .windows
            .get_mut(&line.function)
            .expect("inserted above");
        window.version = line.version;
        charge(&mut window.kept, &mut window.dropped, bytes, self.limit)
    }

    /// Ends an invocation: what it dropped, to report with its record.
    pub fn finish(&mut self, invocation: &str) -> Dropped {
        self.invocations
            .remove(invocation)
            .map(|usage| usage.dropped)
            .unwrap_or_default()
    }

    /// The notices due at `now_ms`: minutes that are over, invocations forgotten.
    pub fn take_notices(&mut self, now_ms: i64) -> Vec<Notice> {
        let minute = now_ms.div_euclid(MINUTE_MS);
        for (function, window) in &mut self.windows {
            if window.minute < minute && window.dropped.any() {
                let notice = Notice {
                    function: function.clone(),
                    version: window.version,
                    invocation: None,
                    dropped: std::mem::take(&mut window.dropped),
                };
                push(&mut self.pending, notice);
            }
        }
        self.windows.retain(|_, w| w.minute >= minute);
        let idle: Vec<String> = self
            .invocations
            .iter()
            .filter(|(_, usage)| now_ms - usage.last_ms >= IDLE_MS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            self.forget_invocation(&id);
        }
        std::mem::take(&mut self.pending)
    }

    /// Forgets everything of a deleted function.
    pub fn forget_function(&mut self, function: &str) {
        self.windows.remove(function);
        self.invocations
            .retain(|_, usage| usage.function != function);
        self.pending.retain(|notice| notice.function != function);
    }

    fn forget_invocation(&mut self, id: &str) {
        let Some(usage) = self.invocations.remove(id) else {
            return;
        };
        if usage.dropped.any() {
            let notice = Notice {
                function: usage.function,
                version: usage.version,
                invocation: Some(id.to_string()),
                dropped: usage.dropped,
            };
            push(&mut self.pending, notice);
        }
    }

    /// Forgets the least recently active tenth of the invocations tracked.
    fn evict(&mut self) {
        let mut by_age: Vec<(i64, String)> = self
            .invocations
            .iter()
            .map(|(id, usage)| (usage.last_ms, id.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, id) in by_age.into_iter().take(MAX_TRACKED / 10) {
            self.forget_invocation(&id);
        }
    }
}

/// Keeps `bytes` if they fit in what is left of `limit` and nothing was dropped yet.
fn charge(kept: &mut u64, dropped: &mut Dropped, bytes: u64, limit: u64) -> bool {
    if dropped.any() || kept.saturating_add(bytes) > limit {
        dropped.lines += 1;
        dropped.bytes += bytes;
        return false;
    }
    *kept += bytes;
    true
}

fn push(pending: &mut Vec<Notice>, notice: Notice) {
    if pending.len() < MAX_PENDING {
        pending.push(notice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(invocation: Option<&str>, time_ms: i64, bytes: usize) -> LogLine {
        LogLine {
            time_ms,
            function: "f".into(),
            version: 1,
            invocation: invocation.map(String::from),
            stream: "log".into(),
            message: "x".repeat(bytes),
        }
    }

    #[test]
    fn an_invocation_keeps_a_prefix_and_counts_the_rest() {
        let mut budgets = Budgets::new(100);
        assert!(budgets.admit(&line(Some("a"), 0, 60)));
        assert!(!budgets.admit(&line(Some("a"), 0, 50)));
        // A line that would fit is still dropped once dropping began: no gaps.
        assert!(!budgets.admit(&line(Some("a"), 0, 10)));
        // Another invocation has its own budget.
        assert!(budgets.admit(&line(Some("b"), 0, 100)));
        assert_eq!(
            budgets.finish("a"),
            Dropped {
                lines: 2,
                bytes: 60
            }
        );
        assert_eq!(budgets.finish("b"), Dropped::default());
        assert_eq!(budgets.finish("unknown"), Dropped::default());
        assert_eq!(budgets.take_notices(0), []);
    }

    #[test]
    fn output_outside_invocations_is_limited_per_minute() {
        let mut budgets = Budgets::new(100);
        assert!(budgets.admit(&line(None, 1_000, 80)));
        assert!(!budgets.admit(&line(None, 2_000, 80)));
        assert_eq!(budgets.take_notices(59_999), []);

        // The next minute starts afresh; the last one's drops become a notice.
        assert!(budgets.admit(&line(None, 60_000, 80)));
        let notices = budgets.take_notices(60_500);
        assert_eq!(notices.len(), 1);
        assert_eq!(
            (notices[0].dropped.lines, notices[0].dropped.bytes),
            (1, 80)
        );
        assert_eq!(notices[0].invocation, None);

        // A minute that ends quietly is reported by the writer's sweep.
        assert!(!budgets.admit(&line(None, 61_000, 30)));
        assert_eq!(budgets.take_notices(61_000), []);
        assert_eq!(budgets.take_notices(120_000)[0].dropped.lines, 1);
    }

    #[test]
    fn silent_invocations_are_forgotten_with_a_notice_when_they_dropped() {
        let mut budgets = Budgets::new(10);
        assert!(!budgets.admit(&line(Some("late"), 0, 20)));
        assert!(budgets.admit(&line(Some("quiet"), 0, 5)));
        let notices = budgets.take_notices(IDLE_MS);
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].invocation.as_deref(), Some("late"));
        assert!(notices[0]
            .message(10)
            .starts_with("output truncated: 1 lines / 20 bytes"));
        assert_eq!(budgets.finish("quiet"), Dropped::default());
    }

    #[test]
    fn tracking_is_bounded() {
        let mut budgets = Budgets::new(10);
        for n in 0..(MAX_TRACKED as i64 + 5) {
            budgets.admit(&line(Some(&n.to_string()), n, 1));
        }
        assert!(budgets.invocations.len() <= MAX_TRACKED);
        assert!(!budgets.invocations.contains_key("0"));
    }
}
