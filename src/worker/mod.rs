//! One Bun worker: a child process running `bun/worker.ts` on a function's bundle.
//!
//! Each worker owns three named threads: a writer that feeds stdin from a bounded channel,
//! a reader that parses NDJSON from stdout and routes replies to waiting invocations by id,
//! and a stderr drain that logs the child's stderr and keeps its tail. The reader also reaps
//! the child: when stdout closes it waits for the exit status, kills what is left of the
//! process group, and fails every pending invocation with the reason the worker died.

mod handoff;
mod lines;
mod pipes;
pub mod process;
pub mod protocol;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, TryRecvError};
use parking_lot::Mutex;

use handoff::LineQueue;
pub use handoff::Oneshot;
use protocol::{ErrorMsg, Headers, ResponseMsg, ToWorker};

/// Environment variables of the server that workers inherit; everything else is dropped
/// so one function never sees the server's or another function's secrets.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "TMPDIR", "LANG", "TZ"];

/// What a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub function: String,
    pub version: i64,
    pub bun: PathBuf,
    pub script: PathBuf,
    pub bundle: PathBuf,
    pub env: BTreeMap<String, String>,
}

/// Why a worker did not become ready.
#[derive(Debug)]
pub enum StartError {
    Died(String),
    Deadline,
}

/// The outcome of one invocation as the worker reports it.
#[derive(Debug)]
pub enum Reply {
    Response(ResponseMsg),
    Error(ErrorMsg),
    /// The body passed the invocation's `max_response`.
    TooLarge,
    /// A streamed response: its head, then its body as [`StreamEvent`]s. The channel
    /// disconnects without an end when the worker dies.
    Stream {
        status: u16,
        headers: Headers,
        events: Receiver<StreamEvent>,
    },
    Crashed(String),
}

/// What a streamed body delivers.
#[derive(Debug)]
pub enum StreamEvent {
    /// Body bytes, base64 as the worker sent them.
    Chunk(String),
    /// The end; with the stream's error when it failed.
    End(Option<String>),
    /// The body passed `max_response`; the worker cancelled the stream.
    TooLarge,
}

/// Chunks a streamed body may have unacknowledged (the worker's `WINDOW`).
pub const STREAM_WINDOW: usize = 8;

/// Invocations waiting for a reply, and why the worker died once it has.
#[derive(Default)]
struct Pending {
    waiting: HashMap<String, Arc<Oneshot<Reply>>>,
    exit: Option<String>,
}

/// State the worker's threads share with it.
struct Shared {
    function: String,
    version: i64,
    worker_id: u64,
    pending: Mutex<Pending>,
    /// Why the server killed the worker, when it did; leads the exit reason.
    killed_for: Mutex<Option<String>>,
}

pub struct Worker {
    pub id: u64,
    pid: u32,
    shared: Arc<Shared>,
    /// Lines for the stdin writer; closed to stop the worker.
    input: Arc<LineQueue>,
    ready: Receiver<Result<(), String>>,
    /// Disconnected once the child has been reaped.
    exited: Receiver<()>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

static NEXT_WORKER_ID: AtomicU64 = AtomicU64::new(1);

/// Process ids of every worker not yet reaped, by worker id, so shutdown can kill them all.
static LIVE: Mutex<BTreeMap<u64, u32>> = Mutex::new(BTreeMap::new());

/// Kills every worker still running; returns how many. The last step of shutdown.
pub fn kill_all() -> usize {
    let live: Vec<u32> = LIVE.lock().values().copied().collect();
    for pid in &live {
        process::kill_group(*pid);
    }
    live.len()
}

impl Worker {
    /// Starts a worker; it is usable once [`Worker::wait_ready`] succeeds.
    pub fn spawn(spec: &WorkerSpec) -> std::io::Result<Worker> {
        let mut command = Command::new(&spec.bun);
        command
            .arg(&spec.script)
            .arg(&spec.bundle)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = spec.bundle.parent() {
            command.current_dir(dir);
        }
        for name in INHERITED_ENV {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(&spec.env);
        let mut child = process::spawn(command)?;

        let id = NEXT_WORKER_ID.fetch_add(1, Ordering::Relaxed);
        let pid = child.id();
        LIVE.lock().insert(id, pid);
        let shared = Arc::new(Shared {
            function: spec.function.clone(),
            version: spec.version,
            worker_id: id,
            pending: Mutex::new(Pending::default()),
            killed_for: Mutex::new(None),
        });
        let stdin = child.stdin.take().expect("stdin is piped");
        let input = Arc::new(LineQueue::new(stdin, 64));
        let writer_input = Arc::clone(&input);
        let (ready_tx, ready_rx) = bounded(1);
        let (exited_tx, exited_rx) = bounded(0);

        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let name = |role: &str| format!("{}-{role}-{id}", spec.function);
        let writer = pipes::start(name("stdin"), move || writer_input.run_writer());
        let tail = Arc::new(Mutex::new(pipes::StderrTail::default()));
        let stderr_shared = Arc::clone(&shared);
        let stderr_tail = Arc::clone(&tail);
        let drain = pipes::start(name("stderr"), move || {
            pipes::drain_stderr(stderr, &stderr_shared, &stderr_tail)
        });
        let reader_shared = Arc::clone(&shared);
        let reader = pipes::start(name("stdout"), move || {
            let exit = pipes::ChildExit {
                child,
                stderr_thread: drain,
                tail,
                exited: exited_tx,
            };
            pipes::read_stdout(stdout, &reader_shared, ready_tx, exit)
        });

        log::debug!(
            "started worker function={} version={} worker={id} pid={pid}",
            spec.function,
            spec.version
        );
        Ok(Worker {
            id,
            pid,
            shared,
            input,
            ready: ready_rx,
            exited: exited_rx,
            threads: Mutex::new(vec![writer, reader]),
        })
    }

    /// Waits until the worker says it is ready, it dies, or `deadline` passes.
    pub fn wait_ready(&self, deadline: Instant) -> Result<(), StartError> {
        select! {
            recv(self.ready) -> outcome => match outcome {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(StartError::Died(reason)),
                Err(_) => Err(StartError::Died(self.exit_reason().unwrap_or_else(|| "worker exited".into()))),
            },
            recv(crossbeam_channel::at(deadline)) -> _ => {
                self.kill("not ready before the deadline");
                Err(StartError::Deadline)
            }
        }
    }

    /// Sends an invocation line; the reply arrives in the returned slot.
    pub fn invoke(&self, id: &str, line: Vec<u8>) -> Arc<Oneshot<Reply>> {
        let slot = Arc::new(Oneshot::new());
        let mut pending = self.shared.pending.lock();
        if let Some(reason) = &pending.exit {
            slot.put(Reply::Crashed(reason.clone()));
            return slot;
        }
        if self.input.push(line) {
            pending.waiting.insert(id.to_string(), Arc::clone(&slot));
        } else {
            slot.put(Reply::Crashed("worker is not accepting input".into()));
        }
        slot
    }

    /// Acknowledges `chunks` delivered chunks of the streamed body of `id`.
    pub fn ack(&self, id: &str, chunks: u32) {
        self.control(ToWorker::Ack { id, chunks }.to_line());
    }

    /// Asks the worker to cancel the streamed body of `id`; it answers with its end.
    pub fn cancel(&self, id: &str) {
        self.control(ToWorker::Cancel { id }.to_line());
    }

    /// Sends a control line; if the input queue is full or closed it is dropped, and
    /// the caller's wait for the stream's next event runs into its deadline instead.
    fn control(&self, line: Vec<u8>) {
        let _ = self.input.push(line);
    }

    /// Why the worker exited, or `fallback` while that is not known yet.
    pub fn exit_reason_or(&self, fallback: &str) -> String {
        self.exit_reason().unwrap_or_else(|| fallback.to_string())
    }

    /// The process id of the Bun child.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops waiting for `id` (after its deadline passed).
    pub fn forget(&self, id: &str) {
        self.shared.pending.lock().waiting.remove(id);
    }

    /// Whether the child has exited (or is known to be dying).
    pub fn is_dead(&self) -> bool {
        self.shared.pending.lock().exit.is_some() || self.shared.killed_for.lock().is_some()
    }

    fn exit_reason(&self) -> Option<String> {
        self.shared.pending.lock().exit.clone()
    }

    fn reaped(&self) -> bool {
        matches!(self.exited.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Kills the worker's process group now. The reader thread reaps it.
    pub fn kill(&self, why: &str) {
        if !self.reaped() {
            log::debug!(
                "killing worker function={} version={} worker={} pid={} reason={why}",
                self.shared.function,
                self.shared.version,
                self.id,
                self.pid
            );
            process::kill_group(self.pid);
        }
    }

    /// Kills the worker for a reason its pending invocations and the log will show.
    pub fn kill_for(&self, reason: String) {
        log::warn!(
            "killing worker function={} version={} worker={} pid={}: {reason}",
            self.shared.function,
            self.shared.version,
            self.id,
            self.pid
        );
        *self.shared.killed_for.lock() = Some(reason);
        self.kill("see above");
    }

    /// Resident memory of the Bun process, from /proc (None once it is gone).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Closes stdin (the worker finishes in-flight work and exits), waits up to `grace`,
    /// then kills it; joins its threads either way.
    pub fn stop(&self, grace: Duration) {
        self.input.close();
        let deadline = Instant::now() + grace;
        if !matches!(self.exited.recv_deadline(deadline), Err(e) if e.is_disconnected()) {
            self.kill("did not exit within the grace period");
        }
        self.join();
    }

    /// Joins the pipe threads, waiting at most a second for them: a process the function
    /// detached (setsid) can hold the worker's stdout open after the worker died, and no
    /// caller may block on that.
    // FIXME: such a worker stays a zombie until that process closes stdout; reaping on
    // exit (pidfd or a SIGCHLD thread) instead of at stdout's end would fix it.
    fn join(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        let deadline = Instant::now() + Duration::from_secs(1);
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for handle in threads {
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                log::warn!(
                    "leaving a pipe thread of worker {} behind: something the function spawned keeps the pipe open",
                    self.id
                );
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.input.close();
        self.kill("dropped");
        self.join();
    }
}
