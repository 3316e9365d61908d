//! Durable state under the data directory: function metadata in SQLite and bundle paths.

pub mod bundles;
pub mod catalog;
pub mod lock;
pub mod metadata;

/// Milliseconds since the Unix epoch, the timestamp format of every store.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
