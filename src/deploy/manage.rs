//! Changing what is deployed without new code: rollback to an earlier version, a new
//! environment, registration without code, and deletion.

use super::{DeployError, Deployed, Deployer};
use crate::registry::valid_name;
use crate::store::bundles::bundle_path;
use crate::store::catalog::Settings;
use crate::store::metadata::Env;

impl Deployer {
    /// Routes `name` back to an earlier built version: `to`, or the one deployed before
    /// the current one.
    pub fn rollback(&self, name: &str, to: Option<i64>) -> Result<Deployed, DeployError> {
        let _serial = self.serial.lock();
        let function = self
            .meta
            .function(name)?
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        let current = function.active_version.unwrap_or(0);
        let target = match to {
            Some(version) => version,
            None => self
                .meta
                .previous_version(function.id, current)?
                .ok_or_else(|| {
                    DeployError::NoVersion(
                        name.to_string(),
                        "no earlier version to roll back to".into(),
                    )
                })?,
        };
        match self.meta.version_state(function.id, target)?.as_deref() {
            Some("BUILT" | "DEPLOYED")
                if bundle_path(&self.data_dir, function.id, target).is_file() => {}
            Some(state) => {
                return Err(DeployError::NoVersion(
                    name.to_string(),
                    format!("version {target} is {state} and cannot serve"),
                ))
            }
            None => return Err(DeployError::UnknownVersion(name.to_string(), target)),
        }
        self.activate(
            name,
            function.id,
            target,
            function.env,
            &function.settings,
            None,
        )
    }

    /// Changes a function's stored environment and restarts its workers gracefully on
    /// the same version. Returns the new environment.
    pub fn update_env(
        &self,
        name: &str,
        change: impl FnOnce(&mut Env),
    ) -> Result<Env, DeployError> {
        let _serial = self.serial.lock();
        let function = self
            .meta
            .function(name)?
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        let mut env = function.env.clone();
        change(&mut env);
        if let Some(version) = function.active_version {
            self.activate(
                name,
                function.id,
                version,
                env.clone(),
                &function.settings,
                None,
            )?;
        }
        self.meta.set_env(function.id, &env)?;
        Ok(env)
    }

    /// Registers a function without deploying it (idempotent).
    pub fn register(&self, name: &str, settings: &Settings) -> Result<(), DeployError> {
        if !valid_name(name) {
            return Err(DeployError::InvalidName(name.to_string()));
        }
        let _serial = self.serial.lock();
        let function_id = self.meta.register(name)?;
        let mut stored = self
            .meta
            .function(name)?
            .map(|f| f.settings)
            .unwrap_or_default();
        stored.merge(settings);
        self.meta.set_settings(function_id, &stored)?;
        Ok(())
    }

    /// Removes a function: its route (in-flight work finishes), metadata and files.
    pub fn delete(&self, name: &str) -> Result<(), DeployError> {
        let _serial = self.serial.lock();
        let function = self
            .meta
            .function(name)?
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        self.registry.remove(name);
        self.meta.delete_function(function.id)?;
        for dir in ["bundles", "sources"] {
            let path = self.data_dir.join(dir).join(function.id.to_string());
            if let Err(e) = std::fs::remove_dir_all(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("failed to remove {}: {e}", path.display());
                }
            }
        }
        log::info!("deleted function={name}");
        Ok(())
    }
}
