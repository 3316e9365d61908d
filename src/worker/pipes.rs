//! The bodies of a worker's three pipe threads: stdin writer, stdout reader, stderr drain.

use std::collections::VecDeque;
use std::io::{BufWriter, Write};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::lines::LineReader;
use super::process::kill_group;
use super::protocol::{parse_line, ErrorMsg, FromWorker};
use super::{Reply, Shared};

/// The largest stdout line accepted: a response carries its body base64-encoded inline.
const MAX_PROTOCOL_LINE: usize = 96 << 20;
/// Function output longer than this per line is cut, with a marker saying how much.
pub const MAX_LOG_LINE: usize = 16 << 10;
/// Lines of stderr kept to explain a crash.
const TAIL_LINES: usize = 10;

pub fn start(name: String, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new()
        .name(name)
        .spawn(body)
        .expect("failed to start a worker pipe thread")
}

/// Writes queued protocol lines to the child's stdin until the channel closes, flushing
/// whenever the queue is empty. Ending drops stdin, which tells the worker to exit.
pub fn write_stdin(stdin: ChildStdin, lines: Receiver<Vec<u8>>) {
    let mut out = BufWriter::with_capacity(64 * 1024, stdin);
    for line in lines.iter() {
        if out.write_all(&line).is_err() {
            return;
        }
        if lines.is_empty() && out.flush().is_err() {
            return;
        }
    }
}

/// The last lines the child wrote to stderr.
#[derive(Default)]
pub struct StderrTail {
    lines: VecDeque<String>,
}

impl StderrTail {
    fn push(&mut self, line: String) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    fn joined(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// Logs every stderr line of the child as function output and keeps the tail.
pub fn drain_stderr(stderr: ChildStderr, shared: &Shared, tail: &Mutex<StderrTail>) {
    let mut reader = LineReader::new(stderr, MAX_LOG_LINE);
    let mut buf = Vec::new();
    while let Ok(Some(dropped)) = reader.next_line(&mut buf) {
        if buf.is_empty() {
            continue;
        }
        let text = with_marker(&buf, dropped);
        log_output(shared, None, "stderr", &text);
        tail.lock().push(text);
    }
}

/// What the reader needs to reap the child when stdout closes.
pub struct ChildExit {
    pub child: Child,
    pub stderr_thread: JoinHandle<()>,
    pub tail: Arc<Mutex<StderrTail>>,
    /// Dropped once the child is reaped, which wakes everyone waiting on the worker's exit.
    pub exited: Sender<()>,
}

/// Routes the child's protocol messages until stdout closes, then reaps the child and
/// fails whatever was still pending with the reason it died.
pub fn read_stdout(
    stdout: ChildStdout,
    shared: &Shared,
    ready: Sender<Result<(), String>>,
    exit: ChildExit,
) {
    let mut reader = LineReader::new(stdout, MAX_PROTOCOL_LINE);
    let mut buf = Vec::new();
    let mut boot_error: Option<ErrorMsg> = None;
    let pid = exit.child.id();
    while let Ok(Some(dropped)) = reader.next_line(&mut buf) {
        if dropped > 0 {
            log::error!(
                "worker sent a line over {MAX_PROTOCOL_LINE} bytes, killing it function={} worker={}",
                shared.function,
                shared.worker_id
            );
            kill_group(pid);
            continue;
        }
        if buf.is_empty() {
            continue;
        }
        match parse_line(&buf) {
            Some(FromWorker::Ready { pid }) => {
                log::debug!(
                    "worker ready function={} worker={} pid={pid:?}",
                    shared.function,
                    shared.worker_id
                );
                let _ = ready.try_send(Ok(()));
            }
            Some(FromWorker::Response(response)) => {
                let id = response.id.clone();
                deliver(shared, &id, Reply::Response(response));
            }
            Some(FromWorker::Error(error)) => match error.id.clone() {
                Some(id) => deliver(shared, &id, Reply::Error(error)),
                None => {
                    log_output(
                        shared,
                        None,
                        "error",
                        &format!("{}: {}", error.name, error.message),
                    );
                    boot_error = Some(error);
                }
            },
            Some(FromWorker::Log { id, level, message }) => {
                log_output(shared, id.as_deref(), &level, &message);
            }
            None => log_output(shared, None, "stdout", &with_marker(&buf, 0)),
        }
    }

    let ChildExit {
        mut child,
        stderr_thread,
        tail,
        exited,
    } = exit;
    let status = child.wait();
    super::LIVE.lock().remove(&shared.worker_id);
    // Whatever the worker spawned dies with it; its stderr then reaches end of file.
    kill_group(pid);
    let _ = stderr_thread.join();
    let reason = describe_exit(status.ok(), boot_error.as_ref(), &tail.lock().joined());
    log::info!(
        "worker exited function={} version={} worker={} pid={pid} reason={reason:?}",
        shared.function,
        shared.version,
        shared.worker_id
    );
    let waiting = {
        let mut pending = shared.pending.lock();
        pending.exit = Some(reason.clone());
        std::mem::take(&mut pending.waiting)
    };
    for (_, reply) in waiting {
        let _ = reply.send(Reply::Crashed(reason.clone()));
    }
    let _ = ready.try_send(Err(reason));
    drop(exited);
}

fn deliver(shared: &Shared, id: &str, reply: Reply) {
    let waiting = shared.pending.lock().waiting.remove(id);
    match waiting {
        Some(tx) => {
            let _ = tx.send(reply);
        }
        None => log::debug!(
            "dropping a reply nobody waits for function={} invocation={id}",
            shared.function
        ),
    }
}

/// Logs one line of function output, attributed to its invocation when known, and keeps
/// it for GET_LOGS. Control characters are escaped so output cannot forge log lines.
fn log_output(shared: &Shared, invocation: Option<&str>, level: &str, message: &str) {
    let level_filter = match level {
        "error" => log::Level::Error,
        "warn" | "stderr" => log::Level::Warn,
        "debug" | "trace" => log::Level::Debug,
        _ => log::Level::Info,
    };
    let message = crate::observe::escape_controls(message);
    log::log!(
        target: "function",
        level_filter,
        "function={} version={} invocation={} stream={} {message}",
        shared.function,
        shared.version,
        invocation.unwrap_or("-"),
        crate::observe::escape_controls(level)
    );
    crate::observe::record_log(crate::observe::LogLine {
        time_ms: crate::store::now_ms(),
        function: shared.function.clone(),
        version: shared.version,
        invocation: invocation.map(str::to_string),
        stream: level.to_string(),
        message,
    });
}

/// Text of a line, lossily decoded, with a marker when bytes were cut off.
fn with_marker(bytes: &[u8], dropped: usize) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if dropped > 0 {
        text.push_str(&format!(" …[truncated {dropped} bytes]"));
    }
    text
}

/// One sentence on why a worker ended: exit code or signal, the boot error, stderr's tail.
pub fn describe_exit(status: Option<ExitStatus>, boot: Option<&ErrorMsg>, tail: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let mut reason = match status {
        Some(s) if s.code().is_some() => format!("exited with code {}", s.code().unwrap_or(0)),
        Some(s) => format!("killed by signal {}", s.signal().unwrap_or(0)),
        None => "exited with unknown status".to_string(),
    };
    if let Some(error) = boot {
        reason.push_str(&format!("; {}: {}", error.name, error.message));
    }
    if !tail.is_empty() {
        reason.push_str(&format!("; stderr: {tail}"));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_descriptions_name_code_signal_and_cause() {
        let code3 = ExitStatus::from_raw(3 << 8);
        assert_eq!(describe_exit(Some(code3), None, ""), "exited with code 3");
        let killed = ExitStatus::from_raw(9);
        let boot = ErrorMsg {
            id: None,
            name: "SyntaxError".into(),
            message: "bad".into(),
            stack: String::new(),
        };
        let text = describe_exit(Some(killed), Some(&boot), "oops");
        assert_eq!(text, "killed by signal 9; SyntaxError: bad; stderr: oops");
    }

    #[test]
    fn truncation_marker_says_how_much() {
        assert_eq!(with_marker(b"abc", 0), "abc");
        assert_eq!(with_marker(b"abc", 10), "abc …[truncated 10 bytes]");
    }
}
