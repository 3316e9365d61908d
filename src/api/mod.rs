//! The Unix-socket API: a listener thread accepts connections and hands them to a fixed
//! pool of connection threads over a bounded channel. A connection carries any number of
//! request frames, one after another; each gets one response frame.
//!
//! A frame that cannot be parsed gets an error frame when the connection can still be
//! trusted to be in step (bad JSON, unknown command), and the connection is closed when
//! it cannot (bad length, truncated frame). Either way the server carries on.

pub mod codes;
pub mod frame;
pub mod handlers;
pub mod socket;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter};
use std::net::Shutdown;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use parking_lot::Mutex;
use serde_json::json;

use codes::{Command, Status};
use frame::{Frame, FrameError};
pub use handlers::ApiContext;
pub use socket::SocketError;

/// How long a connection may wait between requests before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the rest of a frame may take once its first byte arrived.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Open connections by id, so shutdown can end their reads.
type Open = Mutex<HashMap<u64, UnixStream>>;

pub struct ApiServer {
    path: PathBuf,
    /// The listening socket's descriptor, to wake `accept` at shutdown.
    listener_fd: RawFd,
    stopping: Arc<AtomicBool>,
    open: Arc<Open>,
    threads: Vec<JoinHandle<()>>,
}

impl ApiServer {
    /// Serves `listener` (bound by [`socket::bind`] at `path`) with an accept thread and
    /// `threads` connection threads.
    pub fn start(
        listener: UnixListener,
        path: &Path,
        threads: usize,
        max_frame: usize,
        context: Arc<ApiContext>,
    ) -> Result<ApiServer, SocketError> {
        let stopping = Arc::new(AtomicBool::new(false));
        let open: Arc<Open> = Arc::default();
        let (tx, rx) = bounded::<UnixStream>(threads * 4);

        let mut handles = Vec::with_capacity(threads + 1);
        for n in 0..threads {
            let rx = rx.clone();
            let context = Arc::clone(&context);
            let open = Arc::clone(&open);
            let stopping = Arc::clone(&stopping);
            let handle = thread::Builder::new()
                .name(format!("api-{n}"))
                .spawn(move || serve_connections(rx, &context, &open, max_frame, &stopping))
                .map_err(|e| SocketError::Io("start a thread for", path.to_path_buf(), e))?;
            handles.push(handle);
        }
        let listener_fd = listener.as_raw_fd();
        let accept_stopping = Arc::clone(&stopping);
        let handle = thread::Builder::new()
            .name("api-accept".into())
            .spawn(move || accept(listener, tx, &accept_stopping))
            .map_err(|e| SocketError::Io("start a thread for", path.to_path_buf(), e))?;
        handles.push(handle);
        log::info!(
            "socket api listening on {} threads={threads}",
            path.display()
        );
        Ok(ApiServer {
            path: path.to_path_buf(),
            listener_fd,
            stopping,
            open,
            threads: handles,
        })
    }

    /// Stops accepting, lets requests being handled finish, ends idle connections, joins
    /// every thread and removes the socket file.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        // Wake the accept loop (it sees the flag and drops the channel's sender). Shutting
        // the listening socket down works even when its file was deleted meanwhile.
        // SAFETY: the accept thread owns the listener until it is joined below.
        unsafe {
            libc::shutdown(self.listener_fd, libc::SHUT_RDWR);
        }
        let _ = UnixStream::connect(&self.path);
        for stream in self.open.lock().values() {
            let _ = stream.shutdown(Shutdown::Read);
        }
        for handle in self.threads {
            let _ = handle.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept(
    listener: UnixListener,
    tx: crossbeam_channel::Sender<UnixStream>,
    stopping: &AtomicBool,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors, say: pause rather than spin and flood the log.
                log::warn!("failed to accept a socket connection: {e}");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if let Err(e) = tx.try_send(stream) {
            // Every connection thread is busy and the backlog is full: say so and close.
            let mut stream = e.into_inner();
            let busy = error_frame(Status::Busy, "busy", "too many connections; retry shortly");
            let _ = busy.write_to(&mut stream);
        }
    }
}

fn serve_connections(
    rx: Receiver<UnixStream>,
    context: &ApiContext,
    open: &Open,
    max_frame: usize,
    stopping: &AtomicBool,
) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    for mut stream in rx {
        if stopping.load(Ordering::Acquire) {
            // Accepted but never served: say why instead of leaving it hanging.
            let _ = error_frame(
                Status::Unavailable,
                "shutting_down",
                "the server is shutting down",
            )
            .write_to(&mut stream);
            continue;
        }
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            open.lock().insert(id, clone);
        }
        // stop() may have gone through `open` just before this one was added.
        if stopping.load(Ordering::Acquire) {
            let _ = stream.shutdown(Shutdown::Read);
        }
        serve_connection(stream, context, max_frame);
        open.lock().remove(&id);
    }
}

fn serve_connection(stream: UnixStream, context: &ApiContext, max_frame: usize) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(write_half);
    loop {
        // A connection may idle between requests, but a frame once begun must finish soon.
        let _ = reader.get_ref().set_read_timeout(Some(IDLE_TIMEOUT));
        match reader.fill_buf() {
            Ok([]) => return,
            Ok(_) => {}
            Err(e) => {
                log::debug!("socket api: closing an idle or broken connection: {e}");
                return;
            }
        }
        let mut frame_reader = Deadline {
            inner: &mut reader,
            at: Instant::now() + FRAME_TIMEOUT,
        };
        let request = match Frame::read_from(&mut frame_reader, max_frame) {
            Ok(frame) => frame,
            Err(FrameError::Closed) => return,
            Err(FrameError::BadJson(e)) => {
                log::warn!("socket api: bad request frame: {e}");
                let answer = error_frame(
                    Status::BadRequest,
                    "bad_frame",
                    &format!("bad request frame: {e}"),
                );
                if answer.write_to(&mut writer).is_err() {
                    return;
                }
                continue;
            }
            Err(e) => {
                // The byte stream is out of step: answer if we can, then hang up.
                log::warn!("socket api: closing a connection after a bad frame: {e}");
                let _ = error_frame(Status::BadRequest, "bad_frame", &e.to_string())
                    .write_to(&mut writer);
                return;
            }
        };
        let (response, stream) = match Command::from_code(request.code) {
            Some(command) => handlers::dispatch(context, command, request),
            None => {
                log::warn!("socket api: unknown command code {:#04x}", request.code);
                let frame = error_frame(
                    Status::BadRequest,
                    "unknown_command",
                    &format!("unknown command code {}", request.code),
                );
                (frame, None)
            }
        };
        if let Err(e) = response.write_to(&mut writer) {
            log::debug!("socket api: failed to write a response: {e}");
            return;
        }
        if let Some(stream) = stream {
            let gone = || peer_closed(reader.get_ref());
            if let Err(e) = handlers::stream_frames(&mut writer, stream, gone) {
                log::debug!("socket api: the client left during a streamed body: {e}");
                return;
            }
        }
    }
}

/// Whether the peer of `stream` has closed its side: a non-blocking peek sees the end.
/// Bytes waiting (a next request) or nothing yet both mean it is still there.
fn peer_closed(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: recv(2) into one byte we own, on a socket this connection owns; MSG_PEEK
    // leaves the byte for the reader, MSG_DONTWAIT keeps the socket's blocking mode.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => false,
        _ => {
            let e = std::io::Error::last_os_error();
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            )
        }
    }
}

/// Reads from a connection with a deadline for the whole read, not per `read` call, so a
/// client trickling one byte at a time cannot hold a thread past it.
struct Deadline<'a> {
    inner: &'a mut BufReader<UnixStream>,
    at: Instant,
}

impl std::io::Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.inner.get_ref().set_read_timeout(Some(left))?;
        std::io::Read::read(self.inner, buf)
    }
}

/// An error response: `{"error":{"code":...,"message":...}}`.
pub fn error_frame(status: Status, code: &str, message: &str) -> Frame {
    Frame::new(
        status.code(),
        json!({ "error": { "code": code, "message": message } }),
    )
}
