//! `invoke(invocation)`: route by name, get a worker from the pool, send the request, and
//! wait for the reply against the deadline with `select!`. A worker that misses the
//! deadline is killed and replaced; one that crashed is discarded. Every outcome says
//! whether it needed a cold start and how long it took.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use crossbeam_channel::select;

use crate::observe;
use crate::pool::AcquireError;
use crate::registry::{Registry, Route};
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
}

/// What the function answered.
#[derive(Debug)]
pub struct FunctionResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
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
}

/// The result of an invocation with the facts the caller logs and reports.
pub struct Completed {
    pub result: Result<FunctionResponse, InvokeError>,
    pub cold: bool,
    pub version: Option<i64>,
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
        let mut cold = false;
        let mut version = None;
        let result = self.run(invocation, &mut cold, &mut version);
        let duration = started.elapsed();
        if let Err(e) = &result {
            log_failure(&invocation.function, &invocation.id, e);
        }
        if version.is_some() {
            let timed_out = matches!(result, Err(InvokeError::Timeout(_)));
            let failed = match &result {
                Ok(response) => response.status >= 500,
                Err(_) => true,
            };
            observe::record_invocation(&invocation.function, failed, timed_out, cold, duration);
        }
        Completed {
            result,
            cold,
            version,
            duration,
        }
    }

    fn run(
        &self,
        inv: &Invocation,
        cold: &mut bool,
        version: &mut Option<i64>,
    ) -> Result<FunctionResponse, InvokeError> {
        let pool = match self.registry.lookup(&inv.function) {
            None => return Err(InvokeError::NotFound),
            Some(Route::Failed(reason)) => return Err(InvokeError::NotDeployed(reason)),
            Some(Route::Active(pool)) => pool,
        };
        *version = Some(pool.spec.version);
        let timeout = pool.limits.invocation_timeout;
        let deadline = inv.received + timeout;

        let lease = pool.acquire(deadline).map_err(|e| match e {
            AcquireError::QueueFull => InvokeError::QueueFull,
            AcquireError::Timeout => InvokeError::Timeout(timeout),
            AcquireError::StartTimeout => {
                *cold = true;
                InvokeError::Timeout(timeout)
            }
            AcquireError::StartFailed(reason) => {
                *cold = true;
                InvokeError::StartFailed(reason)
            }
        })?;
        *cold = lease.cold;
        let worker = lease.worker;

        let line = ToWorker::Invoke {
            id: &inv.id,
            method: &inv.method,
            url: &inv.url,
            headers: &inv.headers,
            body: BASE64.encode(&inv.body),
            deadline: epoch_ms(deadline),
        }
        .to_line();
        let reply = worker.invoke(&inv.id, line);
        let reply = select! {
            recv(reply) -> reply => reply.unwrap_or_else(|_| Reply::Crashed("worker dropped the invocation".into())),
            recv(crossbeam_channel::at(deadline)) -> _ => {
                worker.forget(&inv.id);
                log::warn!(
                    "invocation timed out, replacing its worker function={} invocation={} worker={} timeout_ms={}",
                    inv.function, inv.id, worker.id, timeout.as_millis()
                );
                pool.discard(worker, "invocation deadline passed");
                return Err(InvokeError::Timeout(timeout));
            }
        };

        match reply {
            Reply::Response(response) => {
                pool.release(worker);
                let body = BASE64
                    .decode(response.body.as_bytes())
                    .map_err(|e| InvokeError::BadResponse(format!("body is not base64: {e}")))?;
                Ok(FunctionResponse {
                    status: response.status,
                    headers: response.headers,
                    body,
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
            Reply::Crashed(reason) => {
                pool.discard(worker, "crashed");
                Err(InvokeError::Crashed(reason))
            }
        }
    }
}

fn log_failure(name: &str, id: &str, error: &InvokeError) {
    match error {
        InvokeError::Threw {
            name: kind,
            message,
            stack,
        } => {
            let detail = observe::escape_controls(&format!("{kind}: {message} stack={stack}"));
            log::warn!("function threw function={name} invocation={id} error={detail}")
        }
        InvokeError::Crashed(reason) => {
            log::warn!("worker crashed function={name} invocation={id}: {reason}")
        }
        InvokeError::StartFailed(reason) => {
            log::warn!("failed to start a worker function={name} invocation={id}: {reason}")
        }
        InvokeError::BadResponse(reason) => {
            log::warn!("bad response function={name} invocation={id}: {reason}")
        }
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
