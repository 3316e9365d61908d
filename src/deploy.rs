//! Deploying functions: restoring the active deployments at start-up, and deploying every
//! function of a `--functions-dir`. A deploy registers the function, builds a new version
//! only when its source changed, records REGISTERED -> BUILT -> DEPLOYED, and routes the
//! name to a fresh pool; a failed build leaves any older version serving.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundler::{self, BuildError};
use crate::config::Limits;
use crate::pool::Pool;
use crate::registry::{valid_name, Registry, Route};
use crate::store::bundles::bundle_path;
use crate::store::metadata::{Deployment, Metadata, StoreError};
use crate::worker::WorkerSpec;

mod source;

pub use source::{scan_dir, FunctionSource};

#[derive(Debug)]
pub enum DeployError {
    Store(StoreError),
    Source(String, String),
    Build(String, BuildError),
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployError::Store(e) => write!(f, "{e}"),
            DeployError::Source(name, why) => write!(f, "failed to read function {name}: {why}"),
            DeployError::Build(name, e) => write!(f, "failed to build function {name}: {e}"),
        }
    }
}

impl std::error::Error for DeployError {}

impl From<StoreError> for DeployError {
    fn from(e: StoreError) -> DeployError {
        DeployError::Store(e)
    }
}

pub struct Deployer {
    pub meta: Arc<Metadata>,
    pub registry: Arc<Registry>,
    pub data_dir: PathBuf,
    pub bun: PathBuf,
    pub script: PathBuf,
    pub limits: Limits,
}

impl Deployer {
    /// Routes every active deployment recorded in metadata.db; returns how many.
    pub fn restore(&self) -> Result<usize, StoreError> {
        let deployments = self.meta.active_deployments()?;
        for deployment in &deployments {
            let bundle = bundle_path(&self.data_dir, deployment.function_id, deployment.version);
            if bundle.is_file() {
                self.registry
                    .activate(&deployment.name, self.pool(deployment, bundle));
            } else {
                let why = format!(
                    "bundle {} is missing; deploy the function again",
                    bundle.display()
                );
                log::error!("failed to restore function={}: {why}", deployment.name);
                self.registry.mark_failed(&deployment.name, why);
            }
        }
        Ok(deployments.len())
    }

    /// Deploys every function found in `dir`; a function that fails is logged and marked
    /// failed while the others carry on. Returns how many deployed.
    pub fn deploy_dir(&self, dir: &Path) -> Result<usize, DeployError> {
        let sources =
            scan_dir(dir).map_err(|e| DeployError::Source(dir.display().to_string(), e))?;
        let mut deployed = 0;
        for source in sources {
            match self.deploy(&source) {
                Ok(_) => deployed += 1,
                Err(e) => {
                    log::error!("{e}");
                    self.registry.mark_failed(&source.name, e.to_string());
                }
            }
        }
        Ok(deployed)
    }

    /// Deploys one function, building only if its source changed; returns the version.
    pub fn deploy(&self, source: &FunctionSource) -> Result<i64, DeployError> {
        debug_assert!(valid_name(&source.name));
        let name = &source.name;
        let digest = source
            .digest()
            .map_err(|e| DeployError::Source(name.clone(), e))?;
        let env = source
            .env()
            .map_err(|e| DeployError::Source(name.clone(), e))?;
        let function_id = self.meta.register(name)?;

        let latest = self.meta.latest_version(function_id)?;
        let (version, needs_build) = match latest {
            Some(v) if v.digest == digest => {
                let bundle_ok = bundle_path(&self.data_dir, function_id, v.version).is_file();
                (v.version, v.state == "FAILED" || !bundle_ok)
            }
            _ => (self.meta.add_version(function_id, &digest)?, true),
        };
        let bundle = bundle_path(&self.data_dir, function_id, version);
        if needs_build {
            let started = std::time::Instant::now();
            if let Err(e) = build_into(&self.bun, &source.entry, &bundle) {
                self.meta
                    .mark_failed(function_id, version, &e.to_string())?;
                return Err(DeployError::Build(name.clone(), e));
            }
            self.meta.mark_built(function_id, version)?;
            log::info!(
                "built function={name} version={version} build_ms={}",
                started.elapsed().as_millis()
            );
        }

        let active = self.meta.active(function_id)?;
        let unchanged = active
            .as_ref()
            .is_some_and(|a| a.version == version && a.env == env);
        let routed = matches!(self.registry.lookup(name), Some(Route::Active(p)) if p.spec.version == version);
        if unchanged && routed {
            log::info!("function unchanged function={name} version={version}");
            return Ok(version);
        }
        if !unchanged {
            self.meta.deploy(function_id, version, &env)?;
        }
        let deployment = Deployment {
            name: name.clone(),
            function_id,
            version,
            env,
        };
        self.registry.activate(name, self.pool(&deployment, bundle));
        log::info!("deployed function={name} version={version}");
        Ok(version)
    }

    fn pool(&self, deployment: &Deployment, bundle: PathBuf) -> Arc<Pool> {
        let spec = WorkerSpec {
            function: deployment.name.clone(),
            version: deployment.version,
            bun: self.bun.clone(),
            script: self.script.clone(),
            bundle,
            env: deployment.env.clone(),
        };
        Arc::new(Pool::new(spec, self.limits.clone()))
    }
}

fn build_into(bun: &Path, entry: &Path, bundle: &Path) -> Result<(), BuildError> {
    if let Some(dir) = bundle.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| BuildError::Compile(format!("failed to create {}: {e}", dir.display())))?;
    }
    let entry = std::path::absolute(entry).unwrap_or_else(|_| entry.to_path_buf());
    bundler::build(bun, &entry, bundle)
}
