//! Shared helper of the integration tests: runs a real `functions serve` on a free port
//! of 127.0.0.1, in temporary directories, with a config file of the test's own and no
//! `FUNCTIONS_*` variable inherited. It keeps every stderr line for assertions and kills
//! and reaps the server when dropped. `builder` starts it, `logs` keeps its stderr,
//! `http` talks to it and `procs` finds its workers.

mod builder;
pub mod http;
mod logs;
pub mod procs;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use builder::{write_env_file, ServerBuilder};
pub use http::{Request, Response};
use logs::Logs;

/// The first start builds every function with `bun build`, which can be slow.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bun_path() -> PathBuf {
    let bun = manifest_dir().join("bun/node_modules/.bin/bun");
    assert!(bun.exists(), "Bun is missing: run `npm ci --prefix bun`");
    bun
}

/// A function file of `tests/functions/`.
pub fn test_function(file: &str) -> PathBuf {
    manifest_dir().join("tests/functions").join(file)
}

pub struct Server {
    child: Child,
    port: Option<u16>,
    logs: Arc<Logs>,
    config_path: PathBuf,
    socket: PathBuf,
    _temp: TempDir,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    fn wait_listening(&mut self, timeout: Duration) -> Result<(), String> {
        let pattern = regex::Regex::new(r"listening on http://127\.0\.0\.1:(\d+)").unwrap();
        let mut port = None;
        let found = self.logs.wait_until(timeout, |text| {
            port = pattern.captures(text).and_then(|c| c[1].parse().ok());
            port.is_some()
        });
        if found {
            self.port = port;
            return Ok(());
        }
        // The pipe closes as the process ends, a moment before it can be reaped.
        let why = match self.try_wait_exit(Duration::from_secs(2)) {
            Some(status) => format!("exited with {status}"),
            None => format!("did not log `listening on` within {timeout:?}"),
        };
        Err(format!("server {why}; stderr:\n{}", self.logs_tail(8000)))
    }

    pub fn addr(&self) -> SocketAddr {
        let port = self.port.expect("the server is not listening");
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The socket API's path: the configured `socket`, else `<data_dir>/functions.sock`.
    /// It is bound before the server logs `listening on`, so it is ready once started.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Everything the server wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// The last `max` bytes of the logs (or so), for failure messages.
    pub fn logs_tail(&self, max: usize) -> String {
        let logs = self.logs();
        let mut cut = logs.len().saturating_sub(max);
        while !logs.is_char_boundary(cut) {
            cut += 1;
        }
        logs[cut..].to_string()
    }

    /// Waits until stderr contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.logs.wait_until(timeout, |text| text.contains(needle))
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(
            rc,
            0,
            "kill({}, {signal}) failed: {}",
            self.child.id(),
            io::Error::last_os_error()
        );
    }

    /// SIGTERM, then waits (up to 30 s) for a clean exit: code 0, or a panic with stderr.
    /// For tests that restart a server on the same data dir.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(30));
        assert_eq!(status.code(), Some(0), "stderr:\n{}", self.logs_tail(4000));
    }

    /// Waits for the server to exit by itself; panics with its stderr after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.try_wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "server still running after {timeout:?}; stderr:\n{}",
                self.logs_tail(8000)
            )
        })
    }

    /// Like `wait_exit`, but None after `timeout`. Once the process is gone it also waits
    /// (briefly) for the stderr reader to reach the end, so `logs()` has the last lines.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("failed to poll the server") {
                self.logs.wait_until(Duration::from_secs(2), |_| false);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a request on a new connection.
    pub fn send(&self, request: &Request) -> io::Result<Response> {
        http::send(self.addr(), request)
    }

    /// Sends a request; panics with the server's stderr if no answer comes.
    pub fn call(&self, request: &Request) -> Response {
        self.send(request).unwrap_or_else(|e| {
            let (method, path) = (&request.method, &request.path);
            panic!(
                "{method} {path} failed: {e}; stderr:\n{}",
                self.logs_tail(8000)
            )
        })
    }

    pub fn get(&self, path: &str) -> Response {
        self.call(&Request::get(path))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();

        // The workers die with the server, which closes the pipe; do not hang if not.
        self.logs.wait_until(Duration::from_secs(5), |_| false);
    }
}

/// Asserts a gateway error answer: the status and the JSON `error.code`.
#[track_caller]
pub fn assert_error(response: &Response, status: u16, code: &str) {
    assert_eq!(
        response.status,
        status,
        "unexpected status; body: {}",
        response.text()
    );
    let json = response.json();
    assert_eq!(json["error"]["code"], code, "unexpected error body: {json}");
    assert!(
        json["error"]["message"].is_string(),
        "error without a message: {json}"
    );
}
