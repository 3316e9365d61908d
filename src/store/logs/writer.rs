//! The writer thread: takes the channel in batches (up to [`BATCH_MAX`] entries, or what
//! came within [`BATCH_WINDOW`] of the first), commits each batch to logs.db in one
//! transaction, then appends it to the day's JSONL file. With each batch it writes the
//! notices of dropped output; at start and once a minute it runs retention. It ends on
//! `Stop`, after committing everything queued before it.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::{params, Connection};

use super::budget::{truncation_message, Dropped};
use super::jsonl::Jsonl;
use super::retention::{self, Rules};
use super::sink::{cost, Shared};
use super::stored::{micros, overflow_message, peak_rss, stored_line, stored_record, tagged};
use super::{level, sql, Entry, LogError};
use crate::config::Observability;
use crate::observe::{InvocationRecord, LogLine};
use crate::store::now_ms;

const BATCH_MAX: usize = 500;
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// How often notices are looked for when nothing arrives.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);
/// The pause before the rest of a retention pass that ran out of time.
const MAINTENANCE_AGAIN: Duration = Duration::from_secs(1);
/// The writer's own errors are logged at most this often.
const ERROR_EVERY: Duration = Duration::from_secs(10);

pub struct Writer {
    conn: Connection,
    rx: Receiver<Entry>,
    shared: Arc<Shared>,
    jsonl: Jsonl,
    rules: Rules,
    db_path: std::path::PathBuf,
    trouble: Trouble,
    /// Limits the warnings (and notice lines) about a full channel.
    behind: Trouble,
    overflow_taken: Option<Instant>,
}

/// What one batch writes, in order.
enum Item {
    Line(LogLine),
    Record(Box<InvocationRecord>, Dropped, Option<u64>),
    Forget(String),
}

impl Writer {
    pub fn new(
        conn: Connection,
        rx: Receiver<Entry>,
        shared: Arc<Shared>,
        db_path: &Path,
        dir: &Path,
        settings: &Observability,
    ) -> Writer {
        let rules = Rules {
            retention: settings.log_retention,
            max_size: settings.log_max_size,
        };
        Writer {
            conn,
            rx,
            shared,
            jsonl: Jsonl::new(dir, rules.segment_max()),
            rules,
            db_path: db_path.to_path_buf(),
            trouble: Trouble::default(),
            behind: Trouble::default(),
            overflow_taken: None,
        }
    }

    pub fn run(mut self) {
        let mut next_maintenance = Instant::now();
        loop {
            if Instant::now() >= next_maintenance {
                next_maintenance = Instant::now() + self.maintain();
            }
            let wait = next_maintenance
                .saturating_duration_since(Instant::now())
                .min(SWEEP_EVERY);
            let (entries, acks, stop) = match self.rx.recv_timeout(wait) {
                Ok(first) => self.collect(first),
                Err(RecvTimeoutError::Timeout) => (Vec::new(), Vec::new(), false),
                Err(RecvTimeoutError::Disconnected) => (Vec::new(), Vec::new(), true),
            };
            self.write(entries, stop);
            for ack in acks {
                let _ = ack.send(());
            }
            if stop {
                break;
            }
        }
        if let Err(e) = self.jsonl.close() {
            log::error!("failed to flush the JSONL log file: {e}");
        }
        log::debug!("log writer stopped");
    }

    /// One batch: entries up to a flush, a stop, [`BATCH_MAX`] or the end of the window.
    /// The flushes to answer once it is written, and whether to stop after it.
    fn collect(&mut self, first: Entry) -> (Vec<Entry>, Vec<Sender<()>>, bool) {
        let deadline = Instant::now() + BATCH_WINDOW;
        let mut entries = Vec::new();
        let mut next = Ok(first);
        loop {
            match next {
                Ok(Entry::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    return (entries, Vec::new(), true)
                }
                Ok(Entry::Flush(ack)) => return (entries, vec![ack], false),
                Err(RecvTimeoutError::Timeout) => return (entries, Vec::new(), false),
                Ok(Entry::Line(line)) => {
                    self.shared
                        .queued_bytes
                        .fetch_sub(cost(&line), Ordering::Relaxed);
                    entries.push(Entry::Line(line));
                }
                Ok(entry) => entries.push(entry),
            }
            if entries.len() >= BATCH_MAX {
                return (entries, Vec::new(), false);
            }
            next = self.rx.recv_deadline(deadline);
        }
    }

    fn write(&mut self, entries: Vec<Entry>, last: bool) {
        let now = now_ms();
        let mut items = Vec::with_capacity(entries.len() + 1);
        let mut peaks: HashMap<u32, Option<u64>> = HashMap::new();
        for entry in entries {
            match entry {
                Entry::Line(line) => items.push(Item::Line(line)),
                Entry::Invocation(record, dropped) => {
                    let peak = record
                        .worker_pid
                        .and_then(|pid| *peaks.entry(pid).or_insert_with(|| peak_rss(pid)));
                    let notice = dropped.any().then(|| LogLine {
                        time_ms: now,
                        function: record.function.clone(),
                        version: record.version,
                        invocation: Some(record.invocation.clone()),
                        stream: level::NOTICE.into(),
                        message: truncation_message(true, dropped, self.shared.limit),
                    });
                    items.push(Item::Record(record, dropped, peak));
                    items.extend(notice.map(Item::Line));
                }
                Entry::Forget(function) => items.push(Item::Forget(function)),
                Entry::Flush(_) | Entry::Stop => {}
            }
        }
        self.add_notices(&mut items, now, last);
        if items.is_empty() {
            return;
        }
        let ids = match self.insert(&items) {
            Ok(ids) => ids,
            Err(e) => {
                self.trouble.report(
                    log::Level::Error,
                    format_args!("failed to store {} log entries: {e}", items.len()),
                );
                vec![None; items.len()]
            }
        };
        if let Err(e) = self.append_jsonl(&items, &ids) {
            let dir = self.jsonl.dir().display().to_string();
            self.trouble.report(
                log::Level::Error,
                format_args!("failed to append to the JSONL logs in {dir}: {e}"),
            );
        }
    }

    /// Notice lines for output dropped since the last batch: over a budget, or (at most
    /// once a second, and on the last batch) because the channel was full.
    fn add_notices(&mut self, items: &mut Vec<Item>, now: i64, last: bool) {
        let budget_notices = self.shared.budgets.lock().take_notices(now);
        for notice in budget_notices {
            let message = notice.message(self.shared.limit);
            items.push(Item::Line(LogLine {
                time_ms: now,
                function: notice.function,
                version: notice.version,
                invocation: notice.invocation,
                stream: level::NOTICE.into(),
                message,
            }));
        }
        if !last
            && self
                .overflow_taken
                .is_some_and(|at| at.elapsed() < SWEEP_EVERY)
        {
            return;
        }
        self.overflow_taken = Some(Instant::now());
        let overflow = std::mem::take(&mut *self.shared.overflow.lock());
        for (function, counts) in overflow {
            self.behind.report(
                log::Level::Warn,
                format_args!(
                    "log writer fell behind, output dropped function={function} lines={} bytes={} records={}",
                    counts.lines, counts.bytes, counts.records
                ),
            );
            items.push(Item::Line(LogLine {
                time_ms: now,
                function,
                version: counts.version,
                invocation: None,
                stream: level::NOTICE.into(),
                message: overflow_message(&counts),
            }));
        }
    }

    /// Commits a batch; the id each item got (None for a deletion).
    fn insert(&mut self, items: &[Item]) -> Result<Vec<Option<i64>>, LogError> {
        let tx = self.conn.transaction().map_err(sql("begin a batch"))?;
        let mut ids = Vec::with_capacity(items.len());
        {
            let mut lines = tx
                .prepare_cached(
                    "INSERT INTO lines (time_ms, function, version, invocation, stream, level,
                     message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql("prepare to insert lines"))?;
            let mut records = tx
                .prepare_cached(
                    "INSERT INTO invocations (invocation, function, version, start_ms,
                     duration_us, status, outcome, cold, init_us, queue_wait_us, worker_pid,
                     peak_rss_bytes, lines_dropped, bytes_dropped)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(sql("prepare to insert invocations"))?;
            for item in items {
                let id = match item {
                    Item::Line(l) => Some(
                        lines
                            .insert(params![
                                l.time_ms,
                                l.function,
                                l.version,
                                l.invocation,
                                l.stream,
                                level::rank(&l.stream),
                                l.message
                            ])
                            .map_err(sql("insert a line"))?,
                    ),
                    Item::Record(r, dropped, peak) => Some(
                        records
                            .insert(params![
                                r.invocation,
                                r.function,
                                r.version,
                                r.start_ms,
                                micros(r.duration),
                                r.status,
                                r.outcome.as_str(),
                                r.cold,
                                r.init.map(micros),
                                micros(r.queue_wait),
                                r.worker_pid,
                                peak.map(|b| b as i64),
                                dropped.lines as i64,
                                dropped.bytes as i64
                            ])
                            .map_err(sql("insert an invocation"))?,
                    ),
                    Item::Forget(function) => {
                        tx.execute("DELETE FROM lines WHERE function = ?1", [function])
                            .map_err(sql("delete a function's lines"))?;
                        tx.execute("DELETE FROM invocations WHERE function = ?1", [function])
                            .map_err(sql("delete a function's invocations"))?;
                        None
                    }
                };
                ids.push(id);
            }
        }
        tx.commit().map_err(sql("commit a batch"))?;
        Ok(ids)
    }

    fn append_jsonl(&mut self, items: &[Item], ids: &[Option<i64>]) -> std::io::Result<()> {
        for (item, id) in items.iter().zip(ids) {
            let (time_ms, object) = match item {
                Item::Line(line) => (line.time_ms, tagged("log", &stored_line(line, *id))),
                Item::Record(record, dropped, peak) => {
                    let stored = stored_record(record, *dropped, *peak, *id);
                    (record.start_ms, tagged("invocation", &stored))
                }
                Item::Forget(_) => continue,
            };
            self.jsonl.append(time_ms, &object)?;
        }
        self.jsonl.flush()
    }

    /// Runs retention; how long until the next pass.
    fn maintain(&mut self) -> Duration {
        match retention::run(
            &self.conn,
            &mut self.jsonl,
            &self.rules,
            &self.db_path,
            now_ms(),
        ) {
            Ok(pass) => {
                if pass.lines + pass.records > 0 || !pass.files.is_empty() {
                    log::info!(
                        "log retention deleted lines={} invocations={} files={:?}",
                        pass.lines,
                        pass.records,
                        pass.files
                    );
                }
                match pass.finished {
                    true => MAINTENANCE_EVERY,
                    false => MAINTENANCE_AGAIN,
                }
            }
            Err(e) => {
                self.trouble.report(
                    log::Level::Error,
                    format_args!("failed to enforce log retention: {e}"),
                );
                MAINTENANCE_EVERY
            }
        }
    }
}

/// Rate-limits the writer's own messages: a failing disk or a flood of output must not
/// flood the server's log.
#[derive(Default)]
struct Trouble {
    last: Option<Instant>,
    suppressed: u64,
}

impl Trouble {
    fn report(&mut self, level: log::Level, what: impl Display) {
        if self.last.is_some_and(|at| at.elapsed() < ERROR_EVERY) {
            self.suppressed += 1;
            return;
        }
        match self.suppressed {
            0 => log::log!(level, "{what}"),
            n => log::log!(level, "{what} (and {n} more like it since)"),
        }
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}
