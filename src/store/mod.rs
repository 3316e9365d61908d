//! Durable state under the data directory: function metadata in SQLite and bundle paths.

pub mod bundles;
pub mod catalog;
pub mod lock;
pub mod logs;
pub mod metadata;
pub mod metrics;

/// A failed SQLite operation: which database, what it was doing, and why.
#[derive(Debug)]
pub struct StoreError {
    db: &'static str,
    op: &'static str,
    source: rusqlite::Error,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed to {} in {}: {}", self.op, self.db, self.source)
    }
}

impl std::error::Error for StoreError {}

/// Maps a rusqlite error of operation `op` on database `db` to a [`StoreError`].
pub fn op_on(db: &'static str, op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError { db, op, source }
}

/// Opens a SQLite database the way every store here does: a 5 s busy timeout, WAL, and
/// `synchronous = NORMAL` (a crash loses at most the last commits, never consistency).
pub fn open_sqlite(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    configure_sqlite(&conn)?;
    Ok(conn)
}

/// The settings of [`open_sqlite`], for a connection that needed a pragma first.
pub fn configure_sqlite(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")
}

/// Milliseconds since the Unix epoch, the timestamp format of every store.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
