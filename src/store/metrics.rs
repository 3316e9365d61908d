//! `metrics.db`: invocation metrics per minute and, past `metrics_retention`, per day
//! (SQLite, WAL, busy timeout).
//!
//! A minute row holds one function version's [`Aggregate`] for one minute of one server
//! run. Every run numbers itself one past the highest run stored, and writes its minutes
//! as absolute values (the whole minute so far, not an increment), so writing a minute
//! again is harmless and a restart within the same minute adds a row instead of
//! overwriting the previous run's. Old minutes are summed into day rows (runs merged)
//! and deleted; old days are deleted.
//!
//! Only the metrics writer thread writes; readers of GET_METRICS share the connection
//! behind its mutex, like `metadata.db`.

use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, Connection};

use crate::metrics::aggregate::{Aggregate, COLUMNS};

pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;

pub use super::StoreError;

fn op(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    super::op_on("metrics.db", op)
}

/// The start of the minute (or day) holding `ms`.
pub fn start_of(ms: i64, span_ms: i64) -> i64 {
    ms - ms.rem_euclid(span_ms)
}

/// Counts of one function version.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub function: String,
    pub version: i64,
    pub aggregate: Aggregate,
}

/// What [`MetricsDb::window`] read.
#[derive(Debug, Default)]
pub struct Stored {
    /// Per function version, summed over minutes and days.
    pub sums: Vec<Row>,
    /// This run's minutes that the caller may hold in memory, each with its start.
    pub minutes: Vec<(Row, i64)>,
}

/// `function, version` and the columns of an aggregate, from the start of a result row.
fn read_row(r: &rusqlite::Row) -> rusqlite::Result<Row> {
    let mut values = [0i64; COLUMNS.len()];
    for (at, value) in values.iter_mut().enumerate() {
        *value = r.get(2 + at)?;
    }
    Ok(Row {
        function: r.get(0)?,
        version: r.get(1)?,
        aggregate: Aggregate::from_columns(&values),
    })
}

/// The columns summed, or for `_max` columns their maximum taken, over rows.
fn combined() -> Vec<String> {
    let combine = |c: &&str| match c.ends_with("_max") {
        true => format!("MAX({c})"),
        false => format!("SUM({c})"),
    };
    COLUMNS.iter().map(combine).collect()
}

/// A minute of this run to write.
pub struct MinuteRow<'a> {
    pub minute_ms: i64,
    pub function: &'a str,
    pub version: i64,
    pub aggregate: &'a Aggregate,
}

pub struct MetricsDb {
    conn: Mutex<Connection>,
    /// This server run's number.
    pub run: i64,
}

/// The table of minutes or of days, with the aggregate's columns after the key.
fn table(name: &str, start: &str, run: bool) -> String {
    let columns: String = COLUMNS
        .iter()
        .map(|c| format!("    {c} INTEGER NOT NULL DEFAULT 0,\n"))
        .collect();
    let (run_column, run_key) = match run {
        true => ("    run INTEGER NOT NULL,\n", ", run"),
        false => ("", ""),
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (\n    {start} INTEGER NOT NULL,\n    \
         function TEXT NOT NULL,\n    version INTEGER NOT NULL,\n{run_column}{columns}    \
         PRIMARY KEY ({start}, function, version{run_key})\n);\n"
    )
}

/// `col = excluded.col` for minutes, `col = col + excluded.col` (or MAX) for days.
fn updates(add: bool) -> String {
    let update = |c: &&str| match (add, c.ends_with("_max")) {
        (false, _) => format!("{c} = excluded.{c}"),
        (true, false) => format!("{c} = {c} + excluded.{c}"),
        (true, true) => format!("{c} = MAX({c}, excluded.{c})"),
    };
    COLUMNS.iter().map(update).collect::<Vec<_>>().join(", ")
}

impl MetricsDb {
    /// Opens (creating if needed) `metrics.db` in the data directory, as a new run.
    pub fn open(data_dir: &Path) -> Result<MetricsDb, StoreError> {
        let conn = super::open_sqlite(&data_dir.join("metrics.db")).map_err(op("open"))?;
        let schema = table("minutes", "minute", true) + &table("days", "day", false);
        conn.execute_batch(&schema).map_err(op("create schema"))?;
        let run: i64 = conn
            .query_row("SELECT COALESCE(MAX(run), 0) + 1 FROM minutes", [], |r| {
                r.get(0)
            })
            .map_err(op("number this run"))?;
        Ok(MetricsDb {
            conn: Mutex::new(conn),
            run,
        })
    }

    /// Writes minutes of this run, replacing what was written of them before.
    pub fn write_minutes(&self, rows: &[MinuteRow]) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO minutes (minute, function, version, run, {}) VALUES (?1, ?2, ?3, ?4, {})
             ON CONFLICT (minute, function, version, run) DO UPDATE SET {}",
            COLUMNS.join(", "),
            (5..5 + COLUMNS.len())
                .map(|n| format!("?{n}"))
                .collect::<Vec<_>>()
                .join(", "),
            updates(false),
        );
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(op("begin writing minutes"))?;
        {
            let mut insert = tx.prepare_cached(&sql).map_err(op("prepare minute"))?;
            for row in rows {
                let key = params![row.minute_ms, row.function, row.version, self.run];
                let values = row.aggregate.to_columns();
                let all: Vec<&dyn rusqlite::ToSql> = key
                    .iter()
                    .copied()
                    .chain(values.iter().map(|v| v as &dyn rusqlite::ToSql))
                    .collect();
                insert.execute(all.as_slice()).map_err(op("write minute"))?;
            }
        }
        tx.commit().map_err(op("commit minutes"))
    }

    /// What is stored of the time from `from_ms` on, of one function or all: minutes
    /// that end after it and days that end after it. This run's minutes from
    /// `held_from` on come row by row (the caller may hold newer copies of them in
    /// memory); everything else comes summed per function version.
    pub fn window(
        &self,
        function: Option<&str>,
        from_ms: i64,
        held_from: i64,
    ) -> Result<Stored, StoreError> {
        let columns = COLUMNS.join(", ");
        let combined = combined().join(", ");
        let filter = "minute > ?1 AND (?2 IS NULL OR function = ?2)";
        let sums_sql = format!(
            "SELECT function, version, {combined} FROM (
                 SELECT function, version, {columns} FROM minutes
                 WHERE {filter} AND NOT (run = ?3 AND minute >= ?4)
                 UNION ALL
                 SELECT function, version, {columns} FROM days
                 WHERE day > ?5 AND (?2 IS NULL OR function = ?2)
             ) GROUP BY function, version"
        );
        let minutes_sql = format!(
            "SELECT function, version, {columns}, minute FROM minutes
             WHERE {filter} AND run = ?3 AND minute >= ?4"
        );
        let minute_after = from_ms.saturating_sub(MINUTE_MS);
        let day_after = from_ms.saturating_sub(DAY_MS);

        let conn = self.conn.lock();
        let mut stored = Stored::default();
        let mut select = conn.prepare_cached(&sums_sql).map_err(op("prepare read"))?;
        let sums = select
            .query_map(
                params![minute_after, function, self.run, held_from, day_after],
                read_row,
            )
            .map_err(op("read metrics"))?;
        for sum in sums {
            stored.sums.push(sum.map_err(op("read metrics"))?);
        }
        let mut select = conn
            .prepare_cached(&minutes_sql)
            .map_err(op("prepare read"))?;
        let minutes = select
            .query_map(params![minute_after, function, self.run, held_from], |r| {
                let minute: i64 = r.get(2 + COLUMNS.len())?;
                Ok((read_row(r)?, minute))
            })
            .map_err(op("read metrics"))?;
        for minute in minutes {
            stored.minutes.push(minute.map_err(op("read metrics"))?);
        }
        Ok(stored)
    }

    /// Sums minutes that ended `retention` or more before `now_ms` into their (UTC) days
    /// and deletes them, then deletes days that ended `daily_retention` before. Returns
    /// how many minute rows were rolled up and how many day rows deleted.
    pub fn roll_up(
        &self,
        now_ms: i64,
        retention: Duration,
        daily_retention: Duration,
    ) -> Result<(usize, usize), StoreError> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let minutes_before = now_ms.saturating_sub(ms(retention));
        let days_before = now_ms.saturating_sub(ms(daily_retention));
        let roll = format!(
            "INSERT INTO days (day, function, version, {}) \
             SELECT minute - minute % {DAY_MS}, function, version, {} FROM minutes \
             WHERE minute + {MINUTE_MS} <= ?1 GROUP BY 1, 2, 3 \
             ON CONFLICT (day, function, version) DO UPDATE SET {}",
            COLUMNS.join(", "),
            combined().join(", "),
            updates(true),
        );

        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(op("begin roll-up"))?;
        tx.execute(&roll, [minutes_before])
            .map_err(op("roll minutes up into days"))?;
        let rolled = tx
            .execute(
                &format!("DELETE FROM minutes WHERE minute + {MINUTE_MS} <= ?1"),
                [minutes_before],
            )
            .map_err(op("delete rolled-up minutes"))?;
        let deleted = tx
            .execute(
                &format!("DELETE FROM days WHERE day + {DAY_MS} <= ?1"),
                [days_before],
            )
            .map_err(op("delete expired days"))?;
        tx.commit().map_err(op("commit roll-up"))?;
        Ok((rolled, deleted))
    }

    /// Deletes every row of a function.
    pub fn forget(&self, function: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(op("begin forgetting"))?;
        for table in ["minutes", "days"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE function = ?1"),
                [function],
            )
            .map_err(op("delete a function's metrics"))?;
        }
        tx.commit().map_err(op("commit forgetting"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::aggregate::{ErrorKind, Sample};

    fn aggregate(invocations: u64, ms: u64) -> Aggregate {
        let mut a = Aggregate::default();
        for n in 0..invocations {
            a.record(&Sample {
                error: (n == 0).then_some(ErrorKind::Timeout),
                cold: n == 0,
                duration_us: ms * 1000,
                queue_wait_us: ms,
            });
        }
        a
    }

    fn write(db: &MetricsDb, minute_ms: i64, function: &str, a: &Aggregate) {
        let row = MinuteRow {
            minute_ms,
            function,
            version: 1,
            aggregate: a,
        };
        db.write_minutes(&[row]).unwrap();
    }

    #[test]
    fn minutes_and_days_start_on_their_boundaries() {
        assert_eq!(start_of(125_000, MINUTE_MS), 120_000);
        assert_eq!(start_of(120_000, MINUTE_MS), 120_000);
        assert_eq!(start_of(-1, MINUTE_MS), -60_000);
        assert_eq!(start_of(DAY_MS + 5, DAY_MS), DAY_MS);
    }

    /// `(table, start, invocations, duration max)` of every stored row, in order.
    fn stored(db: &MetricsDb) -> Vec<(String, i64, i64, i64)> {
        let conn = db.conn.lock();
        let sql = "SELECT 'minutes', minute, invocations, duration_us_max FROM minutes
                   UNION ALL SELECT 'days', day, invocations, duration_us_max FROM days
                   ORDER BY 1, 2";
        let mut select = conn.prepare(sql).unwrap();
        let rows = select.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)));
        rows.unwrap().map(Result::unwrap).collect()
    }

    fn invocations(rows: &[Row]) -> Vec<(&str, u64)> {
        let mut found: Vec<(&str, u64)> = rows
            .iter()
            .map(|r| (r.function.as_str(), r.aggregate.invocations))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn minutes_are_replaced_within_a_run_and_kept_apart_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let first = MetricsDb::open(dir.path()).unwrap();
        assert_eq!(first.run, 1);
        write(&first, 60_000, "f", &aggregate(2, 3));
        write(&first, 60_000, "f", &aggregate(5, 3));
        write(&first, 60_000, "g", &aggregate(1, 3));
        drop(first);

        let second = MetricsDb::open(dir.path()).unwrap();
        assert_eq!(second.run, 2);
        write(&second, 60_000, "f", &aggregate(4, 3));
        let all = second.window(Some("f"), 60_000, i64::MAX).unwrap();
        assert_eq!(invocations(&all.sums), [("f", 9)]);
        assert!(all.minutes.is_empty());
        let mut expected = aggregate(5, 3);
        expected.add(&aggregate(4, 3));
        assert_eq!(all.sums[0].aggregate, expected);

        // This run's minutes from `held_from` on come apart, the rest summed.
        let held = second.window(Some("f"), 60_000, 60_000).unwrap();
        assert_eq!(invocations(&held.sums), [("f", 5)]);
        assert_eq!(held.minutes.len(), 1);
        assert_eq!(held.minutes[0].0.aggregate, aggregate(4, 3));
        assert_eq!(held.minutes[0].1, 60_000);

        // A minute overlaps a window that starts inside it, not one that starts after.
        let from_inside = second.window(None, 119_999, i64::MAX).unwrap();
        assert_eq!(invocations(&from_inside.sums), [("f", 9), ("g", 1)]);
        assert!(second
            .window(None, 120_000, i64::MAX)
            .unwrap()
            .sums
            .is_empty());

        second.forget("f").unwrap();
        assert!(second
            .window(Some("f"), 0, i64::MAX)
            .unwrap()
            .sums
            .is_empty());
        let left = second.window(None, 0, i64::MIN).unwrap();
        assert_eq!(invocations(&left.sums), [("g", 1)]);
    }

    #[test]
    fn old_minutes_roll_up_into_days_and_old_days_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = MetricsDb::open(dir.path()).unwrap();
        let day = 10 * DAY_MS;
        write(&db, day + 5 * MINUTE_MS, "f", &aggregate(2, 3));
        write(&db, day + 9 * MINUTE_MS, "f", &aggregate(3, 40));
        write(&db, day + DAY_MS, "f", &aggregate(7, 3));

        // Everything of day 10 is older than an hour; the minute of day 11 is not.
        let now = day + DAY_MS + 30 * MINUTE_MS;
        let hour = Duration::from_secs(3600);
        let year = Duration::from_secs(365 * 86_400);
        assert_eq!(db.roll_up(now, hour, year).unwrap(), (2, 0));
        assert_eq!(
            stored(&db),
            [
                ("days".into(), day, 5, 40_000),
                ("minutes".into(), day + DAY_MS, 7, 3_000)
            ]
        );
        // Windows read days and minutes alike.
        let sums = db.window(None, day, i64::MAX).unwrap().sums;
        assert_eq!(sums[0].aggregate.invocations, 12);
        let sums = db.window(None, day + DAY_MS, i64::MAX).unwrap().sums;
        assert_eq!(sums[0].aggregate.invocations, 7);

        // A second roll-up of the same day adds to its row.
        write(&db, day + 20 * MINUTE_MS, "f", &aggregate(1, 3));
        assert_eq!(db.roll_up(now, hour, year).unwrap(), (1, 0));
        assert_eq!(stored(&db)[0], ("days".into(), day, 6, 40_000));

        // Days end after their last minute: day 10 goes once a day past its end.
        let second = Duration::from_secs(1);
        assert_eq!(db.roll_up(day + 2 * DAY_MS, hour, second).unwrap(), (1, 1));
        assert_eq!(stored(&db), [("days".into(), day + DAY_MS, 7, 3_000)]);
    }
}
