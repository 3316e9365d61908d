//! Retention, run by the writer at start and once a minute.
//!
//! First by age: lines and invocation records older than `log_retention` go, and so do
//! the JSONL files of days that ended before it. Then by size: when logs.db (its used
//! pages and its WAL) plus logs/*.jsonl exceed `log_max_size`, each copy above half of
//! the limit (both hold the same entries) loses its oldest rows or files until it is at
//! 90% of its half. Rows go in chunks, each its own transaction, so queued lines wait at
//! most one chunk; a pass that runs out of time says so and is run again a second later.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::jsonl::{self, FileInfo, Jsonl, DAY_MS};
use super::{sql, LogError};

/// Rows deleted per transaction.
const CHUNK: i64 = 5_000;
/// How long one pass may delete before it lets the writer go on.
const PASS_TIME: Duration = Duration::from_millis(250);
/// The smallest JSONL segment.
const MIN_SEGMENT: u64 = 64 << 10;

pub struct Rules {
    pub retention: Duration,
    pub max_size: u64,
}

impl Rules {
    /// A day's JSONL file moves on to a new segment past this size: an eighth of the
    /// files' half of the limit, so the size limit can remove a busy day in pieces.
    pub fn segment_max(&self) -> u64 {
        (self.max_size / 2 / 8).max(MIN_SEGMENT)
    }
}

/// What one pass deleted.
#[derive(Debug, Default)]
pub struct Pass {
    pub lines: u64,
    pub records: u64,
    pub files: Vec<String>,
    /// False when the pass ran out of time with more to delete.
    pub finished: bool,
}

pub fn run(
    conn: &Connection,
    jsonl: &mut Jsonl,
    rules: &Rules,
    db_path: &Path,
    now_ms: i64,
) -> Result<Pass, LogError> {
    let started = Instant::now();
    let cutoff = now_ms.saturating_sub(rules.retention.as_millis() as i64);
    let mut pass = Pass {
        finished: true,
        ..Pass::default()
    };

    // By age.
    let mut chunks = Chunks {
        conn,
        started,
        finished: &mut pass.finished,
    };
    pass.lines += chunks.delete("lines", "time_ms < ?1", cutoff)?;
    pass.records += chunks.delete("invocations", "start_ms < ?1", cutoff)?;

    // By size: the database's half.
    let files = jsonl::list(jsonl.dir()).map_err(|source| LogError::Io {
        op: "list",
        path: jsonl.dir().to_path_buf(),
        source,
    })?;
    let files_size: u64 = files.iter().map(|f| f.size).sum();
    let db_size = db_used(conn, db_path)?;
    let half = rules.max_size / 2;
    let over = db_size + files_size > rules.max_size;
    if over && db_size > half && *chunks.finished {
        let share = share_to_delete(db_size, half);
        for (table, count) in [
            ("lines", &mut pass.lines),
            ("invocations", &mut pass.records),
        ] {
            let (min, max): (Option<i64>, Option<i64>) = conn
                .query_row(&format!("SELECT MIN(id), MAX(id) FROM {table}"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(sql("read the id range"))?;
            if let Some(cut) = min.zip(max).map(|(min, max)| cut_id(min, max, share)) {
                *count += chunks.delete(table, "id < ?1", cut)?;
            }
        }
    }
    if pass.lines + pass.records > 0 {
        conn.execute_batch("PRAGMA incremental_vacuum")
            .map_err(sql("give freed pages back"))?;
    }

    // The files: by age, then their half of the size.
    let cutoff_date = jsonl::date_of_day(cutoff.div_euclid(DAY_MS));
    let trim_to = (over && files_size > half).then_some(half / 10 * 9);
    let doomed = files_to_delete(&files, &cutoff_date, trim_to);
    if !doomed.is_empty() {
        // The open file may be among them; the next append reopens what it needs.
        let _ = jsonl.close();
    }
    for name in doomed {
        let path = jsonl.dir().join(&name);
        std::fs::remove_file(&path).map_err(|source| LogError::Io {
            op: "delete",
            path,
            source,
        })?;
        pass.files.push(name);
    }
    Ok(pass)
}

/// Deletes rows in chunks until none match or the pass runs out of time.
struct Chunks<'a> {
    conn: &'a Connection,
    started: Instant,
    finished: &'a mut bool,
}

impl Chunks<'_> {
    fn delete(&mut self, table: &str, condition: &str, bound: i64) -> Result<u64, LogError> {
        let sql_text = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {condition} LIMIT {CHUNK})"
        );
        let mut deleted = 0;
        while *self.finished {
            let n = self
                .conn
                .execute(&sql_text, [bound])
                .map_err(sql("delete old rows"))?;
            deleted += n as u64;
            if (n as i64) < CHUNK {
                break;
            }
            if self.started.elapsed() >= PASS_TIME {
                *self.finished = false;
            }
        }
        Ok(deleted)
    }
}

/// Bytes logs.db holds: its pages in use and its WAL.
fn db_used(conn: &Connection, db_path: &Path) -> Result<u64, LogError> {
    let pragma = |name: &str| -> Result<u64, LogError> {
        conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(sql("read the database size"))
    };
    let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
    let mut wal = db_path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    Ok(pages * pragma("page_size")? + wal)
}

/// The share of rows to delete to bring `used` bytes down to 90% of `budget`.
fn share_to_delete(used: u64, budget: u64) -> f64 {
    let target = budget as f64 * 0.9;
    ((used as f64 - target) / used.max(1) as f64).clamp(0.0, 1.0)
}

/// The id below which rows go, to delete `share` of the ids from `min` to `max`.
fn cut_id(min: i64, max: i64, share: f64) -> i64 {
    let span = (max - min + 1) as f64;
    min + (span * share).round() as i64
}

/// The files to delete, oldest first: those of days before `cutoff_date`, then, when
/// `trim_to` is given, the oldest until the rest fit in it.
fn files_to_delete(files: &[FileInfo], cutoff_date: &str, trim_to: Option<u64>) -> Vec<String> {
    let mut total: u64 = files.iter().map(|f| f.size).sum();
    let mut doomed = Vec::new();
    for file in files {
        let too_old = file.date.as_str() < cutoff_date;
        let too_big = trim_to.is_some_and(|limit| total > limit);
        if !too_old && !too_big {
            break;
        }
        total -= file.size;
        doomed.push(file.name.clone());
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    fn file(date: &str, segment: u32, size: u64) -> FileInfo {
        FileInfo {
            name: jsonl::file_name(date, segment),
            date: date.into(),
            segment,
            size,
        }
    }

    #[test]
    fn files_go_by_age_then_oldest_first_until_under_the_limit() {
        let files = [
            file("2024-04-01", 0, 10),
            file("2024-04-02", 0, 10),
            file("2024-04-02", 1, 10),
            file("2024-04-03", 0, 10),
        ];
        assert_eq!(
            files_to_delete(&files, "2024-04-02", None),
            ["2024-04-01.jsonl"]
        );
        assert_eq!(
            files_to_delete(&files, "2024-01-01", Some(15)),
            ["2024-04-01.jsonl", "2024-04-02.jsonl", "2024-04-02.1.jsonl"]
        );
        assert!(files_to_delete(&files, "2024-01-01", Some(40)).is_empty());
    }

    #[test]
    fn size_cuts_take_the_oldest_share_of_ids() {
        assert_eq!(share_to_delete(100, 200), 0.0);
        assert!((share_to_delete(200, 100) - 0.55).abs() < 1e-9);
        assert_eq!(cut_id(1, 100, 0.55), 56);
        assert_eq!(cut_id(5, 5, 1.0), 6);
    }

    #[test]
    fn old_rows_and_files_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("logs.db");
        let conn = super::super::connect(&db).unwrap();
        let now = 100 * DAY_MS;
        for (time, function) in [(now - 9 * DAY_MS, "old"), (now - 1000, "new")] {
            conn.execute(
                "INSERT INTO lines (time_ms, function, version, stream, level, message)
                 VALUES (?1, ?2, 1, 'log', 2, 'm')",
                params![time, function],
            )
            .unwrap();
        }
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let mut jsonl = Jsonl::new(&logs, 1 << 20);
        jsonl.append(now - 9 * DAY_MS, b"{}").unwrap();
        jsonl.append(now, b"{}").unwrap();
        let rules = Rules {
            retention: Duration::from_millis(7 * DAY_MS as u64),
            max_size: 1 << 30,
        };

        let pass = run(&conn, &mut jsonl, &rules, &db, now).unwrap();
        assert_eq!((pass.lines, pass.records, pass.finished), (1, 0, true));
        assert_eq!(pass.files, [jsonl::file_name(&jsonl::date_of_day(91), 0)]);
        let left: String = conn
            .query_row("SELECT group_concat(function) FROM lines", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, "new");
        assert_eq!(jsonl::list(&logs).unwrap().len(), 1);
    }

    #[test]
    fn a_store_over_its_size_loses_its_oldest_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("logs.db");
        let conn = super::super::connect(&db).unwrap();
        let message = "x".repeat(1000);
        for n in 0..2000 {
            conn.execute(
                "INSERT INTO lines (time_ms, function, version, stream, level, message)
                 VALUES (?1, 'f', 1, 'log', 2, ?2)",
                params![n, message],
            )
            .unwrap();
        }
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let mut jsonl = Jsonl::new(&logs, 1 << 20);
        let rules = Rules {
            retention: Duration::from_secs(3600),
            max_size: 1 << 20,
        };
        let before = db_used(&conn, &db).unwrap();
        let pass = run(&conn, &mut jsonl, &rules, &db, 1000).unwrap();
        assert!(pass.lines > 1000, "{pass:?}");
        let oldest: i64 = conn
            .query_row("SELECT MIN(time_ms) FROM lines", [], |r| r.get(0))
            .unwrap();
        assert!(oldest > 1000, "the oldest rows went first");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let after = db_used(&conn, &db).unwrap();
        assert!(after < before, "{after} < {before}");
    }
}
