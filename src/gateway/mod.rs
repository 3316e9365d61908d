//! The HTTP gateway: one tiny_http server and a fixed pool of OS threads calling `recv()`.
//!
//! Threads hold only a weak reference to the server, so dropping the one strong
//! reference at shutdown closes the listening socket (new connections are refused) while
//! in-flight requests finish on their threads. Requests already accepted but not yet
//! picked up are answered 503.

pub mod answer;
pub mod request;
mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use tiny_http::Server;

use crate::registry::Registry;
use crate::scheduler::Scheduler;

/// How often an idle gateway thread checks whether the server is stopping.
const POLL: Duration = Duration::from_millis(200);

/// What every gateway thread shares.
pub struct Context {
    pub scheduler: Scheduler,
    pub registry: Arc<Registry>,
    pub max_body_size: usize,
    pub local_addr: SocketAddr,
    pub stopping: AtomicBool,
    /// Requests being handled right now.
    pub in_flight: AtomicUsize,
}

pub struct Gateway {
    server: Option<Arc<Server>>,
    context: Arc<Context>,
    threads: Vec<JoinHandle<()>>,
    /// Disconnected once every gateway thread has finished.
    finished: Receiver<()>,
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
    /// Binds `host:port` and starts `threads` gateway threads.
    pub fn start(
        host: &str,
        port: u16,
        threads: usize,
        scheduler: Scheduler,
        registry: Arc<Registry>,
        max_body_size: usize,
    ) -> Result<Gateway, StartError> {
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
            max_body_size,
            local_addr,
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        });

        let (finished_tx, finished_rx) = bounded::<()>(0);
        let handles = (0..threads)
            .map(|n| {
                let server = Arc::downgrade(&server);
                let context = Arc::clone(&context);
                let finished = finished_tx.clone();
                thread::Builder::new()
                    .name(format!("http-{n}"))
                    .spawn(move || serve_requests(server, context, finished))
                    .map_err(|e| StartError(format!("failed to start a gateway thread: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Gateway {
            server: Some(server),
            context,
            threads: handles,
            finished: finished_rx,
        })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.context.local_addr
    }

    /// Stops intake: answers 503 to accepted requests nobody picked up yet, then closes
    /// the listening socket. In-flight requests carry on.
    pub fn stop_intake(&mut self) {
        self.context.stopping.store(true, Ordering::Release);
        if let Some(server) = self.server.take() {
            while let Ok(Some(request)) = server.try_recv() {
                routes::refuse_shutting_down(request);
            }
            drop(server);
        }
    }

    /// Waits until in-flight requests finish or `deadline` passes; true if all finished.
    /// Idle threads notice the stop within one poll interval, so once nothing is in
    /// flight the grace period counts as kept even if they have not exited yet.
    pub fn drain(&self, deadline: Instant) -> bool {
        match self.finished.recv_deadline(deadline) {
            Err(e) if e.is_disconnected() => true,
            _ => self.context.in_flight.load(Ordering::Acquire) == 0,
        }
    }

    /// Joins every gateway thread.
    pub fn join(self) {
        for handle in self.threads {
            let _ = handle.join();
        }
    }
}

fn serve_requests(server: Weak<Server>, context: Arc<Context>, _finished: Sender<()>) {
    while !context.stopping.load(Ordering::Acquire) {
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
