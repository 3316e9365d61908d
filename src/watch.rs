//! `--watch`: polls the functions directory and redeploys when a file in it changes.
//!
//! Polling (every 500 ms, comparing each file's size and modification time) needs no
//! platform API and costs little for the few hundred files of a functions directory. Any
//! change redeploys the whole directory: each function is rebuilt, and one whose bundle
//! came out the same keeps its version, so only the functions the change touched (their
//! entry, an imported file, their `NAME.env`) move to a new version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use crate::deploy::Deployer;

const POLL: Duration = Duration::from_millis(500);

/// Size and modification time of every file under a directory.
type Snapshot = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;

pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Watcher {
    pub fn start(deployer: Arc<Deployer>, dir: PathBuf) -> std::io::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new().name("watch".into()).spawn(move || {
            let mut last = snapshot(&dir);
            log::info!("watching {} for changes", dir.display());
            while !flag.load(Ordering::Acquire) {
                thread::park_timeout(POLL);
                let now = snapshot(&dir);
                if now == last {
                    continue;
                }
                log::info!("change detected in {}; redeploying", dir.display());
                if let Err(e) = deployer.deploy_dir(&dir) {
                    log::error!("failed to redeploy {}: {e}", dir.display());
                }
                last = now;
            }
        })?;
        Ok(Watcher { stop, thread })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// Every file under `dir`, skipping dot-files and node_modules.
fn snapshot(dir: &Path) -> Snapshot {
    let mut files = Snapshot::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') || name == "node_modules" {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.path(), (meta.len(), meta.modified().ok()));
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_see_new_changed_and_removed_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.ts"), "1").unwrap();
        std::fs::create_dir(dir.path().join("node_modules")).unwrap();
        std::fs::write(dir.path().join("node_modules/x.js"), "1").unwrap();
        let first = snapshot(dir.path());
        assert_eq!(first.len(), 1);

        std::fs::write(dir.path().join("a.ts"), "22").unwrap();
        let second = snapshot(dir.path());
        assert_ne!(first, second);

        std::fs::remove_file(dir.path().join("a.ts")).unwrap();
        assert!(snapshot(dir.path()).is_empty());
    }
}
