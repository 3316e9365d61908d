//! One function version's workers: warm reuse, cold start on demand up to `max_workers`,
//! a bounded queue of waiting invocations, idle reaping above `min_warm`, and retirement
//! when a newer version is deployed or the server stops.
//!
//! The pool hands out capacity as grants: an idle worker, or a slot to start a new one.
//! A returned worker or a freed slot goes straight to the oldest waiter, so a waiter is
//! woken exactly once and never polls. No lock is held while a worker starts or stops.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};
use parking_lot::Mutex;
use serde::Serialize;

use crate::config::Limits;
use crate::worker::{StartError, Worker, WorkerSpec};

/// How long a retired or reaped worker may take to finish before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// After a worker fails to start, no new one is started for this long, doubling with
/// each further failure up to `MAX_START_BACKOFF`; a successful start resets it.
const FIRST_START_BACKOFF: Duration = Duration::from_millis(250);
const MAX_START_BACKOFF: Duration = Duration::from_secs(30);

/// Capacity handed to an invocation.
enum Grant {
    Worker(Arc<Worker>),
    Slot,
    /// The server is shutting down: no worker will come.
    Closed,
}

/// A worker lent to one invocation.
pub struct Lease {
    pub worker: Arc<Worker>,
    /// How long the worker took to start, when it was started for this lease (cold).
    pub init: Option<Duration>,
}

#[derive(Debug)]
pub enum AcquireError {
    QueueFull,
    /// No worker came free before the deadline.
    Timeout,
    /// The server is shutting down.
    Closed,
    /// A new worker was started but was not ready before the deadline.
    StartTimeout,
    StartFailed(String),
}

#[derive(Default)]
struct State {
    idle: Vec<(Arc<Worker>, Instant)>,
    /// Workers alive or starting, idle ones included.
    total: usize,
    waiters: VecDeque<(u64, Sender<Grant>)>,
    next_waiter: u64,
    retired: bool,
    /// Shutting down: nothing waits and nothing starts any more.
    closed: bool,
    /// Failed starts in a row, and until when no start is tried, with the last error.
    start_failures: u32,
    backoff: Option<(Instant, String)>,
    /// Every worker started, busy ones included, for the memory check.
    started: Vec<Weak<Worker>>,
}

/// Counts for `/health`.
#[derive(Debug, Serialize)]
pub struct PoolStats {
    pub version: i64,
    pub workers: usize,
    pub idle: usize,
    pub queued: usize,
}

pub struct Pool {
    pub spec: WorkerSpec,
    pub limits: Limits,
    state: Mutex<State>,
}

impl Pool {
    pub fn new(spec: WorkerSpec, limits: Limits) -> Pool {
        Pool {
            spec,
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// Finds a warm worker, starts one, or waits in the queue (if `may_queue`), all before
    /// `deadline`.
    pub fn acquire(&self, deadline: Instant, may_queue: bool) -> Result<Lease, AcquireError> {
        let waiting = {
            let mut state = self.state.lock();
            if state.closed {
                return Err(AcquireError::Closed);
            }
            while let Some((worker, _)) = state.idle.pop() {
                if !worker.is_dead() {
                    return Ok(Lease { worker, init: None });
                }
                state.total -= 1;
            }
            if state.total < self.limits.max_workers {
                state.total += 1;
                None
            } else if !may_queue || state.waiters.len() >= self.limits.queue_depth {
                return Err(AcquireError::QueueFull);
            } else {
                let (tx, rx) = bounded(1);
                let id = state.next_waiter;
                state.next_waiter += 1;
                state.waiters.push_back((id, tx));
                Some((id, rx))
            }
        };
        let grant = match waiting {
            None => Grant::Slot,
            Some((id, rx)) => self.wait_for_grant(id, rx, deadline)?,
        };
        match grant {
            Grant::Worker(worker) => Ok(Lease { worker, init: None }),
            Grant::Slot => self.start_worker(deadline).map(|(worker, took)| Lease {
                worker,
                init: Some(took),
            }),
            Grant::Closed => Err(AcquireError::Closed),
        }
    }

    fn wait_for_grant(
        &self,
        id: u64,
        rx: Receiver<Grant>,
        deadline: Instant,
    ) -> Result<Grant, AcquireError> {
        select! {
            recv(rx) -> grant => return Ok(grant.expect("a queued waiter's sender is kept until it is granted")),
            recv(crossbeam_channel::at(deadline)) -> _ => {}
        }
        let mut state = self.state.lock();
        if let Some(at) = state.waiters.iter().position(|(waiter, _)| *waiter == id) {
            state.waiters.remove(at);
            return Err(AcquireError::Timeout);
        }
        // Granted while timing out: pass the grant on instead of dropping it.
        drop(state);
        if let Ok(grant) = rx.try_recv() {
            match grant {
                Grant::Worker(worker) => self.release(worker),
                Grant::Slot => self.free_slot(),
                Grant::Closed => {}
            }
        }
        Err(AcquireError::Timeout)
    }

    /// Starts a worker in a slot already counted in `total`; frees the slot on failure.
    /// Returns the worker and how long it took to become ready.
    fn start_worker(&self, deadline: Instant) -> Result<(Arc<Worker>, Duration), AcquireError> {
        if let Some(refusal) = self.backing_off() {
            self.free_slot();
            return Err(AcquireError::StartFailed(refusal));
        }
        let started = Instant::now();
        let result = Worker::spawn(&self.spec)
            .map_err(|e| {
                AcquireError::StartFailed(format!(
                    "failed to start {}: {e}",
                    self.spec.bun.display()
                ))
            })
            .and_then(|worker| match worker.wait_ready(deadline) {
                Ok(()) => Ok(worker),
                Err(StartError::Deadline) => Err(AcquireError::StartTimeout),
                Err(StartError::Died(reason)) => Err(AcquireError::StartFailed(reason)),
            });
        match result {
            Ok(worker) => {
                log::info!(
                    "worker ready function={} version={} worker={} start_ms={}",
                    self.spec.function,
                    self.spec.version,
                    worker.id,
                    started.elapsed().as_millis()
                );
                let worker = Arc::new(worker);
                let mut state = self.state.lock();
                state.start_failures = 0;
                state.backoff = None;
                state.started.retain(|w| w.strong_count() > 0);
                state.started.push(Arc::downgrade(&worker));
                drop(state);
                Ok((worker, started.elapsed()))
            }
            Err(e) => {
                if let AcquireError::StartFailed(reason) = &e {
                    self.start_failed(reason);
                }
                self.free_slot();
                Err(e)
            }
        }
    }

    /// Why no worker may be started now, while backing off after failed starts.
    fn backing_off(&self) -> Option<String> {
        let state = self.state.lock();
        let (until, last) = state.backoff.as_ref()?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(format!(
            "the worker failed to start {} times in a row; next try in {} ms; last error: {last}",
            state.start_failures,
            left.as_millis()
        ))
    }

    /// Counts a failed start and backs off exponentially before the next one.
    fn start_failed(&self, reason: &str) {
        let mut state = self.state.lock();
        state.start_failures += 1;
        let doublings = (state.start_failures - 1).min(16);
        let wait = FIRST_START_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_START_BACKOFF);
        state.backoff = Some((Instant::now() + wait, reason.to_string()));
        log::warn!(
            "worker failed to start function={} version={} failures={} backoff_ms={}: {reason}",
            self.spec.function,
            self.spec.version,
            state.start_failures,
            wait.as_millis()
        );
    }

    /// Returns a worker after an invocation: to the oldest waiter, else to the idle list.
    pub fn release(&self, worker: Arc<Worker>) {
        if worker.is_dead() {
            return self.free_slot();
        }
        let mut state = self.state.lock();
        if state.closed {
            state.total -= 1;
            drop(state);
            stop_in_background(worker);
        } else if let Some((_, waiter)) = state.waiters.pop_front() {
            let _ = waiter.send(Grant::Worker(worker));
        } else if state.retired {
            state.total -= 1;
            drop(state);
            stop_in_background(worker);
        } else {
            state.idle.push((worker, Instant::now()));
        }
    }

    /// Kills a worker that can no longer be trusted (deadline passed, crashed).
    pub fn discard(&self, worker: Arc<Worker>, why: &str) {
        worker.kill(why);
        self.free_slot();
    }

    fn free_slot(&self) {
        let mut state = self.state.lock();
        if state.closed {
            state.total -= 1;
            return;
        }
        match state.waiters.pop_front() {
            Some((_, waiter)) => {
                let _ = waiter.send(Grant::Slot);
            }
            None => state.total -= 1,
        }
    }

    /// Kills every worker whose resident memory is over `memory_limit`; an invocation it
    /// was running gets 502 with that reason, and the pool starts a fresh worker as needed.
    /// Bun cannot cap its own heap, so the limit is enforced from outside, by polling.
    pub fn enforce_memory(&self) {
        let workers: Vec<Arc<Worker>> = self
            .state
            .lock()
            .started
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let limit = self.limits.memory_limit;
        for worker in workers {
            match worker.rss_bytes() {
                Some(rss) if rss > limit && !worker.is_dead() => worker.kill_for(format!(
                    "the worker used {} MiB, over the memory limit of {} MiB",
                    rss >> 20,
                    limit >> 20
                )),
                _ => {}
            }
        }
    }

    /// Stops idle workers past `idle_timeout` (keeping `min_warm`) and dead ones, then
    /// starts workers until `min_warm` are alive. Called periodically by the registry.
    pub fn maintain(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut state = self.state.lock();
            let before = state.idle.len();
            state.idle.retain(|(worker, _)| !worker.is_dead());
            state.total -= before - state.idle.len();
            // idle is ordered oldest first, since releases push to the back.
            while state.total > self.limits.min_warm {
                match state.idle.first() {
                    Some((_, since)) if now.duration_since(*since) >= self.limits.idle_timeout => {
                        expired.push(state.idle.remove(0).0);
                        state.total -= 1;
                    }
                    _ => break,
                }
            }
        }
        for worker in expired {
            log::info!(
                "stopping idle worker function={} version={} worker={}",
                self.spec.function,
                self.spec.version,
                worker.id
            );
            worker.stop(STOP_GRACE);
        }
        // A version whose workers fail to start is retried only as the back-off allows.
        if self.backing_off().is_some() {
            return;
        }
        if let Err(e) = self.prewarm(Instant::now() + Duration::from_secs(30)) {
            log::warn!(
                "failed to keep min_warm workers function={} version={}: {e}",
                self.spec.function,
                self.spec.version
            );
        }
    }

    /// Starts workers until `min_warm` are alive, one at a time; stops at the first
    /// failure and returns it.
    pub fn prewarm(&self, deadline: Instant) -> Result<(), String> {
        loop {
            {
                let mut state = self.state.lock();
                if state.retired || state.total >= self.limits.min_warm {
                    return Ok(());
                }
                state.total += 1;
            }
            match self.start_worker(deadline) {
                Ok((worker, _)) => self.release(worker),
                Err(AcquireError::StartFailed(reason)) => return Err(reason),
                Err(other) => return Err(describe(other)),
            }
        }
    }

    /// Proves the version can serve: keeps `min_warm` workers ready, or, with `min_warm`
    /// at 0, starts one worker and stops it again.
    pub fn check_starts(&self, deadline: Instant) -> Result<(), String> {
        if self.limits.min_warm > 0 {
            return self.prewarm(deadline);
        }
        self.state.lock().total += 1;
        let (worker, _) = self.start_worker(deadline).map_err(|e| match e {
            AcquireError::StartFailed(reason) => reason,
            other => describe(other),
        })?;
        self.state.lock().total -= 1;
        worker.stop(STOP_GRACE);
        Ok(())
    }

    /// Marks the pool retired: no worker is kept idle from now on. Returns the idle ones
    /// for the caller to stop; busy ones stop when their invocation returns them.
    pub fn retire(&self) -> Vec<Arc<Worker>> {
        let mut state = self.state.lock();
        state.retired = true;
        let idle: Vec<_> = state.idle.drain(..).map(|(worker, _)| worker).collect();
        state.total -= idle.len();
        idle
    }

    /// Closes the pool for shutdown: every queued invocation is answered at once (503
    /// `shutting_down`), no worker starts from now on, and workers that come back are
    /// stopped. Returns the idle workers for the caller to stop.
    pub fn close(&self) -> Vec<Arc<Worker>> {
        let mut state = self.state.lock();
        state.closed = true;
        for (_, waiter) in state.waiters.drain(..) {
            let _ = waiter.send(Grant::Closed);
        }
        drop(state);
        self.retire()
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.state.lock();
        PoolStats {
            version: self.spec.version,
            workers: state.total,
            idle: state.idle.len(),
            queued: state.waiters.len(),
        }
    }
}

/// A start failure in words, for deploy errors and logs.
fn describe(error: AcquireError) -> String {
    match error {
        AcquireError::StartFailed(reason) => reason,
        AcquireError::StartTimeout => "the worker was not ready before the deadline".into(),
        AcquireError::Timeout => "no worker came free before the deadline".into(),
        AcquireError::QueueFull => "the queue is full".into(),
        AcquireError::Closed => "the server is shutting down".into(),
    }
}

fn stop_in_background(worker: Arc<Worker>) {
    let spawned = std::thread::Builder::new()
        .name(format!("stop-worker-{}", worker.id))
        .spawn(move || worker.stop(STOP_GRACE));
    if let Err(e) = spawned {
        log::error!("failed to start a thread to stop a worker: {e}");
    }
}
