//! The HTTP gateway: one tiny_http server and a fixed pool of OS threads calling `recv()`.
//!
//! Shutdown has two steps. Stopping: every new request is answered 503 at once while the
//! ones in flight finish. Closing, once they have: requests still queued get 503 too, and
//! the one strong reference to the server is dropped, which closes the listening socket
//! (threads hold only weak references).

pub mod answer;
pub mod request;
mod routes;

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
}

pub struct Gateway {
    server: Option<Arc<Server>>,
    context: Arc<Context>,
    threads: Vec<JoinHandle<()>>,
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
    /// Binds `http_host:http_port` and starts `http_threads` gateway threads.
    pub fn start(
        config: &Config,
        scheduler: Scheduler,
        registry: Arc<Registry>,
    ) -> Result<Gateway, StartError> {
        let (host, port) = (&config.http_host, config.http_port);
        let threads = config.http_threads;
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
        });

        let handles = (0..threads)
            .map(|n| {
                let server = Arc::downgrade(&server);
                let context = Arc::clone(&context);
                thread::Builder::new()
                    .name(format!("http-{n}"))
                    .spawn(move || serve_requests(server, context))
                    .map_err(|e| StartError(format!("failed to start a gateway thread: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Gateway {
            server: Some(server),
            context,
            threads: handles,
        })
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

    /// Joins every gateway thread.
    pub fn join(self) {
        for handle in self.threads {
            let _ = handle.join();
        }
    }
}

fn serve_requests(server: Weak<Server>, context: Arc<Context>) {
    while !context.closed.load(Ordering::Acquire) {
        let Some(server) = server.upgrade() else {
            break;
        };
        let received = server.recv_timeout(POLL);
        drop(server);
        match received {
            Ok(Some(request)) => {
                context.in_flight.fetch_add(1, Ordering::AcqRel);
                routes::handle(request, &context);
                context.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
            Ok(None) => {}
            Err(e) => log::warn!("failed to receive an http request: {e}"),
        }
    }
}
