//! The bodies of a worker's stdout reader and stderr drain (the stdin writer is
//! `handoff::LineQueue::run_writer`).

use std::collections::{HashMap, VecDeque};
use std::process::{Child, ChildStderr, ChildStdout, ExitStatus};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender, TrySendError};
use parking_lot::Mutex;

use super::lines::LineReader;
use super::process::kill_group;
use super::protocol::{parse_line, ErrorMsg, FromWorker};
use super::{Reply, Shared, StreamEvent, STREAM_WINDOW};

/// The largest stdout line accepted: a response carries its body base64-encoded inline.
const MAX_PROTOCOL_LINE: usize = 96 << 20;
/// Function output longer than this per line is cut, with a marker saying how much.
pub const MAX_LOG_LINE: usize = 16 << 10;
/// How long a dead worker's stderr may take to reach its end before it is left behind.
const STDERR_LINGER: Duration = Duration::from_millis(500);
/// Lines of stderr kept to explain a crash.
const TAIL_LINES: usize = 10;
/// Function output longer than this per message is cut (the worker cuts at 64 KiB too;
/// a raw stdout line is only bounded by [`MAX_PROTOCOL_LINE`]).
const MAX_MESSAGE: usize = 64 << 10;
/// Stream names and invocation ids longer than this are cut.
const MAX_LABEL: usize = 64;

pub fn start(name: String, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new()
        .name(name)
        .spawn(body)
        .expect("failed to start a worker pipe thread")
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
    let mut oversized = false;
    let pid = exit.child.id();
    // Streamed bodies in progress, by invocation id. Dropped when the worker is gone,
    // which tells their readers it died.
    let mut streams: HashMap<String, Sender<StreamEvent>> = HashMap::new();
    while let Ok(Some(dropped)) = reader.next_line(&mut buf) {
        if dropped > 0 {
            oversized = true;
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
                Some(id) => {
                    deliver(shared, &id, Reply::Error(error));
                }
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
            Some(FromWorker::TooLarge { id }) => match streams.remove(&id) {
                Some(stream) => {
                    let _ = stream.try_send(StreamEvent::TooLarge);
                }
                None => {
                    deliver(shared, &id, Reply::TooLarge);
                }
            },
            Some(FromWorker::Head(head)) => {
                // Room for the window and the end: a worker that honours the acks never
                // finds the channel full.
                let (tx, events) = bounded(STREAM_WINDOW + 2);
                let reply = Reply::Stream {
                    status: head.status,
                    headers: head.headers,
                    events,
                };
                if deliver(shared, &head.id, reply) {
                    streams.insert(head.id, tx);
                }
            }
            Some(FromWorker::Chunk { id, data }) => {
                let Some(stream) = streams.get(&id) else {
                    continue;
                };
                match stream.try_send(StreamEvent::Chunk(data)) {
                    Ok(()) => {}
                    Err(TrySendError::Disconnected(_)) => {
                        streams.remove(&id);
                    }
                    Err(TrySendError::Full(_)) => {
                        log::error!(
                            "worker sent more stream chunks than acknowledged, killing it function={} worker={} invocation={id}",
                            shared.function,
                            shared.worker_id
                        );
                        *shared.killed_for.lock() =
                            Some("it ignored the stream's flow control".into());
                        kill_group(pid);
                    }
                }
            }
            Some(FromWorker::End { id, error }) => {
                if let Some(stream) = streams.remove(&id) {
                    let _ = stream.try_send(StreamEvent::End(error));
                }
            }
            Some(FromWorker::Log { id, level, message }) => {
                log_output(shared, id.as_deref(), &level, &message);
            }
            // A line that looks like a protocol message but does not parse was cut short
            // (the worker was killed while writing it): it may hold another request's
            // body, so it is dropped, not stored as output.
            None if buf.starts_with(br#"{"type":"#) => log::warn!(
                "dropping a protocol message cut short ({} bytes) function={} worker={}",
                buf.len(),
                shared.function,
                shared.worker_id
            ),
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
    // A process that left the group (setsid) may keep stderr open for as long as it
    // likes: wait a moment for the drain to finish, then leave it to end on its own.
    let waited = Instant::now();
    while !stderr_thread.is_finished() && waited.elapsed() < STDERR_LINGER {
        thread::sleep(Duration::from_millis(5));
    }
    if stderr_thread.is_finished() {
        let _ = stderr_thread.join();
    } else {
        log::warn!(
            "worker exited but something it spawned keeps its stderr open function={} worker={}",
            shared.function,
            shared.worker_id
        );
    }
    let mut reason = describe_exit(status.ok(), boot_error.as_ref(), &tail.lock().joined());
    if let Some(killed_for) = shared.killed_for.lock().clone() {
        reason = format!("{killed_for}; {reason}");
    }
    if oversized {
        reason = format!(
            "it sent a message over {} MiB (too large a response?); {reason}",
            MAX_PROTOCOL_LINE >> 20
        );
    }
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
        reply.put(Reply::Crashed(reason.clone()));
    }
    drop(streams);
    let _ = ready.try_send(Err(reason));
    drop(exited);
}

/// Hands `reply` to the invocation waiting for it; false if none does (any more).
fn deliver(shared: &Shared, id: &str, reply: Reply) -> bool {
    let waiting = shared.pending.lock().waiting.remove(id);
    match waiting {
        Some(slot) => {
            slot.put(reply);
            true
        }
        None => {
            log::debug!(
                "dropping a reply nobody waits for function={} invocation={id}",
                shared.function
            );
            false
        }
    }
}

/// Hands one line of function output to the observability hub, attributed to its
/// invocation when known. Control characters are escaped so output cannot forge log
/// lines; a message is cut at [`MAX_MESSAGE`], and the stream name and invocation id (which
/// a function can forge with raw protocol lines) at [`MAX_LABEL`].
fn log_output(shared: &Shared, invocation: Option<&str>, level: &str, message: &str) {
    let label = |text: &str| crate::observe::escape_controls(cut(text, MAX_LABEL).0);
    // A write of one whole line (`process.stdout.write("...\n")`) ends in its line break.
    let message = message.strip_suffix('\n').unwrap_or(message);
    let message = message.strip_suffix('\r').unwrap_or(message);
    let (kept, dropped) = cut(message, MAX_MESSAGE);
    let mut message = crate::observe::escape_controls(kept);
    if dropped > 0 {
        message.push_str(&format!(" …[truncated {dropped} bytes]"));
    }
    crate::observe::record_log(crate::observe::LogLine {
        time_ms: crate::store::now_ms(),
        function: shared.function.clone(),
        version: shared.version,
        invocation: invocation.map(label),
        stream: label(level),
        message,
    });
}

/// The longest prefix of `text` within `max` bytes, and how many bytes it leaves out.
fn cut(text: &str, max: usize) -> (&str, usize) {
    if text.len() <= max {
        return (text, 0);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], text.len() - end)
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

    #[test]
    fn cuts_fall_on_character_boundaries() {
        assert_eq!(cut("abc", 3), ("abc", 0));
        assert_eq!(cut("aé", 2), ("a", 2));
    }
}
