//! A streamed response body on the control plane's side: it hands the worker's chunks to
//! whoever writes them (the gateway or the socket API) one at a time, acknowledges each
//! chunk once its writer asks for the next (so a slow client slows the worker's stream
//! instead of filling memory: at most `STREAM_WINDOW` chunks are in flight), and holds
//! the worker's lease until the stream is over. The invocation's deadline covers the
//! whole stream; the sum of the chunks is bounded by `max_response_size`.
//!
//! However the stream ends, the worker goes back to its pool when it ended the stream
//! itself (end, error, too large, or after a cancel it answered within [`CANCEL_GRACE`]),
//! and is discarded (killed) when it missed the deadline, died, or did not answer a
//! cancel. The invocation record is written then, with the whole stream's duration.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use crossbeam_channel::{select, Receiver, RecvTimeoutError};

use crate::observe::{self, InvocationRecord, Outcome};
use crate::pool::Pool;
use crate::worker::{StreamEvent, Worker};

/// How long a worker may take to end a stream it was asked to cancel.
pub const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// Why a streamed body did not reach its end.
#[derive(Debug)]
pub enum StreamError {
    /// The invocation deadline passed; the worker was killed.
    Timeout(Duration),
    /// The chunks passed `max_response_size` (the limit, in bytes).
    TooLarge(usize),
    /// The function's stream failed (its error, `Name: message`).
    Failed(String),
    /// The worker died mid-stream.
    Crashed(String),
    /// A chunk was not base64.
    BadChunk(String),
}

impl StreamError {
    /// The error code clients see, as for an invocation that failed before answering.
    pub fn code(&self) -> &'static str {
        match self {
            StreamError::Timeout(_) => "timeout",
            StreamError::TooLarge(_) => "response_too_large",
            StreamError::Crashed(_) => "worker_crashed",
            StreamError::Failed(_) | StreamError::BadChunk(_) => "bad_response",
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Timeout(limit) => {
                write!(f, "the stream passed the {} ms deadline", limit.as_millis())
            }
            StreamError::TooLarge(limit) => {
                write!(f, "the stream passed max_response_size ({limit} bytes)")
            }
            StreamError::Failed(error) => write!(f, "the function's stream failed: {error}"),
            StreamError::Crashed(reason) => write!(f, "the worker died mid-stream: {reason}"),
            StreamError::BadChunk(reason) => write!(f, "a stream chunk was unreadable: {reason}"),
        }
    }
}

/// One streamed response body in progress.
pub struct BodyStream {
    id: String,
    events: Receiver<StreamEvent>,
    /// The leased worker, until the stream is over.
    worker: Option<Arc<Worker>>,
    pool: Arc<Pool>,
    deadline: Instant,
    timeout: Duration,
    limit: usize,
    received: usize,
    /// Whether the chunk handed out last still needs its ack.
    owe_ack: bool,
    /// Written when the stream is over; `None` for invocations nobody records.
    record: Option<InvocationRecord>,
    started: Instant,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyStream({}, {} bytes so far)", self.id, self.received)
    }
}

/// What [`BodyStream::poll_chunk`] found.
pub enum Polled {
    Chunk(Vec<u8>),
    End,
    /// Nothing yet.
    Quiet,
}

/// How a stream ended, for the pool and the invocation record.
enum End {
    /// The worker ended it: it goes back to the pool.
    Clean(Outcome),
    /// The worker is discarded for this reason.
    Discard(Outcome, &'static str),
}

impl BodyStream {
    /// A stream of invocation `id` read from `events`, holding `worker` of `pool`.
    pub fn new(
        id: &str,
        events: Receiver<StreamEvent>,
        worker: Arc<Worker>,
        pool: Arc<Pool>,
        deadline: Instant,
    ) -> BodyStream {
        BodyStream {
            id: id.to_string(),
            events,
            worker: Some(worker),
            timeout: pool.limits.invocation_timeout,
            limit: pool.limits.max_response_size,
            pool,
            deadline,
            received: 0,
            owe_ack: false,
            record: None,
            started: Instant::now(),
        }
    }

    /// Has the record written when the stream is over (duration from `started`).
    pub fn record_when_done(&mut self, record: InvocationRecord, started: Instant) {
        self.record = Some(record);
        self.started = started;
    }

    /// The next piece of the body, `None` at its end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        loop {
            match self.poll_chunk(Duration::from_secs(3600))? {
                Polled::Chunk(bytes) => return Ok(Some(bytes)),
                Polled::End => return Ok(None),
                Polled::Quiet => {}
            }
        }
    }

    /// The next piece of the body, its end, or [`Polled::Quiet`] when nothing came within
    /// `quiet` (so the caller can check its client is still there).
    pub fn poll_chunk(&mut self, quiet: Duration) -> Result<Polled, StreamError> {
        let Some(worker) = self.worker.clone() else {
            return Ok(Polled::End);
        };
        if self.owe_ack {
            worker.ack(&self.id, 1);
            self.owe_ack = false;
        }
        let wake = (Instant::now() + quiet).min(self.deadline);
        let event = select! {
            recv(self.events) -> event => event,
            recv(crossbeam_channel::at(wake)) -> _ => {
                if Instant::now() < self.deadline {
                    return Ok(Polled::Quiet);
                }
                self.finish(End::Discard(Outcome::Timeout, "stream deadline passed"));
                return Err(StreamError::Timeout(self.timeout));
            }
        };
        match event {
            Ok(StreamEvent::Chunk(data)) => {
                let bytes = match BASE64.decode(data.as_bytes()) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        self.finish(End::Discard(Outcome::Crash, "unreadable stream chunk"));
                        return Err(StreamError::BadChunk(e.to_string()));
                    }
                };
                self.received += bytes.len();
                if self.received > self.limit {
                    // The worker counts too, so this one broke its own limit: replace it.
                    self.finish(End::Discard(
                        Outcome::Crash,
                        "stream over max_response_size",
                    ));
                    return Err(StreamError::TooLarge(self.limit));
                }
                self.owe_ack = true;
                Ok(Polled::Chunk(bytes))
            }
            Ok(StreamEvent::End(None)) => {
                self.finish(End::Clean(Outcome::Ok));
                Ok(Polled::End)
            }
            Ok(StreamEvent::End(Some(error))) => {
                self.finish(End::Clean(Outcome::FunctionError));
                Err(StreamError::Failed(error))
            }
            Ok(StreamEvent::TooLarge) => {
                self.finish(End::Clean(Outcome::Crash));
                Err(StreamError::TooLarge(self.limit))
            }
            Err(_) => {
                let reason = worker.exit_reason_or("the worker stopped streaming");
                self.finish(End::Discard(Outcome::Crash, "died mid-stream"));
                Err(StreamError::Crashed(reason))
            }
        }
    }

    /// The whole body, for callers that cannot stream (HEAD, HTTP/1.0, a socket client
    /// that did not ask for a stream). Bounded by `max_response_size`.
    pub fn collect(mut self) -> Result<Vec<u8>, StreamError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Stops the stream early (the client went away): the worker cancels its stream
    /// (the ReadableStream's `cancel` runs) and goes back to the pool once it has ended
    /// it, or is discarded if it does not within [`CANCEL_GRACE`].
    pub fn abort(mut self, why: &str) {
        self.stop(why);
    }

    fn stop(&mut self, why: &str) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        log::info!(
            "cancelling a response stream function={} invocation={} worker={} reason={why}",
            self.pool.spec.function,
            self.id,
            worker.id
        );
        worker.cancel(&self.id);
        let until = (Instant::now() + CANCEL_GRACE).min(self.deadline.max(Instant::now()));
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                // Chunks sent before the cancel arrived: keep the worker unblocked.
                Ok(StreamEvent::Chunk(_)) => worker.ack(&self.id, 1),
                Ok(StreamEvent::End(_) | StreamEvent::TooLarge) => {
                    self.finish(End::Clean(Outcome::Ok));
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.finish(End::Discard(Outcome::Ok, "did not end a cancelled stream"));
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish(End::Discard(Outcome::Ok, "died mid-stream"));
                    return;
                }
            }
        }
    }

    fn finish(&mut self, end: End) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        let outcome = match end {
            End::Clean(outcome) => {
                self.pool.release(worker);
                outcome
            }
            End::Discard(outcome, why) => {
                self.pool.discard(worker, why);
                outcome
            }
        };
        if let Some(mut record) = self.record.take() {
            record.duration = self.started.elapsed();
            record.outcome = outcome;
            observe::record_invocation(record);
        }
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        self.stop("the stream was dropped before its end");
    }
}
