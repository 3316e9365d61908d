//! SIGINT and SIGTERM: the handler only records the request; the server's main thread
//! waits for it and runs the orderly shutdown. A second signal during shutdown kills every
//! worker and exits at once.

use crossbeam_channel::{bounded, Receiver};

use crate::worker;

pub struct Signals {
    received: Receiver<()>,
}

impl Signals {
    pub fn install() -> Result<Signals, ctrlc::Error> {
        let (tx, rx) = bounded(1);
        ctrlc::set_handler(move || {
            if tx.try_send(()).is_err() {
                // The first signal is already being handled: the operator insists.
                let killed = worker::kill_all();
                log::warn!("second signal: killed {killed} workers, exiting now");
                log::logger().flush();
                std::process::exit(130);
            }
        })?;
        Ok(Signals { received: rx })
    }

    /// Blocks until SIGINT or SIGTERM arrives.
    pub fn wait(&self) {
        let _ = self.received.recv();
    }
}
