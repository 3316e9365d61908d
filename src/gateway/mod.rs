//! The HTTP gateway: one tiny_http server and a pool of OS threads calling `recv()`.
//!
//! The pool keeps `http_threads` threads and grows while all of them are busy: the thread
//! that takes a request while no other is idle starts one more (counted idle from the
//! start, so two threads never both skip the start), up to `http_max_threads`. A caller
//! waiting for a slow function therefore holds a thread of its own and never keeps other
//! functions' requests waiting in tiny_http's queue; the functions' own queues bound how
//! many can wait (429 past them). A thread above `http_threads` that has been idle for
//! [`IDLE_EXIT`] ends, but never the last idle one.
//!
//! Shutdown has two steps. Stopping: every new request is answered 503 at once while the
//! ones in flight finish. Closing, once they have: requests still queued get 503 too, and
//! the one strong reference to the server is dropped, which closes the listening socket
//! (threads hold only weak references).

pub mod answer;
mod nudge;
pub mod request;
mod routes;
mod streaming;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tiny_http::Server;

use crate::config::Config;
use crate::registry::Registry;
use crate::scheduler::Scheduler;

/// How often an idle gateway thread checks whether the server is stopping.
const POLL: Duration = Duration::from_millis(200);

/// How long a gateway thread above `http_threads` may stay idle before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// What every gateway thread shares.
pub struct Context {
    pub scheduler: Scheduler,
    pub registry: Arc<Registry>,
    pub max_body_size: usize,
    /// Whether `GET /metrics` serves the Prometheus text (else it is 404).
    pub enable_metrics: bool,
    /// Whether error bodies may carry build output and start errors (log_level debug);
    /// otherwise they point at the server log, which holds the details.
    pub detailed_errors: bool,
    pub local_addr: SocketAddr,
    pub stopping: AtomicBool,
    /// Set when the server is closed: the threads leave their loop.
    pub closed: AtomicBool,
    /// Requests being handled right now.
    pub in_flight: AtomicUsize,
    /// When the last request was taken (the nudge thread runs while it is recent).
    activity: nudge::Activity,
    threads: Threads,
}

impl Context {
    /// Whether a request may wait in a function's queue: only while, even so, the pool
    /// keeps [`Threads::reserve`] threads for requests that need no waiting (a function
    /// with a free worker, `/health`). Past that, it gets 429 `queue_full` at once, so
    /// callers of hung functions cannot take every thread.
    pub fn may_queue(&self) -> bool {
        let threads = &self.threads;
        let busy = threads
            .total
            .load(Ordering::Acquire)
            .saturating_sub(threads.idle.load(Ordering::Acquire));
        busy + threads.reserve() < threads.max
    }
}

/// The gateway threads' bookkeeping.
struct Threads {
    server: Weak<Server>,
    /// Threads kept however idle (`http_threads`).
    min: usize,
    /// Threads at most (`http_max_threads`).
    max: usize,
    /// Threads running (or about to).
    total: AtomicUsize,
    /// Threads waiting for a request (a thread is counted from the moment it is started).
    idle: AtomicUsize,
}

pub struct Gateway {
    server: Option<Arc<Server>>,
    context: Arc<Context>,
    nudge: Option<JoinHandle<()>>,
}

#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for StartError {}

impl Gateway {
    /// Binds `http_host:http_port` and starts `http_threads` gateway threads and the
    /// nudge thread.
    pub fn start(
        config: &Config,
        scheduler: Scheduler,
        registry: Arc<Registry>,
    ) -> Result<Gateway, StartError> {
        let (host, port) = (&config.http_host, config.http_port);
        let addr = format!("{host}:{port}");
        let server =
            Server::http(&addr).map_err(|e| StartError(format!("failed to bind {addr}: {e}")))?;
        let local_addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| StartError(format!("{addr} is not an IP address")))?;
        let server = Arc::new(server);
        let context = Arc::new(Context {
            scheduler,
            registry,
            max_body_size: config.max_body_size,
            enable_metrics: config.observability.enable_metrics,
            detailed_errors: config.log_level >= log::LevelFilter::Debug,
            local_addr,
            stopping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            activity: nudge::Activity::new(),
            threads: Threads {
                server: Arc::downgrade(&server),
                min: config.http_threads,
                max: config.http_max_threads.max(config.http_threads),
                total: AtomicUsize::new(0),
                idle: AtomicUsize::new(0),
            },
        });
        let mut gateway = Gateway {
            server: Some(server),
            context: Arc::clone(&context),
            nudge: None,
        };
        for _ in 0..config.http_threads {
            if !start_thread(&context) {
                gateway.close();
                return Err(StartError("failed to start a gateway thread".into()));
            }
        }
        let nudging = Arc::clone(&context);
        let nudge = thread::Builder::new()
            .name("http-nudge".into())
            .spawn(move || nudge::run(nudging));
        match nudge {
            Ok(handle) => gateway.nudge = Some(handle),
            Err(e) => {
                gateway.close();
                return Err(StartError(format!("failed to start the nudge thread: {e}")));
            }
        }
        Ok(gateway)
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.context.local_addr
    }

    /// Stops intake: from now on new requests are answered 503; in-flight ones carry on.
    pub fn stop_intake(&self) {
        self.context.stopping.store(true, Ordering::Release);
    }

    /// Waits until no request is in flight or `deadline` passes; true if none is.
    pub fn drain(&self, deadline: Instant) -> bool {
        loop {
            if self.context.in_flight.load(Ordering::Acquire) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Answers 503 to requests still queued, then closes the listening socket. The
    /// threads leave their loop within one poll interval.
    pub fn close(&mut self) {
        self.context.closed.store(true, Ordering::Release);
        if let Some(server) = self.server.take() {
            while let Ok(Some(request)) = server.try_recv() {
                routes::refuse_shutting_down(request);
            }
            drop(server);
        }
    }

    /// Waits until every gateway thread (and the nudge thread) has ended, or `deadline`;
    /// call after [`Gateway::close`]. A thread blocked on a client that stalls its body or
    /// does not read its answer never ends (tiny_http sets no socket timeouts), so past
    /// the deadline it is left behind for the process exit to end.
    pub fn join(mut self, deadline: Instant) {
        if let Some(handle) = self.nudge.take() {
            let _ = handle.join();
        }
        loop {
            let left = self.context.threads.total.load(Ordering::Acquire);
            if left == 0 {
                return;
            }
            if Instant::now() >= deadline {
                log::warn!("leaving {left} gateway threads blocked on their clients");
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Starts one gateway thread, counted running and idle from now; false if the system
/// refused (the counts are restored).
fn start_thread(context: &Arc<Context>) -> bool {
    let threads = &context.threads;
    threads.total.fetch_add(1, Ordering::AcqRel);
    threads.idle.fetch_add(1, Ordering::AcqRel);
    let serving = Arc::clone(context);
    let started = thread::Builder::new()
        .name("http".into())
        .spawn(move || serve_requests(serving));
    if let Err(e) = started {
        log::error!("failed to start a gateway thread: {e}");
        threads.idle.fetch_sub(1, Ordering::AcqRel);
        threads.total.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    true
}

/// Starts one more thread if `took_last` says the caller was the last idle one and the
/// pool is below its maximum.
fn grow(context: &Arc<Context>, took_last: bool) {
    let threads = &context.threads;
    if !took_last || threads.total.load(Ordering::Acquire) >= threads.max {
        return;
    }
    if !start_thread(context) {
        log::warn!(
            "all {} gateway threads are busy; requests wait in the queue",
            threads.total.load(Ordering::Acquire)
        );
    }
}

impl Threads {
    /// Threads kept for requests that need not wait in a queue: a quarter of
    /// `http_threads`, at least 2.
    fn reserve(&self) -> usize {
        (self.min / 4).max(2)
    }
}

/// Whether this idle thread may end: the pool is above its minimum and another thread
/// stays idle. If true, the counts already say it has ended.
fn may_end(threads: &Threads) -> bool {
    let above_min = |t: usize| (t > threads.min).then(|| t - 1);
    if threads
        .total
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, above_min)
        .is_err()
    {
        return false;
    }
    let keeps_one = |i: usize| (i > 1).then(|| i - 1);
    if threads
        .idle
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, keeps_one)
        .is_err()
    {
        threads.total.fetch_add(1, Ordering::AcqRel);
        return false;
    }
    true
}

fn serve_requests(context: Arc<Context>) {
    let threads = &context.threads;
    let mut idle_since = Instant::now();
    loop {
        if context.closed.load(Ordering::Acquire) {
            break;
        }
        let Some(server) = threads.server.upgrade() else {
            break;
        };
        let received = server.recv_timeout(POLL);
        drop(server);
        match received {
            Ok(Some(request)) => {
                context.activity.touch(request.remote_addr().copied());
                let took_last = threads.idle.fetch_sub(1, Ordering::AcqRel) == 1;
                grow(&context, took_last);
                context.in_flight.fetch_add(1, Ordering::AcqRel);
                routes::handle(request, &context);
                context.in_flight.fetch_sub(1, Ordering::AcqRel);
                threads.idle.fetch_add(1, Ordering::AcqRel);
                idle_since = Instant::now();
            }
            Ok(None) => {
                if idle_since.elapsed() >= IDLE_EXIT && may_end(threads) {
                    return;
                }
            }
            Err(e) => log::warn!("failed to receive an http request: {e}"),
        }
    }
    threads.idle.fetch_sub(1, Ordering::AcqRel);
    threads.total.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threads(min: usize, total: usize, idle: usize) -> Threads {
        Threads {
            server: Weak::new(),
            min,
            max: 64,
            total: AtomicUsize::new(total),
            idle: AtomicUsize::new(idle),
        }
    }

    #[test]
    fn an_idle_thread_ends_only_above_the_minimum_and_never_the_last_idle_one() {
        let at_min = threads(4, 4, 3);
        assert!(!may_end(&at_min));
        assert_eq!(at_min.total.load(Ordering::Acquire), 4);

        let last_idle = threads(4, 9, 1);
        assert!(!may_end(&last_idle));
        assert_eq!(last_idle.total.load(Ordering::Acquire), 9, "restored");
        assert_eq!(last_idle.idle.load(Ordering::Acquire), 1);

        let spare = threads(4, 9, 3);
        assert!(may_end(&spare));
        assert_eq!(spare.total.load(Ordering::Acquire), 8);
        assert_eq!(spare.idle.load(Ordering::Acquire), 2);
    }
}
