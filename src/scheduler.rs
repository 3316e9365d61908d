//! `invoke(invocation)`: route by name, get a worker from the pool, send the request, and
//! wait for the reply against the deadline (`worker::Oneshot`). A worker that misses the
//! deadline is killed and replaced; one that crashed is discarded. Every outcome says
//! whether it needed a cold start and how long it took.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::observe;
use crate::pool::AcquireError;
use crate::registry::{Registry, Route};
use crate::stream::BodyStream;
use crate::worker::protocol::{Headers, ToWorker};
use crate::worker::Reply;

/// One request to run a function.
pub struct Invocation {
    pub id: String,
    pub function: String,
    pub method: String,
    pub url: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// When the request arrived; the deadline counts from here.
    pub received: Instant,
    /// Whether it may wait in the function's queue when every worker is busy; if not, it
    /// gets 429 at once (the gateway keeps threads in reserve this way).
    pub may_queue: bool,
}

/// What the function answered.
#[derive(Debug)]
pub struct FunctionResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: Body,
}

/// A response body: whole, or streamed from the worker as the function produces it.
#[derive(Debug)]
pub enum Body {
    Full(Vec<u8>),
    Stream(Box<BodyStream>),
}

/// Why an invocation produced no response of the function's own.
#[derive(Debug)]
pub enum InvokeError {
    NotFound,
    NotDeployed(String),
    QueueFull,
    Timeout(Duration),
    StartFailed(String),
    Threw {
        name: String,
        message: String,
        stack: String,
    },
    Crashed(String),
    BadResponse(String),
    /// The response body was larger than `max_response_size` (the limit, in bytes).
    ResponseTooLarge(usize),
    /// The server is shutting down (the invocation waited in a queue past the grace).
    ShuttingDown,
}

/// What is known about how an invocation ran, whatever its outcome.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// The version that served it, once the function was found.
    pub version: Option<i64>,
    /// Whether a new worker had to start for it.
    pub cold: bool,
    /// How long that worker took to become ready.
    pub init: Option<Duration>,
    /// How long it waited for a worker (queue and start included).
    pub queue_wait: Duration,
    pub worker_pid: Option<u32>,
}

/// The result of an invocation with the facts the caller logs and reports.
pub struct Completed {
    pub result: Result<FunctionResponse, InvokeError>,
    pub facts: Facts,
    pub duration: Duration,
}

pub struct Scheduler {
    registry: Arc<Registry>,
}

impl Scheduler {
    pub fn new(registry: Arc<Registry>) -> Scheduler {
        Scheduler { registry }
    }

    pub fn invoke(&self, invocation: &Invocation) -> Completed {
        let started = Instant::now();
        let started_ms = crate::store::now_ms();
        let mut facts = Facts::default();
        let result = self.run(invocation, &mut facts);
        let mut result = result;
        let duration = started.elapsed();
        if let Err(e) = &result {
            log_failure(&invocation.function, &invocation.id, facts.version, e);
        }
        if let Some(version) = facts.version {
            let record = observe::InvocationRecord {
                function: invocation.function.clone(),
                version,
                invocation: invocation.id.clone(),
                start_ms: started_ms,
                duration,
                status: status_of(&result),
                outcome: observe::Outcome::of(&result),
                cold: facts.cold,
                init: facts.init,
                queue_wait: facts.queue_wait,
                worker_pid: facts.worker_pid,
            };
            // A stream is recorded when it is over, with its whole duration.
            match &mut result {
                Ok(FunctionResponse {
                    body: Body::Stream(stream),
                    ..
                }) => stream.record_when_done(record, started),
                _ => observe::record_invocation(record),
            }
        }
        Completed {
            result,
            facts,
            duration,
        }
    }

    fn run(&self, inv: &Invocation, facts: &mut Facts) -> Result<FunctionResponse, InvokeError> {
        let pool = match self.registry.lookup(&inv.function) {
            None => return Err(InvokeError::NotFound),
            Some(Route::Failed(reason)) => return Err(InvokeError::NotDeployed(reason)),
            Some(Route::Active(pool)) => pool,
        };
        facts.version = Some(pool.spec.version);
        let timeout = pool.limits.invocation_timeout;
        let deadline = inv.received + timeout;

        let waiting = Instant::now();
        let lease = pool.acquire(deadline, inv.may_queue);
        facts.queue_wait = waiting.elapsed();
        let lease = lease.map_err(|e| match e {
            AcquireError::QueueFull => InvokeError::QueueFull,
            AcquireError::Closed => InvokeError::ShuttingDown,
            AcquireError::Timeout => InvokeError::Timeout(timeout),
            AcquireError::StartTimeout => {
                facts.cold = true;
                InvokeError::Timeout(timeout)
            }
            AcquireError::StartFailed(reason) => {
                facts.cold = true;
                InvokeError::StartFailed(reason)
            }
        })?;
        facts.cold = lease.init.is_some();
        facts.init = lease.init;
        facts.worker_pid = Some(lease.worker.pid());
        let worker = lease.worker;

        let line = ToWorker::Invoke {
            id: &inv.id,
            method: &inv.method,
            url: &inv.url,
            headers: &inv.headers,
            body: BASE64.encode(&inv.body),
            deadline: epoch_ms(deadline),
            max_response: pool.limits.max_response_size,
        }
        .to_line();
        let Some(reply) = worker.invoke(&inv.id, line).wait_until(deadline) else {
            worker.forget(&inv.id);
            log::warn!(
                "invocation timed out, replacing its worker function={} invocation={} worker={} timeout_ms={}",
                inv.function, inv.id, worker.id, timeout.as_millis()
            );
            pool.discard(worker, "invocation deadline passed");
            return Err(InvokeError::Timeout(timeout));
        };

        match reply {
            Reply::Response(response) if !(100..=999).contains(&response.status) => {
                // Response.error() (status 0) and the like: no HTTP answer of the function's.
                pool.release(worker);
                Err(InvokeError::BadResponse(format!(
                    "the function returned status {}, which is not an HTTP status",
                    response.status
                )))
            }
            Reply::Response(response) => {
                pool.release(worker);
                let body = BASE64
                    .decode(response.body.as_bytes())
                    .map_err(|e| InvokeError::BadResponse(format!("body is not base64: {e}")))?;
                let limit = pool.limits.max_response_size;
                if body.len() > limit {
                    return Err(InvokeError::ResponseTooLarge(limit));
                }
                Ok(FunctionResponse {
                    status: response.status,
                    headers: response.headers,
                    body: Body::Full(body),
                })
            }
            Reply::Error(error) => {
                pool.release(worker);
                Err(InvokeError::Threw {
                    name: error.name,
                    message: error.message,
                    stack: error.stack,
                })
            }
            Reply::Stream {
                status,
                headers,
                events,
            } => {
                if !(100..=999).contains(&status) {
                    pool.discard(worker, "streamed a status that is not an HTTP status");
                    return Err(InvokeError::BadResponse(format!(
                        "the function returned status {status}, which is not an HTTP status"
                    )));
                }
                let stream = BodyStream::new(&inv.id, events, worker, pool, deadline);
                Ok(FunctionResponse {
                    status,
                    headers,
                    body: Body::Stream(Box::new(stream)),
                })
            }
            Reply::TooLarge => {
                pool.release(worker);
                Err(InvokeError::ResponseTooLarge(pool.limits.max_response_size))
            }
            Reply::Crashed(reason) => {
                pool.discard(worker, "crashed");
                Err(InvokeError::Crashed(reason))
            }
        }
    }
}

/// The HTTP status the caller gets, as the gateway maps it.
fn status_of(result: &Result<FunctionResponse, InvokeError>) -> u16 {
    match result {
        Ok(response) => response.status,
        Err(e) => e.status(),
    }
}

impl InvokeError {
    /// The HTTP status this error is answered with (`gateway::answer` writes the body).
    pub fn status(&self) -> u16 {
        match self {
            InvokeError::NotFound => 404,
            InvokeError::ShuttingDown => 503,
            InvokeError::QueueFull => 429,
            InvokeError::Timeout(_) => 504,
            InvokeError::Crashed(_)
            | InvokeError::BadResponse(_)
            | InvokeError::ResponseTooLarge(_) => 502,
            InvokeError::NotDeployed(_)
            | InvokeError::StartFailed(_)
            | InvokeError::Threw { .. } => 500,
        }
    }
}

/// Logs why an invocation failed. A thrown error is the function's own output: it goes
/// to the function's logs (and from there to the server log) with its stack.
fn log_failure(name: &str, id: &str, version: Option<i64>, error: &InvokeError) {
    match error {
        InvokeError::Threw {
            name: kind,
            message,
            stack,
        } => match version {
            Some(version) => observe::record_log(observe::LogLine {
                time_ms: crate::store::now_ms(),
                function: name.to_string(),
                version,
                invocation: Some(id.to_string()),
                stream: "error".into(),
                message: format!("Uncaught {kind}: {message}\n{stack}")
                    .trim_end()
                    .to_string(),
            }),
            None => log::warn!("function threw function={name} invocation={id} error={kind}"),
        },
        InvokeError::Crashed(reason) => {
            log::warn!("worker crashed function={name} invocation={id}: {reason}")
        }
        InvokeError::StartFailed(reason) => {
            log::warn!("failed to start a worker function={name} invocation={id}: {reason}")
        }
        InvokeError::BadResponse(reason) => {
            log::warn!("bad response function={name} invocation={id}: {reason}")
        }
        InvokeError::ResponseTooLarge(limit) => log::warn!(
            "response over max_response_size function={name} invocation={id} limit_bytes={limit}"
        ),
        _ => {}
    }
}

/// An `Instant` as milliseconds since the Unix epoch, for the worker's `deadline` field.
fn epoch_ms(at: Instant) -> u64 {
    let now = SystemTime::now();
    let wall = match at.checked_duration_since(Instant::now()) {
        Some(ahead) => now + ahead,
        None => now,
    };
    wall.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
