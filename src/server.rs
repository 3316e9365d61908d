//! `functions serve`: start-up in order (data dir, Bun, metadata, metrics writer, restore
//! and deploy, pool maintenance, gateway) and the orderly shutdown: stop intake, let
//! in-flight invocations finish within the grace period, stop workers, kill stragglers,
//! write the last metrics.

use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use crate::api::{socket, ApiContext, ApiServer, SocketError};
use crate::config::Config;
use crate::deploy::{DeployError, Deployer};
use crate::gateway::Gateway;
use crate::metrics;
use crate::registry::Registry;
use crate::runtime::{self, RuntimeError};
use crate::scheduler::Scheduler;
use crate::signals::Signals;
use crate::store::lock::{DataDirLock, LockError};
use crate::store::logs::LogStore;
use crate::store::metadata::{Metadata, StoreError};
use crate::watch::Watcher;
use crate::worker;

/// How long, after the workers are stopped, shutdown waits for threads still writing to
/// or reading from clients (a client that stalls can hold one forever).
const JOIN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum ServeError {
    DataDir(std::path::PathBuf, std::io::Error),
    Runtime(RuntimeError),
    Store(StoreError),
    Metrics(StoreError),
    Logs(crate::store::logs::LogError),
    Deploy(DeployError),
    Gateway(String),
    Signals(ctrlc::Error),
    Socket(SocketError),
    Watch(std::io::Error),
    Lock(LockError),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::DataDir(path, e) => {
                write!(f, "failed to create data dir {}: {e}", path.display())
            }
            ServeError::Runtime(e) => write!(f, "{e}"),
            ServeError::Store(e) => write!(f, "{e}"),
            ServeError::Metrics(e) => write!(f, "{e}"),
            ServeError::Logs(e) => write!(f, "{e}"),
            ServeError::Deploy(e) => write!(f, "{e}"),
            ServeError::Gateway(e) => write!(f, "{e}"),
            ServeError::Signals(e) => write!(f, "failed to install signal handlers: {e}"),
            ServeError::Socket(e) => write!(f, "{e}"),
            ServeError::Lock(e) => write!(f, "{e}"),
            ServeError::Watch(e) => write!(f, "failed to start watching the functions dir: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// How the server ended.
pub enum Stopped {
    /// Every in-flight invocation finished within the grace period.
    Clean,
    /// The grace period ran out; the remaining invocations were cut off.
    CutOff,
}

pub fn run(config: Config) -> Result<Stopped, ServeError> {
    let data_dir = &config.data_dir;
    // Owner only: the data dir holds every function's environment and code.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| ServeError::DataDir(data_dir.clone(), e))?;
    // Claim the data dir and the socket before touching anything, so a second server
    // started by mistake changes nothing of the first one's.
    let _lock = DataDirLock::acquire(data_dir).map_err(ServeError::Lock)?;
    let listener =
        socket::bind(&config.socket, config.socket_group.as_deref()).map_err(ServeError::Socket)?;
    // Whatever fails from here on, the socket file goes with the server.
    let _socket_file = RemoveOnDrop(config.socket.clone());
    let bun = runtime::find_bun(config.bun_path.as_deref()).map_err(ServeError::Runtime)?;
    let script = runtime::install_worker_script(data_dir).map_err(ServeError::Runtime)?;
    log::info!(
        "using bun={} data_dir={}",
        bun.display(),
        data_dir.display()
    );
    let meta = Arc::new(Metadata::open(data_dir).map_err(ServeError::Store)?);
    // Before any worker starts, so no line of theirs misses the store.
    let logs = LogStore::start(data_dir, &config.observability).map_err(ServeError::Logs)?;
    let metrics = metrics::start(data_dir, &config.observability).map_err(ServeError::Metrics)?;
    let registry = Arc::new(Registry::default());
    let deployer = Arc::new(Deployer::new(
        Arc::clone(&meta),
        Arc::clone(&registry),
        data_dir.clone(),
        bun,
        script,
        config.limits.clone(),
    ));

    let restored = deployer.restore().map_err(ServeError::Store)?;
    log::info!("restored {restored} deployed functions");
    if let Some(dir) = &config.functions_dir {
        let deployed = deployer.deploy_dir(dir).map_err(ServeError::Deploy)?;
        log::info!("deployed {deployed} functions from {}", dir.display());
    }
    let watcher = match (&config.functions_dir, config.watch) {
        (Some(dir), true) => {
            Some(Watcher::start(Arc::clone(&deployer), dir.clone()).map_err(ServeError::Watch)?)
        }
        _ => None,
    };
    registry.start_maintenance();
    let signals = Signals::install().map_err(ServeError::Signals)?;

    let mut gateway = match config.enable_http {
        true => Some(
            Gateway::start(
                &config,
                Scheduler::new(Arc::clone(&registry)),
                Arc::clone(&registry),
            )
            .map_err(|e| ServeError::Gateway(e.to_string()))?,
        ),
        false => None,
    };
    let context = ApiContext {
        scheduler: Scheduler::new(Arc::clone(&registry)),
        registry: Arc::clone(&registry),
        deployer,
        meta,
        started: Instant::now(),
        http: gateway
            .as_ref()
            .map(|g| format!("http://{}", g.local_addr())),
        socket: config.socket.display().to_string(),
        max_body_size: config.max_body_size,
    };
    let api = ApiServer::start(
        listener,
        &config.socket,
        config.api_threads,
        config.max_frame_size,
        Arc::new(context),
    )
    .map_err(ServeError::Socket)?;
    // Logged last: once it appears, HTTP and the socket both answer.
    if let Some(gateway) = &gateway {
        log::info!(
            "http gateway listening on http://{} threads={}",
            gateway.local_addr(),
            config.http_threads
        );
    }

    signals.wait();
    log::info!(
        "shutting down: refusing new requests, grace={:?}",
        config.shutdown_grace
    );
    let deadline = Instant::now() + config.shutdown_grace;
    let mut stopped = Stopped::Clean;
    if let Some(watcher) = watcher {
        watcher.stop();
    }
    let api_stopped = stop_in_background(api);
    if let Some(gateway) = gateway.as_mut() {
        gateway.stop_intake();
        if !gateway.drain(deadline) {
            stopped = Stopped::CutOff;
        }
    }
    if matches!(
        api_stopped.recv_deadline(deadline),
        Err(RecvTimeoutError::Timeout)
    ) {
        stopped = Stopped::CutOff;
    }
    if matches!(stopped, Stopped::CutOff) {
        log::warn!("grace period over with requests still running; cutting them off");
    }
    if let Some(gateway) = gateway.as_mut() {
        gateway.close();
    }
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    registry.shutdown(remaining);
    let killed = worker::kill_all();
    if killed > 0 {
        log::warn!("killed {killed} workers still running at exit");
    }
    // Threads blocked on a stalled client are not waited for past this.
    let join_deadline = Instant::now() + JOIN_GRACE;
    if let Some(gateway) = gateway {
        gateway.join(join_deadline);
    }
    if matches!(
        api_stopped.recv_deadline(join_deadline),
        Err(RecvTimeoutError::Timeout)
    ) {
        log::warn!("leaving socket api threads blocked on their clients");
    }
    metrics.stop();
    logs.stop();
    log::info!("stopped");
    Ok(stopped)
}

/// Stops the socket API on a thread of its own; the receiver disconnects when it is done.
fn stop_in_background(api: ApiServer) -> Receiver<()> {
    let (done_tx, done_rx) = bounded::<()>(0);
    let spawned = std::thread::Builder::new()
        .name("api-stop".into())
        .spawn(move || {
            api.stop();
            drop(done_tx);
        });
    if let Err(e) = spawned {
        log::error!("failed to start a thread to stop the socket api: {e}");
    }
    done_rx
}

/// Removes a file when dropped: the socket of a server that failed to start.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
