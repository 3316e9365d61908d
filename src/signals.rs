//! SIGINT and SIGTERM: the handler only records the request; the server's main thread
//! waits for it and runs the orderly shutdown. A second signal during shutdown kills every
//! worker and exits at once.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{bounded, Receiver};

use crate::worker;

/// Signals received so far.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

pub struct Signals {
    received: Receiver<()>,
}

impl Signals {
    pub fn install() -> Result<Signals, ctrlc::Error> {
        let (tx, rx) = bounded(1);
        ctrlc::set_handler(move || {
            if RECEIVED.fetch_add(1, Ordering::AcqRel) == 0 {
                let _ = tx.try_send(());
                return;
            }
            // The first signal is already being handled: the operator insists.
            let killed = worker::kill_all();
            log::warn!("second signal: killed {killed} workers, exiting now");
            log::logger().flush();
            std::process::exit(130);
        })?;
        Ok(Signals { received: rx })
    }

    /// Blocks until SIGINT or SIGTERM arrives.
    pub fn wait(&self) {
        let _ = self.received.recv();
    }
}
