//! The hub's end of the writer's channel. Nothing here blocks on the writer: a line over
//! its budget is dropped and counted for its invocation or minute; a line that finds the
//! channel full (in slots or in queued bytes) is dropped and counted for its function,
//! and the writer reports those counts in a notice line once it catches up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;

use super::budget::Budgets;
use super::Entry;
use crate::observe::{InvocationRecord, LogLine};

/// Entries the channel holds.
const CAPACITY: usize = 16_384;
/// Slots lines may not take, kept for invocation records and control entries.
const RESERVED: usize = 2_048;
/// Bytes of queued lines at most, so a backlog of long lines stays small.
const MAX_QUEUED_BYTES: usize = 16 << 20;
/// How long deleting a function may wait for room in the channel.
const FORGET_WAIT: Duration = Duration::from_secs(1);

/// State the sink and the writer share.
pub(super) struct Shared {
    pub budgets: Mutex<Budgets>,
    /// Lines and records that found the channel full, by function.
    pub overflow: Mutex<BTreeMap<String, Overflow>>,
    pub queued_bytes: AtomicUsize,
    /// The budget in bytes, for the notices' text.
    pub limit: u64,
}

/// What one function lost to a full channel since the writer last looked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Overflow {
    pub version: i64,
    pub lines: u64,
    pub bytes: u64,
    pub records: u64,
}

pub struct Sink {
    tx: Sender<Entry>,
    shared: Arc<Shared>,
}

/// A sink with `limit` bytes per invocation, the state it shares with the writer, and
/// the writer's end of the channel.
pub(super) fn channel(limit: u64) -> (Sink, Arc<Shared>, Receiver<Entry>) {
    let (tx, rx) = bounded(CAPACITY);
    let shared = Arc::new(Shared {
        budgets: Mutex::new(Budgets::new(limit)),
        overflow: Mutex::new(BTreeMap::new()),
        queued_bytes: AtomicUsize::new(0),
        limit,
    });
    let sink = Sink {
        tx,
        shared: Arc::clone(&shared),
    };
    (sink, shared, rx)
}

/// The bytes a queued line holds, roughly.
pub(super) fn cost(line: &LogLine) -> usize {
    line.message.len() + line.function.len() + 128
}

impl Sink {
    /// Charges a line to its budget: true to keep it.
    pub fn admit(&self, line: &LogLine) -> bool {
        self.shared.budgets.lock().admit(line)
    }

    /// Queues an admitted line, or drops and counts it when the writer is behind.
    pub fn queue(&self, line: LogLine) {
        let bytes = cost(&line);
        let queued = &self.shared.queued_bytes;
        let room = self.tx.len() < CAPACITY - RESERVED
            && queued.load(Ordering::Relaxed) + bytes <= MAX_QUEUED_BYTES;
        let line = match room {
            true => {
                queued.fetch_add(bytes, Ordering::Relaxed);
                match self.tx.try_send(Entry::Line(line)) {
                    Ok(()) => return,
                    Err(e) => {
                        queued.fetch_sub(bytes, Ordering::Relaxed);
                        match e.into_inner() {
                            Entry::Line(line) => line,
                            _ => unreachable!("a line was sent"),
                        }
                    }
                }
            }
            false => line,
        };
        let mut overflow = self.shared.overflow.lock();
        let counts = overflow.entry(line.function).or_default();
        counts.version = line.version;
        counts.lines += 1;
        counts.bytes += line.message.len() as u64;
    }

    /// Queues an invocation's record behind its lines, with what its budget dropped.
    pub fn invocation(&self, record: &InvocationRecord) {
        let dropped = self.shared.budgets.lock().finish(&record.invocation);
        let entry = Entry::Invocation(Box::new(record.clone()), dropped);
        if self.tx.try_send(entry).is_err() {
            let mut overflow = self.shared.overflow.lock();
            let counts = overflow.entry(record.function.clone()).or_default();
            counts.version = record.version;
            counts.records += 1;
        }
    }

    /// Deletes what the store holds of a deleted function (its JSONL lines stay).
    pub fn forget(&self, function: &str) {
        self.shared.budgets.lock().forget_function(function);
        self.shared.overflow.lock().remove(function);
        let entry = Entry::Forget(function.to_string());
        if self.tx.send_timeout(entry, FORGET_WAIT).is_err() {
            log::warn!(
                "failed to delete the stored logs of function={function}: the log writer is behind"
            );
        }
    }

    /// Waits (up to `timeout`) until the writer committed everything queued before; false
    /// when it did not answer in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = bounded(1);
        self.tx.try_send(Entry::Flush(ack)).is_ok() && done.recv_timeout(timeout).is_ok()
    }

    /// Asks the writer to end once it committed everything queued. It may wait for room
    /// in the channel, which the writer is emptying.
    pub(super) fn stop(&self) {
        let _ = self.tx.send(Entry::Stop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> LogLine {
        LogLine {
            time_ms: 0,
            function: "f".into(),
            version: 3,
            invocation: None,
            stream: "log".into(),
            message: "x".repeat(n),
        }
    }

    #[test]
    fn a_full_channel_drops_and_counts_but_keeps_room_for_records() {
        let (sink, shared, rx) = channel(u64::MAX);
        for _ in 0..CAPACITY {
            sink.queue(line(10));
        }
        assert_eq!(rx.len(), CAPACITY - RESERVED);
        let counts = shared.overflow.lock()["f"];
        assert_eq!(
            (counts.lines, counts.bytes, counts.version),
            (RESERVED as u64, 10 * RESERVED as u64, 3)
        );

        // Records still fit in the reserved slots.
        let record = InvocationRecord {
            function: "f".into(),
            version: 3,
            invocation: "i".into(),
            start_ms: 0,
            duration: Duration::ZERO,
            status: 200,
            outcome: crate::observe::Outcome::Ok,
            cold: false,
            init: None,
            queue_wait: Duration::ZERO,
            worker_pid: None,
        };
        sink.invocation(&record);
        assert_eq!(rx.len(), CAPACITY - RESERVED + 1);
        assert_eq!(shared.overflow.lock()["f"].records, 0);
    }

    #[test]
    fn queued_bytes_are_bounded() {
        let (sink, shared, rx) = channel(u64::MAX);
        let big = 1 << 20;
        for _ in 0..40 {
            sink.queue(line(big));
        }
        assert!(rx.len() <= MAX_QUEUED_BYTES / big);
        assert!(shared.queued_bytes.load(Ordering::Relaxed) <= MAX_QUEUED_BYTES);
        assert!(shared.overflow.lock()["f"].lines >= 40 - (MAX_QUEUED_BYTES / big) as u64);
    }
}
