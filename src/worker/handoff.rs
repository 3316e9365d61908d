//! The two hand-offs on an invocation's hot path, built on parking_lot's `Mutex` and
//! `Condvar`: a one-shot slot for the worker's reply, and the worker's stdin with the
//! lines its writer thread still has to write. They replace crossbeam channels there because a blocking crossbeam
//! receive spins and calls `sched_yield` before it sleeps; with a thread per request
//! waiting, that was about a tenth of the server's CPU under load (perf, 50 connections),
//! more than the work itself.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::ChildStdin;
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

/// The worker's stdin and the lines not yet written to it. A caller writes its line
/// itself when nothing waits before it and the pipe takes it (the common case: one write
/// call, no thread hand-off); what the pipe does not take waits here for the writer
/// thread, at most `capacity` lines. The pipe is non-blocking, so no caller ever blocks
/// on a worker that stopped reading. Closing it ends the writer once it has written what
/// is queued; only the writer thread closes the pipe.
pub struct LineQueue {
    state: Mutex<Lines>,
    ready: Condvar,
    capacity: usize,
}

struct Lines {
    stdin: Option<ChildStdin>,
    queued: VecDeque<Vec<u8>>,
    /// Bytes of the first queued line already written.
    written: usize,
    closed: bool,
    /// A write failed (the worker is gone): nothing more is taken.
    broken: bool,
}

impl LineQueue {
    pub fn new(stdin: ChildStdin, capacity: usize) -> LineQueue {
        set_nonblocking(&stdin);
        LineQueue {
            state: Mutex::new(Lines {
                stdin: Some(stdin),
                queued: VecDeque::new(),
                written: 0,
                closed: false,
                broken: false,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    /// Writes or queues `line`; false when the queue is full or closed, or the worker
    /// gone.
    pub fn push(&self, line: Vec<u8>) -> bool {
        let mut state = self.state.lock();
        if state.closed || state.broken {
            return false;
        }
        if state.queued.is_empty() {
            let Some(stdin) = state.stdin.as_mut() else {
                return false;
            };
            match write_some(stdin, &line) {
                Ok(n) if n == line.len() => return true,
                Ok(n) => state.written = n,
                Err(_) => {
                    state.broken = true;
                    self.ready.notify_one();
                    return false;
                }
            }
        } else if state.queued.len() >= self.capacity {
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

    /// The writer thread's loop: writes what callers could not, waiting for the pipe to
    /// take more when it is full; closes stdin (the worker's cue to exit) when done.
    pub fn run_writer(&self) {
        loop {
            let mut state = self.state.lock();
            while state.queued.is_empty() && !state.closed && !state.broken {
                self.ready.wait(&mut state);
            }
            if state.broken || (state.closed && state.queued.is_empty()) {
                state.stdin = None;
                return;
            }
            let Lines {
                stdin,
                queued,
                written,
                broken,
                ..
            } = &mut *state;
            let (Some(pipe), Some(line)) = (stdin.as_mut(), queued.front()) else {
                return;
            };
            match write_some(pipe, &line[*written..]) {
                Ok(n) if *written + n == line.len() => {
                    queued.pop_front();
                    *written = 0;
                }
                Ok(n) => {
                    *written += n;
                    let fd = pipe.as_raw_fd();
                    drop(state);
                    wait_writable(fd);
                }
                Err(_) => *broken = true,
            }
        }
    }
}

/// Writes as much of `bytes` as the pipe takes now.
fn write_some(pipe: &mut ChildStdin, bytes: &[u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match pipe.write(&bytes[done..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn set_nonblocking(pipe: &ChildStdin) {
    let fd = pipe.as_raw_fd();
    // SAFETY: fcntl(2) on a descriptor we own; only the status flags change.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Waits until `fd` can take more bytes, or 200 ms.
fn wait_writable(fd: std::os::fd::RawFd) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd we own; the descriptor stays open, since only this
    // thread closes it.
    unsafe {
        libc::poll(&mut poll, 1, 200);
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
    fn lines_are_written_at_once_queued_when_the_pipe_is_full_and_drained_in_order() {
        use std::io::Read;
        use std::process::{Command, Stdio};
        // `sleep` never reads its stdin: the pipe fills, then lines queue up.
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let queue = LineQueue::new(stdin, 4);
        let line = vec![b'x'; 40 << 10];
        assert!(queue.push(line.clone()), "the first line fits the pipe");
        let mut queued = 0;
        while queue.push(line.clone()) {
            queued += 1;
            assert!(queued <= 6, "the queue did not fill up");
        }
        assert!(queued >= 1, "nothing was queued");
        child.kill().unwrap();
        child.wait().unwrap();

        // With a reader, everything arrives in order and the writer ends at close.
        let mut cat = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let queue = Arc::new(LineQueue::new(cat.stdin.take().unwrap(), 64));
        let writer = Arc::clone(&queue);
        let thread = std::thread::spawn(move || writer.run_writer());
        for n in 0..32u8 {
            assert!(queue.push(vec![b'a' + n % 26; 10 << 10]));
        }
        queue.close();
        let mut out = Vec::new();
        cat.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        thread.join().unwrap();
        assert_eq!(out.len(), 32 * (10 << 10));
        assert!(out
            .chunks(10 << 10)
            .enumerate()
            .all(|(n, c)| c[0] == b'a' + n as u8 % 26));
        cat.wait().unwrap();
    }
}
