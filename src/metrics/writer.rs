//! The one thread that writes `metrics.db`: every [`FLUSH_EVERY`] it writes the minutes
//! counted in memory and drops the finished ones from memory, every [`ROLL_UP_EVERY`] it
//! rolls old minutes up into days, on request it forgets a deleted function, and when
//! stopped it writes one last time.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use super::{live_minutes, LiveMap, LIVE};
use crate::config::Observability;
use crate::store::metrics::{start_of, MetricsDb, MinuteRow, MINUTE_MS};
use crate::store::now_ms;

/// How often the minutes in memory are written.
const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How often old minutes are rolled up into days (and once at start).
const ROLL_UP_EVERY: Duration = Duration::from_secs(600);
/// Minutes younger than this are never rolled up, whatever `metrics_retention` says:
/// a minute may stay in memory for two flushes after it ends, and rolling it up before
/// it is dropped there would count it twice.
const MIN_RETENTION: Duration = Duration::from_secs(600);
/// How long `forget` waits for the writer.
const FORGET_WAIT: Duration = Duration::from_secs(5);

pub(super) enum Command {
    /// Forget a function, then answer on the channel.
    Forget(String, Sender<()>),
    Stop,
}

pub struct MetricsWriter {
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsWriter {
    pub(super) fn start(db: Arc<MetricsDb>, settings: &Observability) -> MetricsWriter {
        let (commands, received) = bounded::<Command>(16);
        let retention = settings.metrics_retention.max(MIN_RETENTION);
        let daily_retention = settings.metrics_daily_retention;
        let spawned = thread::Builder::new()
            .name("metrics-writer".into())
            .spawn(move || {
                let mut next_flush = Instant::now() + FLUSH_EVERY;
                let mut next_roll_up = Instant::now();
                loop {
                    if Instant::now() >= next_roll_up {
                        roll_up(&db, retention, daily_retention);
                        next_roll_up = Instant::now() + ROLL_UP_EVERY;
                    }
                    match received.recv_deadline(next_flush) {
                        Err(RecvTimeoutError::Timeout) => {
                            flush(&db, &LIVE);
                            next_flush = Instant::now() + FLUSH_EVERY;
                        }
                        Ok(Command::Forget(function, done)) => {
                            forget_now(&db, &function);
                            let _ = done.send(());
                        }
                        Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => {
                            flush(&db, &LIVE);
                            return;
                        }
                    }
                }
            });
        let thread = match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                log::error!("failed to start the metrics writer, metrics stay in memory: {e}");
                None
            }
        };
        MetricsWriter { commands, thread }
    }

    pub(super) fn commands(&self) -> Sender<Command> {
        self.commands.clone()
    }

    /// Writes what is in memory one last time and waits for the writer to finish.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        *super::INSTALLED.lock() = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let _ = self.commands.send(Command::Stop);
        if thread.join().is_err() {
            log::error!("the metrics writer panicked");
        }
    }
}

/// A server that fails after start-up still writes its metrics and joins the writer.
impl Drop for MetricsWriter {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Asks the writer to forget `function`; false when it did not answer.
pub(super) fn forget(writer: &Sender<Command>, function: &str) -> bool {
    let (done, finished) = bounded(1);
    let sent = writer.send_timeout(Command::Forget(function.to_string(), done), FORGET_WAIT);
    sent.is_ok() && finished.recv_timeout(FORGET_WAIT).is_ok()
}

// FIXME: an invocation of the deleted function still running now is counted when it
// ends, as the first of a new history under the same name; dropping records of pools the
// registry no longer routes to would fix it.
fn forget_now(db: &MetricsDb, function: &str) {
    LIVE.lock().remove(function);
    if let Err(e) = db.forget(function) {
        log::warn!("failed to delete the metrics of a deleted function function={function}: {e}");
    }
}

/// Writes every minute in memory, then drops from memory the minutes that are over and
/// did not change while they were written. On failure everything stays for next time.
pub(super) fn flush(db: &MetricsDb, live: &LiveMap) {
    let minutes = live_minutes(live, None, i64::MIN);
    if minutes.is_empty() {
        return;
    }
    let rows: Vec<MinuteRow> = minutes
        .iter()
        .map(|(function, version, minute_ms, aggregate)| MinuteRow {
            minute_ms: *minute_ms,
            function,
            version: *version,
            aggregate,
        })
        .collect();
    if let Err(e) = db.write_minutes(&rows) {
        log::warn!("failed to write metrics, keeping them in memory: {e}");
        return;
    }

    let current = start_of(now_ms(), MINUTE_MS);
    let mut live = live.lock();
    for (function, version, minute_ms, written) in &minutes {
        if *minute_ms >= current {
            continue;
        }
        let Some(function) = live.get_mut(function) else {
            continue;
        };
        if function.minutes.get(&(*version, *minute_ms)) == Some(written) {
            function.minutes.remove(&(*version, *minute_ms));
        }
    }
    drop(live);
    log::debug!("wrote metrics minutes={}", rows.len());
}

fn roll_up(db: &MetricsDb, retention: Duration, daily_retention: Duration) {
    match db.roll_up(now_ms(), retention, daily_retention) {
        Ok((0, 0)) => {}
        Ok((minutes, days)) => {
            log::info!("rolled up metrics minutes={minutes} expired_days={days}")
        }
        Err(e) => log::warn!("failed to roll up metrics: {e}"),
    }
}
