//! The two hand-offs on an invocation's hot path, built on parking_lot's `Mutex` and
//! `Condvar`: a one-shot slot for the worker's reply, and the bounded queue of lines for
//! the stdin writer. They replace crossbeam channels there because a blocking crossbeam
//! receive spins and calls `sched_yield` before it sleeps; with a thread per request
//! waiting, that was about a tenth of the server's CPU under load (perf, 50 connections),
//! more than the work itself.

use std::collections::VecDeque;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// A value delivered once by one thread and waited for by another.
pub struct Oneshot<T> {
    slot: Mutex<Option<T>>,
    filled: Condvar,
}

impl<T> Oneshot<T> {
    pub fn new() -> Oneshot<T> {
        Oneshot {
            slot: Mutex::new(None),
            filled: Condvar::new(),
        }
    }

    /// Delivers `value`; a second delivery replaces nothing and is dropped.
    pub fn put(&self, value: T) {
        let mut slot = self.slot.lock();
        if slot.is_none() {
            *slot = Some(value);
            self.filled.notify_one();
        }
    }

    /// The value, once delivered, or `None` when `deadline` passes first.
    pub fn wait_until(&self, deadline: Instant) -> Option<T> {
        let mut slot = self.slot.lock();
        while slot.is_none() {
            if self.filled.wait_until(&mut slot, deadline).timed_out() {
                break;
            }
        }
        slot.take()
    }
}

impl<T> Default for Oneshot<T> {
    fn default() -> Self {
        Oneshot::new()
    }
}

/// Lines for the stdin writer: at most `capacity` waiting; closing it ends the writer
/// once it has written what is queued.
pub struct LineQueue {
    state: Mutex<Lines>,
    ready: Condvar,
    capacity: usize,
}

struct Lines {
    queued: VecDeque<Vec<u8>>,
    closed: bool,
}

impl LineQueue {
    pub fn new(capacity: usize) -> LineQueue {
        LineQueue {
            state: Mutex::new(Lines {
                queued: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    /// Queues `line`; false when the queue is full or closed.
    pub fn push(&self, line: Vec<u8>) -> bool {
        let mut state = self.state.lock();
        if state.closed || state.queued.len() >= self.capacity {
            return false;
        }
        state.queued.push_back(line);
        self.ready.notify_one();
        true
    }

    /// No more lines: the writer ends after the queued ones.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }

    /// Every line queued, waiting until there is one; `None` once closed and empty.
    pub fn take_all(&self) -> Option<Vec<Vec<u8>>> {
        let mut state = self.state.lock();
        while state.queued.is_empty() {
            if state.closed {
                return None;
            }
            self.ready.wait(&mut state);
        }
        Some(state.queued.drain(..).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_oneshot_delivers_once_across_threads_or_times_out() {
        let shot = Arc::new(Oneshot::new());
        let putter = Arc::clone(&shot);
        std::thread::spawn(move || {
            putter.put(1);
            putter.put(2);
        });
        let far = Instant::now() + Duration::from_secs(10);
        assert_eq!(shot.wait_until(far), Some(1));
        let empty: Oneshot<u8> = Oneshot::new();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(empty.wait_until(soon), None);
    }

    #[test]
    fn the_line_queue_is_bounded_and_drains_before_it_ends() {
        let queue = LineQueue::new(2);
        assert!(queue.push(b"a".to_vec()));
        assert!(queue.push(b"b".to_vec()));
        assert!(!queue.push(b"c".to_vec()), "over capacity");
        queue.close();
        assert!(!queue.push(b"d".to_vec()), "closed");
        assert_eq!(queue.take_all(), Some(vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(queue.take_all(), None);
    }
}
