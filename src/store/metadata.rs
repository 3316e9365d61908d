//! `metadata.db`: functions, their versions and deployments, in SQLite (WAL, busy timeout).
//!
//! A version moves REGISTERED -> BUILT -> DEPLOYED (or FAILED when its build fails), each
//! step stamped. A deployment binds a function to one built version and a snapshot of its
//! environment; the newest unretired deployment is the function's active one, and a restart
//! serves exactly those. Metadata changes only at deploy time, so one connection behind a
//! mutex is enough; the request path never touches this store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use super::now_ms;

/// Environment variables of one function, ordered by name.
pub type Env = BTreeMap<String, String>;

pub use super::StoreError;

pub(super) fn op(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    super::op_on("metadata.db", op)
}

/// The newest version of a function and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    pub version: i64,
    pub digest: String,
    pub state: String,
    pub error: Option<String>,
}

/// A function's active deployment: what the router serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub name: String,
    pub function_id: i64,
    pub version: i64,
    pub env: Env,
}

pub struct Metadata {
    pub(super) conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS functions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    env TEXT NOT NULL DEFAULT '{}',
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS versions (
    function_id INTEGER NOT NULL REFERENCES functions(id),
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    registered_at INTEGER NOT NULL,
    built_at INTEGER,
    deployed_at INTEGER,
    PRIMARY KEY (function_id, version)
);
CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY,
    function_id INTEGER NOT NULL REFERENCES functions(id),
    version INTEGER NOT NULL,
    env TEXT NOT NULL,
    deployed_at INTEGER NOT NULL,
    retired_at INTEGER
);
";

impl Metadata {
    /// Opens (creating if needed) `metadata.db` in the data directory.
    pub fn open(data_dir: &Path) -> Result<Metadata, StoreError> {
        let path: PathBuf = data_dir.join("metadata.db");
        let conn = super::open_sqlite(&path).map_err(op("open"))?;
        // Deleted rows (old environments hold secrets) are overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(op("enable secure delete"))?;
        conn.execute_batch(SCHEMA).map_err(op("create schema"))?;
        Ok(Metadata {
            conn: Mutex::new(conn),
        })
    }

    /// Returns the id of function `name`, registering it if new.
    pub fn register(&self, name: &str) -> Result<i64, StoreError> {
        let conn = self.conn.lock();
        conn.execute(
            "INSERT OR IGNORE INTO functions (name, created_at) VALUES (?1, ?2)",
            params![name, now_ms()],
        )
        .map_err(op("register function"))?;
        conn.query_row("SELECT id FROM functions WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .map_err(op("look up function"))
    }

    /// The newest version of a function, if it has any.
    pub fn latest_version(&self, function_id: i64) -> Result<Option<VersionInfo>, StoreError> {
        self.conn
            .lock()
            .query_row(
                "SELECT version, digest, state, error FROM versions WHERE function_id = ?1
                 ORDER BY version DESC LIMIT 1",
                [function_id],
                |r| {
                    Ok(VersionInfo {
                        version: r.get(0)?,
                        digest: r.get(1)?,
                        state: r.get(2)?,
                        error: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(op("read latest version"))
    }

    /// Records a new REGISTERED version with the digest of its source.
    pub fn add_version(&self, function_id: i64, digest: &str) -> Result<i64, StoreError> {
        let conn = self.conn.lock();
        let version: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE function_id = ?1",
                [function_id],
                |r| r.get(0),
            )
            .map_err(op("number version"))?;
        conn.execute(
            "INSERT INTO versions (function_id, version, digest, state, registered_at)
             VALUES (?1, ?2, ?3, 'REGISTERED', ?4)",
            params![function_id, version, digest, now_ms()],
        )
        .map_err(op("add version"))?;
        Ok(version)
    }

    /// Marks a version BUILT.
    pub fn mark_built(&self, function_id: i64, version: i64) -> Result<(), StoreError> {
        self.conn
            .lock()
            .execute(
                "UPDATE versions SET state = 'BUILT', built_at = ?3
                 WHERE function_id = ?1 AND version = ?2",
                params![function_id, version, now_ms()],
            )
            .map_err(op("mark version built"))?;
        Ok(())
    }

    /// Marks a version FAILED with the build error.
    pub fn mark_failed(
        &self,
        function_id: i64,
        version: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .lock()
            .execute(
                "UPDATE versions SET state = 'FAILED', error = ?3
                 WHERE function_id = ?1 AND version = ?2",
                params![function_id, version, error],
            )
            .map_err(op("mark version failed"))?;
        Ok(())
    }

    /// Makes `version` (which must be built) the function's active deployment with `env`,
    /// retiring the previous deployment.
    pub fn deploy(&self, function_id: i64, version: i64, env: &Env) -> Result<(), StoreError> {
        let env_json = serde_json::to_string(env).expect("a string map always serializes");
        let now = now_ms();
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(op("begin deploy"))?;
        tx.execute(
            "UPDATE deployments SET retired_at = ?2 WHERE function_id = ?1 AND retired_at IS NULL",
            params![function_id, now],
        )
        .map_err(op("retire deployment"))?;
        tx.execute(
            "INSERT INTO deployments (function_id, version, env, deployed_at) VALUES (?1, ?2, ?3, ?4)",
            params![function_id, version, env_json, now],
        )
        .map_err(op("insert deployment"))?;
        tx.execute(
            "UPDATE versions SET state = 'DEPLOYED', deployed_at = COALESCE(deployed_at, ?3)
             WHERE function_id = ?1 AND version = ?2",
            params![function_id, version, now],
        )
        .map_err(op("mark version deployed"))?;
        tx.commit().map_err(op("commit deploy"))
    }

    /// The active deployment of one function, if any.
    pub fn active(&self, function_id: i64) -> Result<Option<Deployment>, StoreError> {
        Ok(self.active_where("f.id = ?1", [function_id])?.pop())
    }

    /// Every function's active deployment, by name.
    pub fn active_deployments(&self) -> Result<Vec<Deployment>, StoreError> {
        self.active_where("1 = 1", [])
    }

    fn active_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        params: P,
    ) -> Result<Vec<Deployment>, StoreError> {
        let conn = self.conn.lock();
        let sql = format!(
            "SELECT f.name, f.id, d.version, d.env FROM deployments d
             JOIN functions f ON f.id = d.function_id
             WHERE d.retired_at IS NULL AND {filter} ORDER BY f.name"
        );
        let mut stmt = conn.prepare(&sql).map_err(op("prepare deployment query"))?;
        let rows = stmt
            .query_map(params, |r| {
                let env: String = r.get(3)?;
                Ok(Deployment {
                    name: r.get(0)?,
                    function_id: r.get(1)?,
                    version: r.get(2)?,
                    env: serde_json::from_str(&env).unwrap_or_default(),
                })
            })
            .map_err(op("read deployments"))?;
        rows.collect::<Result<_, _>>()
            .map_err(op("read deployments"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(dir.path()).unwrap();
        let id = meta.register("hello").unwrap();
        assert_eq!(meta.register("hello").unwrap(), id);
        assert_eq!(meta.latest_version(id).unwrap(), None);

        let v1 = meta.add_version(id, "aaa").unwrap();
        meta.mark_built(id, v1).unwrap();
        let env = Env::from([("K".to_string(), "v".to_string())]);
        meta.deploy(id, v1, &env).unwrap();

        let v2 = meta.add_version(id, "bbb").unwrap();
        meta.mark_failed(id, v2, "syntax error").unwrap();
        let latest = meta.latest_version(id).unwrap().unwrap();
        assert_eq!((latest.version, latest.state.as_str()), (2, "FAILED"));
        drop(meta);

        // A reopened store still serves version 1, the last good deployment.
        let meta = Metadata::open(dir.path()).unwrap();
        let active = meta.active_deployments().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!((active[0].version, active[0].env.clone()), (1, env));
        assert_eq!(meta.active(id).unwrap().unwrap().name, "hello");
    }
}
