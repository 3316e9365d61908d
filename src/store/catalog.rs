//! The catalogue side of `metadata.db`: listing functions and versions, each function's
//! stored environment and settings, deployment history for rollback, and deletion.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::metadata::{op, Env, Metadata, StoreError};
use crate::config::Limits;

/// Per-function overrides of the configured limits, set at deploy time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_warm: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_size: Option<u64>,
}

impl Settings {
    /// The configured limits with this function's overrides applied.
    pub fn apply(&self, base: &Limits) -> Limits {
        let mut limits = base.clone();
        if let Some(ms) = self.timeout_ms {
            limits.invocation_timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(n) = self.max_workers {
            limits.max_workers = n;
        }
        if let Some(n) = self.min_warm {
            limits.min_warm = n.min(limits.max_workers);
        }
        if let Some(bytes) = self.memory_limit {
            limits.memory_limit = bytes;
        }
        if let Some(bytes) = self.max_body_size {
            limits.max_body_size = bytes as usize;
        }
        if let Some(bytes) = self.max_response_size {
            limits.max_response_size = bytes as usize;
        }
        limits
    }

    /// Checks the overrides are usable, with the same bounds as the configuration.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == Some(0) {
            return Err("timeout must be longer than zero".into());
        }
        if self.max_workers.is_some_and(|n| n == 0 || n > 1024) {
            return Err("max_workers must be between 1 and 1024".into());
        }
        if let (Some(warm), Some(max)) = (self.min_warm, self.max_workers) {
            if warm > max {
                return Err(format!(
                    "min_warm ({warm}) must not exceed max_workers ({max})"
                ));
            }
        }
        if self.min_warm.is_some_and(|n| n > 1024) {
            return Err("min_warm must be at most 1024".into());
        }
        if self.max_body_size.is_some_and(|n| n > 1 << 30) {
            return Err("max_body_size must be at most 1G".into());
        }
        if self
            .max_response_size
            .is_some_and(|n| n > crate::config::MAX_RESPONSE_SIZE)
        {
            return Err("max_response_size must be at most 64M".into());
        }
        if self.memory_limit == Some(0) {
            return Err("memory limit must be larger than zero".into());
        }
        Ok(())
    }

    /// Takes every override `other` sets.
    pub fn merge(&mut self, other: &Settings) {
        self.timeout_ms = other.timeout_ms.or(self.timeout_ms);
        self.max_workers = other.max_workers.or(self.max_workers);
        self.min_warm = other.min_warm.or(self.min_warm);
        self.memory_limit = other.memory_limit.or(self.memory_limit);
        self.max_body_size = other.max_body_size.or(self.max_body_size);
        self.max_response_size = other.max_response_size.or(self.max_response_size);
    }
}

/// One function as stored.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionRow {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    #[serde(skip)]
    pub env: Env,
    pub settings: Settings,
    pub active_version: Option<i64>,
    pub latest_version: Option<i64>,
}

/// One version as stored.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    pub version: i64,
    pub digest: String,
    pub state: String,
    pub error: Option<String>,
    pub registered_at: i64,
    pub built_at: Option<i64>,
    pub deployed_at: Option<i64>,
}

const FUNCTION_COLUMNS: &str = "f.id, f.name, f.created_at, f.env, f.settings,
    (SELECT d.version FROM deployments d WHERE d.function_id = f.id AND d.retired_at IS NULL),
    (SELECT MAX(v.version) FROM versions v WHERE v.function_id = f.id)";

fn function_row(r: &Row<'_>) -> rusqlite::Result<FunctionRow> {
    let env: String = r.get(3)?;
    let settings: String = r.get(4)?;
    Ok(FunctionRow {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        env: serde_json::from_str(&env).unwrap_or_default(),
        settings: serde_json::from_str(&settings).unwrap_or_default(),
        active_version: r.get(5)?,
        latest_version: r.get(6)?,
    })
}

impl Metadata {
    pub fn function(&self, name: &str) -> Result<Option<FunctionRow>, StoreError> {
        let sql = format!("SELECT {FUNCTION_COLUMNS} FROM functions f WHERE f.name = ?1");
        self.conn
            .lock()
            .query_row(&sql, [name], function_row)
            .optional()
            .map_err(op("read function"))
    }

    pub fn functions(&self) -> Result<Vec<FunctionRow>, StoreError> {
        let conn = self.conn.lock();
        let sql = format!("SELECT {FUNCTION_COLUMNS} FROM functions f ORDER BY f.name");
        let mut stmt = conn.prepare(&sql).map_err(op("prepare function list"))?;
        let rows = stmt
            .query_map([], function_row)
            .map_err(op("list functions"))?;
        rows.collect::<Result<_, _>>().map_err(op("list functions"))
    }

    pub fn versions(&self, function_id: i64) -> Result<Vec<VersionRow>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare(
                "SELECT version, digest, state, error, registered_at, built_at, deployed_at
                 FROM versions WHERE function_id = ?1 ORDER BY version",
            )
            .map_err(op("prepare version list"))?;
        let rows = stmt
            .query_map([function_id], |r| {
                Ok(VersionRow {
                    version: r.get(0)?,
                    digest: r.get(1)?,
                    state: r.get(2)?,
                    error: r.get(3)?,
                    registered_at: r.get(4)?,
                    built_at: r.get(5)?,
                    deployed_at: r.get(6)?,
                })
            })
            .map_err(op("list versions"))?;
        rows.collect::<Result<_, _>>().map_err(op("list versions"))
    }

    pub fn set_env(&self, function_id: i64, env: &Env) -> Result<(), StoreError> {
        let json = serde_json::to_string(env).expect("a string map always serializes");
        self.conn
            .lock()
            .execute(
                "UPDATE functions SET env = ?2 WHERE id = ?1",
                params![function_id, json],
            )
            .map_err(op("store environment"))?;
        Ok(())
    }

    pub fn set_settings(&self, function_id: i64, settings: &Settings) -> Result<(), StoreError> {
        let json = serde_json::to_string(settings).expect("settings always serialize");
        self.conn
            .lock()
            .execute(
                "UPDATE functions SET settings = ?2 WHERE id = ?1",
                params![function_id, json],
            )
            .map_err(op("store settings"))?;
        Ok(())
    }

    /// The most recent deployed version other than `current`, for a rollback.
    pub fn previous_version(
        &self,
        function_id: i64,
        current: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.conn
            .lock()
            .query_row(
                "SELECT d.version FROM deployments d JOIN versions v
                   ON v.function_id = d.function_id AND v.version = d.version
                 WHERE d.function_id = ?1 AND d.version != ?2 AND v.state IN ('BUILT', 'DEPLOYED')
                 ORDER BY d.id DESC LIMIT 1",
                params![function_id, current],
                |r| r.get(0),
            )
            .optional()
            .map_err(op("find previous version"))
    }

    /// The state of one version, if it exists.
    pub fn version_state(
        &self,
        function_id: i64,
        version: i64,
    ) -> Result<Option<String>, StoreError> {
        self.conn
            .lock()
            .query_row(
                "SELECT state FROM versions WHERE function_id = ?1 AND version = ?2",
                params![function_id, version],
                |r| r.get(0),
            )
            .optional()
            .map_err(op("read version state"))
    }

    /// Removes a function with its versions and deployments.
    pub fn delete_function(&self, function_id: i64) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(op("begin delete"))?;
        for table in ["deployments", "versions"] {
            let sql = format!("DELETE FROM {table} WHERE function_id = ?1");
            tx.execute(&sql, [function_id])
                .map_err(op("delete function rows"))?;
        }
        tx.execute("DELETE FROM functions WHERE id = ?1", [function_id])
            .map_err(op("delete function"))?;
        tx.commit().map_err(op("commit delete"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_lists_versions_env_settings_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(dir.path()).unwrap();
        let id = meta.register("fn").unwrap();
        for digest in ["a", "b"] {
            let v = meta.add_version(id, digest).unwrap();
            meta.mark_built(id, v).unwrap();
            meta.deploy(id, v, &Env::new()).unwrap();
        }
        let env = Env::from([("K".to_string(), "v".to_string())]);
        meta.set_env(id, &env).unwrap();
        let settings = Settings {
            max_workers: Some(2),
            ..Settings::default()
        };
        meta.set_settings(id, &settings).unwrap();

        let row = meta.function("fn").unwrap().unwrap();
        assert_eq!((row.active_version, row.latest_version), (Some(2), Some(2)));
        assert_eq!((row.env, row.settings), (env, settings));
        assert_eq!(meta.versions(id).unwrap().len(), 2);
        assert_eq!(meta.previous_version(id, 2).unwrap(), Some(1));
        assert_eq!(
            meta.version_state(id, 1).unwrap().as_deref(),
            Some("DEPLOYED")
        );

        meta.delete_function(id).unwrap();
        assert!(meta.function("fn").unwrap().is_none());
        assert!(meta.functions().unwrap().is_empty());
    }
}

#[cfg(test)]
mod settings_tests {
    use super::Settings;

    #[test]
    fn response_size_is_bounded_by_the_protocol_and_overrides_the_configured_one() {
        let big = Settings {
            max_response_size: Some((64 << 20) + 1),
            ..Settings::default()
        };
        assert!(big.validate().unwrap_err().contains("at most 64M"));
        let small = Settings {
            max_response_size: Some(1024),
            ..Settings::default()
        };
        assert_eq!(small.validate(), Ok(()));
        let base = crate::config::Layers::new().resolve().unwrap().limits;
        assert_eq!(base.max_response_size, 32 << 20);
        assert_eq!(small.apply(&base).max_response_size, 1024);
    }
}
