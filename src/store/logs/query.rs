//! GET_LOGS: reads lines and invocation records through connections of the reader's own
//! (a few kept idle for the next request), which WAL lets run beside the writer.

use std::path::PathBuf;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, Row};
use serde::Serialize;

use super::{level, sql, LogError};

/// Lines (or records) one reply holds at most; larger limits are cut to this.
pub const MAX_LIMIT: usize = 10_000;
/// Idle read connections kept.
const IDLE_CONNECTIONS: usize = 4;

/// Which lines to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub function: Option<String>,
    pub limit: usize,
    /// Only lines at or after this time (records: started at or after).
    pub since_ms: Option<i64>,
    /// The lowest level rank kept (`level::rank`).
    pub min_level: u8,
    pub invocation: Option<String>,
    /// Only lines after this id, oldest first (for following); else the newest.
    pub after_id: Option<i64>,
}

/// One stored line, as GET_LOGS and the JSONL files show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLine {
    /// Null only in JSONL, for a line logs.db failed to take.
    pub id: Option<i64>,
    pub time_ms: i64,
    pub function: String,
    pub version: i64,
    pub invocation: Option<String>,
    pub stream: String,
    pub level: &'static str,
    pub message: String,
}

/// One invocation's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRecord {
    pub id: Option<i64>,
    pub invocation: String,
    pub function: String,
    pub version: i64,
    pub start_ms: i64,
    pub duration_ms: f64,
    pub status: u16,
    pub outcome: String,
    pub cold: bool,
    pub init_ms: Option<f64>,
    pub queue_wait_ms: f64,
    pub worker_pid: Option<u32>,
    /// The worker's peak resident memory since it started (VmHWM), when it was known.
    pub peak_rss_bytes: Option<u64>,
    pub lines_dropped: u64,
    pub bytes_dropped: u64,
}

/// Lines in id order and where to go on from.
#[derive(Debug)]
pub struct Page {
    pub lines: Vec<StoredLine>,
    /// The id to pass as `after_id` to get the matching lines that come next.
    pub last_id: i64,
}

pub struct Reader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Reader {
    pub fn new(path: PathBuf) -> Reader {
        Reader {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn lines(&self, q: &LogQuery) -> Result<Page, LogError> {
        let limit = q.limit.min(MAX_LIMIT);
        let mut filters = Filters::common(q, "time_ms >= ?");
        if q.min_level > level::TRACE {
            // FIXME: no index covers the level: `--level error` over a function with
            // millions of quieter lines reads them all to find a few. An index on
            // (function, level, id) would fix it, at the cost of every insert.
            filters.add("level >= ?", i64::from(q.min_level));
        }
        if let Some(after) = q.after_id {
            filters.add("id > ?", after);
        }
        let order = match q.after_id {
            Some(_) => "ASC",
            None => "DESC",
        };
        let sql_text = format!(
            "SELECT id, time_ms, function, version, invocation, stream, level, message
             FROM lines {} ORDER BY id {order} LIMIT {limit}",
            filters.clause()
        );
        self.with(|conn| {
            // One read transaction: the lines and the newest id come from the same snapshot.
            let tx = conn.transaction().map_err(sql("begin a read"))?;
            let mut lines = query(&tx, &sql_text, &filters.values, line_of)?;
            let newest: i64 = tx
                .query_row("SELECT COALESCE(MAX(id), 0) FROM lines", [], |r| r.get(0))
                .map_err(sql("read the newest line id"))?;
            drop(tx);
            if q.after_id.is_none() {
                lines.reverse();
            }
            let last_id = match (q.after_id, lines.last()) {
                (Some(after), None) if limit == 0 => after,
                // A full page: more may match after its last line.
                (Some(_), Some(last)) if lines.len() == limit => last.id.unwrap_or(newest),
                // Everything up to the newest line was looked at.
                _ => newest,
            };
            Ok(Page { lines, last_id })
        })
    }

    /// The newest `limit` invocation records matching the function, invocation and since
    /// filters, oldest first.
    pub fn records(&self, q: &LogQuery) -> Result<Vec<StoredRecord>, LogError> {
        let limit = q.limit.min(MAX_LIMIT);
        let filters = Filters::common(q, "start_ms >= ?");
        let sql_text = format!(
            "SELECT id, invocation, function, version, start_ms, duration_us, status, outcome,
                    cold, init_us, queue_wait_us, worker_pid, peak_rss_bytes, lines_dropped,
                    bytes_dropped
             FROM invocations {} ORDER BY id DESC LIMIT {limit}",
            filters.clause()
        );
        self.with(|conn| {
            let mut records = query(conn, &sql_text, &filters.values, record_of)?;
            records.reverse();
            Ok(records)
        })
    }

    /// Runs `f` on an idle connection, or a new one.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let idle = self.idle.lock().pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = f(&mut conn);
        if result.is_ok() {
            let mut idle = self.idle.lock();
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(conn);
            }
        }
        result
    }

    fn open(&self) -> Result<Connection, LogError> {
        let conn = Connection::open(&self.path).map_err(sql("open a reader"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sql("set busy timeout"))?;
        conn.pragma_update(None, "query_only", true)
            .map_err(sql("make a reader read-only"))?;
        Ok(conn)
    }
}

/// A WHERE clause and its values, built one condition at a time.
#[derive(Default)]
struct Filters {
    conditions: Vec<&'static str>,
    values: Vec<Value>,
}

impl Filters {
    /// The function, invocation and since filters both tables share; `since` is the
    /// condition on the table's time column.
    fn common(q: &LogQuery, since: &'static str) -> Filters {
        let mut filters = Filters::default();
        if let Some(function) = &q.function {
            filters.add("function = ?", function.clone());
        }
        if let Some(invocation) = &q.invocation {
            filters.add("invocation = ?", invocation.clone());
        }
        if let Some(since_ms) = q.since_ms {
            filters.add(since, since_ms);
        }
        filters
    }

    fn add(&mut self, condition: &'static str, value: impl Into<Value>) {
        self.conditions.push(condition);
        self.values.push(value.into());
    }

    fn clause(&self) -> String {
        match self.conditions.is_empty() {
            true => String::new(),
            false => format!("WHERE {}", self.conditions.join(" AND ")),
        }
    }
}

fn query<T>(
    conn: &Connection,
    sql_text: &str,
    values: &[Value],
    map: fn(&Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>, LogError> {
    let mut stmt = conn
        .prepare_cached(sql_text)
        .map_err(sql("prepare a query"))?;
    let rows = stmt
        .query_map(params_from_iter(values), map)
        .map_err(sql("query"))?;
    rows.collect::<Result<_, _>>().map_err(sql("read rows"))
}

fn line_of(r: &Row) -> rusqlite::Result<StoredLine> {
    let rank: i64 = r.get(6)?;
    Ok(StoredLine {
        id: r.get(0)?,
        time_ms: r.get(1)?,
        function: r.get(2)?,
        version: r.get(3)?,
        invocation: r.get(4)?,
        stream: r.get(5)?,
        level: level::name(rank.clamp(0, i64::from(level::ERROR)) as u8),
        message: r.get(7)?,
    })
}

fn record_of(r: &Row) -> rusqlite::Result<StoredRecord> {
    let ms = |us: i64| us as f64 / 1000.0;
    Ok(StoredRecord {
        id: r.get(0)?,
        invocation: r.get(1)?,
        function: r.get(2)?,
        version: r.get(3)?,
        start_ms: r.get(4)?,
        duration_ms: ms(r.get(5)?),
        status: r.get(6)?,
        outcome: r.get(7)?,
        cold: r.get(8)?,
        init_ms: r.get::<_, Option<i64>>(9)?.map(ms),
        queue_wait_ms: ms(r.get(10)?),
        worker_pid: r.get(11)?,
        peak_rss_bytes: r.get(12)?,
        lines_dropped: r.get(13)?,
        bytes_dropped: r.get(14)?,
    })
}
