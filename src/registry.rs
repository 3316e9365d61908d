//! The router: function name to the pool of its active version (or why it has none).
//!
//! Deploying swaps the route atomically; the old pool is retired and drains its in-flight
//! work. A maintenance thread walks every pool to reap idle workers and keep `min_warm`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::pool::{Pool, PoolStats};
use crate::worker::Worker;

/// How often pools are maintained.
const MAINTENANCE_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub enum Route {
    Active(Arc<Pool>),
    /// Registered, but no version could be deployed; the message says why.
    Failed(String),
}

#[derive(Default)]
pub struct Registry {
    routes: RwLock<HashMap<String, Route>>,
    stopping: AtomicBool,
    maintenance: Mutex<Option<JoinHandle<()>>>,
}

/// A route's state for `/health`.
#[derive(Serialize)]
pub struct RouteStats {
    pub name: String,
    #[serde(flatten)]
    pub pool: Option<PoolStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether `name` is a valid function name: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Registry {
    pub fn lookup(&self, name: &str) -> Option<Route> {
        self.routes.read().get(name).cloned()
    }

    /// Routes `name` to `pool`, retiring the previous pool.
    pub fn activate(&self, name: &str, pool: Arc<Pool>) {
        let old = self
            .routes
            .write()
            .insert(name.to_string(), Route::Active(pool));
        if let Some(Route::Active(old)) = old {
            stop_all(old.retire(), Duration::from_secs(5));
        }
    }

    /// Removes the route of `name`; its pool drains in-flight work, then stops.
    pub fn remove(&self, name: &str) {
        let old = self.routes.write().remove(name);
        if let Some(Route::Active(old)) = old {
            stop_all(old.retire(), Duration::from_secs(5));
        }
    }

    /// Records that `name` has no deployable version, unless an older one still serves.
    pub fn mark_failed(&self, name: &str, reason: String) {
        let mut routes = self.routes.write();
        if !matches!(routes.get(name), Some(Route::Active(_))) {
            routes.insert(name.to_string(), Route::Failed(reason));
        }
    }

    pub fn stats(&self) -> Vec<RouteStats> {
        let routes: Vec<(String, Route)> = self
            .routes
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut stats: Vec<RouteStats> = routes
            .into_iter()
            .map(|(name, route)| match route {
                Route::Active(pool) => RouteStats {
                    name,
                    pool: Some(pool.stats()),
                    error: None,
                },
                Route::Failed(error) => RouteStats {
                    name,
                    pool: None,
                    error: Some(error),
                },
            })
            .collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    fn pools(&self) -> Vec<Arc<Pool>> {
        self.routes
            .read()
            .values()
            .filter_map(|route| match route {
                Route::Active(pool) => Some(Arc::clone(pool)),
                Route::Failed(_) => None,
            })
            .collect()
    }

    /// Starts the thread that maintains every pool until [`Registry::shutdown`].
    pub fn start_maintenance(self: &Arc<Self>) {
        let registry = Arc::clone(self);
        let handle = thread::Builder::new()
            .name("pool-maintenance".into())
            .spawn(move || {
                while !registry.stopping.load(Ordering::Acquire) {
                    for pool in registry.pools() {
                        pool.enforce_memory();
                        pool.maintain();
                    }
                    thread::park_timeout(MAINTENANCE_EVERY);
                }
            })
            .expect("failed to start the pool maintenance thread");
        *self.maintenance.lock() = Some(handle);
    }

    /// Stops maintenance, retires every pool and stops its idle workers within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        self.stopping.store(true, Ordering::Release);
        if let Some(handle) = self.maintenance.lock().take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
        let workers: Vec<Arc<Worker>> = self.pools().iter().flat_map(|pool| pool.close()).collect();
        stop_all(workers, grace);
    }
}

/// Asks every worker to stop at once, then waits for each (killing it past `grace`).
fn stop_all(workers: Vec<Arc<Worker>>, grace: Duration) {
    if workers.is_empty() {
        return;
    }
    let handles: Vec<_> = workers
        .into_iter()
        .filter_map(|worker| {
            thread::Builder::new()
                .name(format!("stop-worker-{}", worker.id))
                .spawn(move || worker.stop(grace))
                .ok()
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in ["hello", "01-hello-json", "a", "snake_case", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Hello",
            "-x",
            "_x",
            "a/b",
            "..",
            "a.b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
