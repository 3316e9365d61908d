//! Every stderr line of a server, kept for the whole life of the process (a pipe nobody
//! reads would block it), with waits that end at a deadline.

use std::io::{BufRead, BufReader};
use std::process::ChildStderr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Every stderr line the server wrote, and whether the pipe closed.
#[derive(Default)]
pub struct Logs {
    state: Mutex<(String, bool)>,
    changed: Condvar,
}

impl Logs {
    pub fn text(&self) -> String {
        self.state.lock().unwrap().0.clone()
    }

    pub fn drain(&self, stderr: ChildStderr) {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            self.state
                .lock()
                .unwrap()
                .0
                .push_str(&String::from_utf8_lossy(&line));
            self.changed.notify_all();
            line.clear();
        }
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }

    /// Waits until `done` holds for the text (true) or the deadline passes or the pipe
    /// closes without it (false).
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if done(&state.0) {
                return true;
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }
}
