//! Invocation metrics per function version: counted in memory on the request path, kept
//! per minute in `metrics.db` by one writer thread, read back over a window for
//! GET_METRICS, and shown since start in the Prometheus text of `GET /metrics`.
//!
//! The request path only adds one sample to two in-memory aggregates under one mutex:
//! the minute it ended in, and the total since the server started. The writer copies the
//! minutes out every few seconds, writes them (whole, not as increments) and then drops
//! the finished minutes that did not change meanwhile. A reader therefore takes the
//! in-memory minutes first and the stored rows second, and for a minute found in both
//! keeps the in-memory one (never older than what was stored): nothing is counted twice
//! and nothing falls between the two.
//!
//! The Prometheus counters start from zero with every server start, as a restarted
//! process's counters do; Prometheus' `rate()` and `increase()` handle such resets. The
//! history across restarts is what GET_METRICS reads from `metrics.db`.

pub mod aggregate;
pub mod histogram;
pub mod prometheus;
mod writer;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::Observability;
use crate::observe::InvocationRecord;
use crate::registry::Registry;
use crate::store::metrics::{start_of, MetricsDb, StoreError, MINUTE_MS};
use aggregate::{Aggregate, ErrorKind, Sample};
pub use writer::MetricsWriter;

/// What is counted of one function and not yet stored for good.
#[derive(Default)]
struct Live {
    /// Since the server started, by version.
    totals: BTreeMap<i64, Aggregate>,
    /// By (version, minute start): minutes not yet written, or written and still current.
    minutes: BTreeMap<(i64, i64), Aggregate>,
}

/// A minute counted in memory: function, version, minute start and its aggregate.
type LiveMinute = (String, i64, i64, Aggregate);

/// What is counted in memory, by function name.
type LiveMap = Mutex<BTreeMap<String, Live>>;

static LIVE: LiveMap = Mutex::new(BTreeMap::new());

/// The store and the writer of a running server, for readers and for [`forget`].
struct Installed {
    db: Arc<MetricsDb>,
    writer: crossbeam_channel::Sender<writer::Command>,
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);

/// Opens `metrics.db` and starts the writer thread; readers use the store from now on.
pub fn start(data_dir: &Path, settings: &Observability) -> Result<MetricsWriter, StoreError> {
    let db = Arc::new(MetricsDb::open(data_dir)?);
    let writer = MetricsWriter::start(Arc::clone(&db), settings);
    *INSTALLED.lock() = Some(Installed {
        db,
        writer: writer.commands(),
    });
    Ok(writer)
}

/// Counts one finished invocation (no I/O: one lock, two map updates).
pub fn record(record: &InvocationRecord) {
    count(&LIVE, record);
}

fn count(live: &LiveMap, record: &InvocationRecord) {
    let duration_us = u64::try_from(record.duration.as_micros()).unwrap_or(u64::MAX);
    let sample = Sample {
        error: ErrorKind::of(record.outcome, record.status),
        cold: record.cold,
        duration_us,
        queue_wait_us: u64::try_from(record.queue_wait.as_micros()).unwrap_or(u64::MAX),
    };
    let ended_ms = record.start_ms + (duration_us / 1000) as i64;
    let minute = start_of(ended_ms, MINUTE_MS);

    let mut live = live.lock();
    if !live.contains_key(&record.function) {
        live.insert(record.function.clone(), Live::default());
    }
    let function = live.get_mut(&record.function).expect("inserted above");
    let totals = function.totals.entry(record.version).or_default();
    totals.record(&sample);
    let minute = function
        .minutes
        .entry((record.version, minute))
        .or_default();
    minute.record(&sample);
}

/// Forgets a deleted function: its counters and its stored history. With a writer
/// running, the writer does both (so it cannot write the history back afterwards).
pub fn forget(function: &str) {
    let writer = INSTALLED.lock().as_ref().map(|i| i.writer.clone());
    if let Some(writer) = writer {
        if writer::forget(&writer, function) {
            return;
        }
    }
    LIVE.lock().remove(function);
}

/// Every function version's counts since the server started.
pub fn totals() -> Vec<(String, i64, Aggregate)> {
    let live = LIVE.lock();
    let versions = live.iter().flat_map(|(name, function)| {
        let totals = function.totals.iter();
        totals.map(move |(version, a)| (name.clone(), *version, *a))
    });
    versions.collect()
}

/// The minutes held in memory (of one function or all) that end after `from_ms`.
fn live_minutes(live: &LiveMap, function: Option<&str>, from_ms: i64) -> Vec<LiveMinute> {
    let live = live.lock();
    let functions = live
        .iter()
        .filter(|(name, _)| function.is_none_or(|f| f == name.as_str()));
    let minutes = functions.flat_map(|(name, function)| {
        let recent = function
            .minutes
            .iter()
            .filter(|((_, minute), _)| *minute > from_ms.saturating_sub(MINUTE_MS));
        recent.map(move |((version, minute), a)| (name.clone(), *version, *minute, *a))
    });
    minutes.collect()
}

/// Counts per (function, version) over the minutes (and, past `metrics_retention`, the
/// days) that overlap the time from `from_ms` to now: the window is widened to whole
/// minutes and days. Without a store, only what is in memory.
pub fn window(
    function: Option<&str>,
    from_ms: i64,
) -> Result<BTreeMap<(String, i64), Aggregate>, StoreError> {
    let db = INSTALLED.lock().as_ref().map(|i| Arc::clone(&i.db));
    read_window(&LIVE, db.as_deref(), function, from_ms)
}

fn read_window(
    live: &LiveMap,
    db: Option<&MetricsDb>,
    function: Option<&str>,
    from_ms: i64,
) -> Result<BTreeMap<(String, i64), Aggregate>, StoreError> {
    // Memory first: a minute the writer drops from memory after this is in the store.
    let in_memory = live_minutes(live, function, from_ms);
    let mut sums: BTreeMap<(String, i64), Aggregate> = BTreeMap::new();
    if let Some(db) = db {
        let held_from = in_memory.iter().map(|m| m.2).min().unwrap_or(i64::MAX);
        let stored = db.window(function, from_ms, held_from)?;
        let held: HashSet<(&str, i64, i64)> = in_memory
            .iter()
            .map(|(name, version, minute, _)| (name.as_str(), *version, *minute))
            .collect();
        let minutes = stored
            .minutes
            .into_iter()
            .filter(|(row, minute)| !held.contains(&(row.function.as_str(), row.version, *minute)));
        for row in stored.sums.into_iter().chain(minutes.map(|(row, _)| row)) {
            let sum = sums.entry((row.function, row.version)).or_default();
            sum.add(&row.aggregate);
        }
    }
    for (name, version, _, aggregate) in &in_memory {
        let sum = sums.entry((name.clone(), *version)).or_default();
        sum.add(aggregate);
    }
    Ok(sums)
}

/// The Prometheus text: counts since start of every function version counted or
/// serving, and the workers of every serving version.
pub fn prometheus_text(registry: &Registry) -> String {
    let mut series: BTreeMap<(String, i64), Aggregate> = totals()
        .into_iter()
        .map(|(name, version, a)| ((name, version), a))
        .collect();
    let mut workers = Vec::new();
    for route in registry.stats() {
        let Some(pool) = route.pool else { continue };
        series
            .entry((route.name.clone(), pool.version))
            .or_default();
        workers.push(prometheus::Workers {
            function: route.name,
            version: pool.version,
            busy: pool.workers.saturating_sub(pool.idle),
            idle: pool.idle,
            queued: pool.queued,
        });
    }
    let series: Vec<prometheus::Series> = series
        .into_iter()
        .map(|((function, version), totals)| prometheus::Series {
            function,
            version,
            totals,
        })
        .collect();
    prometheus::render(&series, &workers)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::observe::Outcome;

    fn invocation(
        function: &str,
        start_ms: i64,
        outcome: Outcome,
        status: u16,
    ) -> InvocationRecord {
        InvocationRecord {
            function: function.into(),
            version: 2,
            invocation: "i".into(),
            start_ms,
            duration: Duration::from_millis(30),
            status,
            outcome,
            cold: outcome == Outcome::Ok,
            init: None,
            queue_wait: Duration::from_millis(4),
            worker_pid: None,
        }
    }

    #[test]
    fn records_count_into_their_minute_and_the_totals() {
        let name = "metrics-mod-test";
        record(&invocation(name, 59_990, Outcome::Ok, 200));
        record(&invocation(name, 60_010, Outcome::Ok, 503));
        record(&invocation(name, 61_000, Outcome::Timeout, 504));

        let total = totals().into_iter().find(|(n, _, _)| n == name).unwrap().2;
        assert_eq!(
            (total.invocations, total.failed(), total.cold_starts),
            (3, 2, 2)
        );
        assert_eq!(total.error_count(ErrorKind::Status5xx), 1);

        // The first ended at 60 020 ms: every one is in the minute starting at 60 s.
        let minutes = live_minutes(&LIVE, Some(name), 0);
        assert_eq!(minutes.len(), 1);
        assert_eq!((minutes[0].1, minutes[0].2), (2, 60_000));
        assert!(live_minutes(&LIVE, Some(name), 120_000).is_empty());

        let sums = window(Some(name), 0).unwrap();
        assert_eq!(sums[&(name.to_string(), 2)], total);

        forget(name);
        assert!(window(Some(name), 0).unwrap().is_empty());
    }

    #[test]
    fn stored_and_in_memory_minutes_count_once_around_flushes_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let db = MetricsDb::open(dir.path()).unwrap();
        let live = LiveMap::default();
        let name = "f";
        let ahead = crate::store::now_ms() + 3_600_000;
        let invocations = |live: &LiveMap, db: &MetricsDb| {
            let sums = read_window(live, Some(db), Some(name), 0).unwrap();
            sums.get(&(name.to_string(), 2))
                .map_or(0, |a| a.invocations)
        };

        // Three in a minute long over, two in one that is not over yet.
        for start_ms in [60_000, 60_000, 61_000, ahead, ahead] {
            count(&live, &invocation(name, start_ms, Outcome::Ok, 200));
        }
        assert_eq!(invocations(&live, &db), 5);

        // A flush stores both and keeps only the unfinished minute in memory.
        writer::flush(&db, &live);
        assert_eq!(live_minutes(&live, None, i64::MIN).len(), 1);
        assert_eq!(invocations(&live, &db), 5);

        // Memory is newer than the stored copy of the unfinished minute.
        count(&live, &invocation(name, ahead, Outcome::Ok, 200));
        assert_eq!(invocations(&live, &db), 6);

        // A new run sees what was stored, then what was flushed at the end.
        let restarted = MetricsDb::open(dir.path()).unwrap();
        let fresh = LiveMap::default();
        assert_eq!(invocations(&fresh, &restarted), 5);
        writer::flush(&db, &live);
        assert_eq!(invocations(&fresh, &restarted), 6);
        count(&fresh, &invocation(name, ahead, Outcome::Ok, 200));
        writer::flush(&restarted, &fresh);
        assert_eq!(invocations(&fresh, &restarted), 7);
    }
}
