//! `logs.db` and `logs/YYYY-MM-DD.jsonl`: every line functions print and one record per
//! invocation, kept across restarts.
//!
//! The hub (`observe`) checks each line against its budget (`budget.rs`) and hands it to a
//! bounded channel without ever blocking (`sink.rs`): when the channel is full the line is
//! dropped and counted, and the writer later says so in a notice line. One writer thread
//! (`writer.rs`) takes the channel in batches, commits each to SQLite and appends it to
//! the day's JSONL file (`jsonl.rs`), and enforces retention and the size limit
//! (`retention.rs`); `stored.rs` says how entries look once stored. GET_LOGS reads
//! through connections of its own (`query.rs`), which WAL lets run beside the writer.

mod budget;
mod jsonl;
pub mod level;
mod query;
mod retention;
mod sink;
mod stored;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;

use crate::config::Observability;
use crate::observe::{self, InvocationRecord, LogLine};

pub use query::{LogQuery, Page, Reader, StoredLine, StoredRecord};
pub use sink::Sink;

#[derive(Debug)]
pub enum LogError {
    Sql {
        op: &'static str,
        source: rusqlite::Error,
    },
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Sql { op, source } => write!(f, "failed to {op} in logs.db: {source}"),
            LogError::Io { op, path, source } => {
                write!(f, "failed to {op} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for LogError {}

fn sql(op: &'static str) -> impl Fn(rusqlite::Error) -> LogError {
    move |source| LogError::Sql { op, source }
}

/// The name of the JSONL file (its first segment) holding the entries of `time_ms`'s
/// UTC day: `2024-05-01.jsonl`.
pub fn jsonl_file_name(time_ms: i64) -> String {
    jsonl::file_name(&jsonl::date_of_day(time_ms.div_euclid(jsonl::DAY_MS)), 0)
}

/// What travels from the hub to the writer, in order.
enum Entry {
    Line(LogLine),
    /// A finished invocation with the output its budget dropped.
    Invocation(Box<InvocationRecord>, budget::Dropped),
    /// Delete everything stored of a deleted function.
    Forget(String),
    /// Commit what came before, then answer.
    Flush(crossbeam_channel::Sender<()>),
    /// Commit what came before, then end.
    Stop,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    invocation TEXT,
    stream TEXT NOT NULL,
    level INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS lines_function ON lines (function, id);
CREATE INDEX IF NOT EXISTS lines_invocation ON lines (invocation) WHERE invocation IS NOT NULL;
CREATE INDEX IF NOT EXISTS lines_time ON lines (time_ms);
CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    invocation TEXT NOT NULL,
    function TEXT NOT NULL,
    version INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    cold INTEGER NOT NULL,
    init_us INTEGER,
    queue_wait_us INTEGER NOT NULL,
    worker_pid INTEGER,
    peak_rss_bytes INTEGER,
    lines_dropped INTEGER NOT NULL,
    bytes_dropped INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS invocations_function ON invocations (function, id);
CREATE INDEX IF NOT EXISTS invocations_invocation ON invocations (invocation);
CREATE INDEX IF NOT EXISTS invocations_start ON invocations (start_ms);
";

/// Opens a connection to `logs.db` (WAL, busy timeout), creating the schema if needed.
fn connect(path: &Path) -> Result<Connection, LogError> {
    let conn = Connection::open(path).map_err(sql("open"))?;
    // Only takes effect on a new file, before WAL and the first table: freed pages can
    // then be given back to the file system after retention deletes rows.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(sql("enable incremental vacuum"))?;
    crate::store::configure_sqlite(&conn).map_err(sql("configure"))?;
    conn.pragma_update(None, "journal_size_limit", 4 << 20)
        .map_err(sql("limit the WAL size"))?;
    conn.execute_batch(SCHEMA).map_err(sql("create schema"))?;
    Ok(conn)
}

/// What the hub and GET_LOGS reach: the sink that queues, the reader that queries.
pub struct Logs {
    pub sink: Sink,
    pub reader: Reader,
}

/// The running store: owns the writer thread. [`LogStore::stop`] (or drop) drains the
/// channel, commits and joins the writer.
pub struct LogStore {
    logs: Arc<Logs>,
    writer: Option<JoinHandle<()>>,
}

impl LogStore {
    /// Opens `logs.db` and `logs/` under `data_dir`, starts the writer and plugs the store
    /// into the hub.
    pub fn start(data_dir: &Path, settings: &Observability) -> Result<LogStore, LogError> {
        let db = data_dir.join("logs.db");
        let dir = data_dir.join("logs");
        std::fs::create_dir_all(&dir).map_err(|source| LogError::Io {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        let conn = connect(&db)?;
        let (sink, shared, rx) = sink::channel(settings.log_invocation_max);
        let writer = writer::Writer::new(conn, rx, shared, &db, &dir, settings);
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| LogError::Io {
                op: "start the writer thread for",
                path: db.clone(),
                source,
            })?;
        let logs = Arc::new(Logs {
            sink,
            reader: Reader::new(db),
        });
        observe::attach_logs(Arc::clone(&logs));
        log::info!(
            "log store open path={} retention={:?} max_size={} invocation_max={}",
            data_dir.join("logs.db").display(),
            settings.log_retention,
            settings.log_max_size,
            settings.log_invocation_max
        );
        Ok(LogStore {
            logs,
            writer: Some(handle),
        })
    }

    /// Unplugs the store from the hub, lets the writer commit everything queued, and
    /// waits for it.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let Some(handle) = self.writer.take() else {
            return;
        };
        observe::detach_logs();
        self.logs.sink.stop();
        if handle.join().is_err() {
            log::error!("the log writer panicked; lines still queued are lost");
        }
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.shut();
    }
}
