//! Deploying functions: restoring active deployments at start-up, deploying a functions
//! directory or an uploaded source, rollback, environment changes and deletion.
//!
//! A deploy registers the function, builds a new immutable version only when the source
//! changed, records REGISTERED -> BUILT -> DEPLOYED, warms `min_warm` workers, and only
//! then routes the name to the new pool; the old pool drains its in-flight work. A failed
//! build leaves the previous version serving. Deploys are serialized by one lock: they are
//! rare, and two builds of one function must not race for a version number.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;

use crate::bundler::{self, BuildError};
use crate::config::Limits;
use crate::pool::Pool;
use crate::registry::{valid_name, Registry, Route};
use crate::store::bundles::{bundle_path, version_dir};
use crate::store::catalog::Settings;
use crate::store::metadata::{Deployment, Env, Metadata, StoreError};
use crate::worker::WorkerSpec;

mod manage;
mod source;

pub use source::{scan_dir, Fnv64, FunctionSource};

#[derive(Debug)]
pub enum DeployError {
    Store(StoreError),
    InvalidName(String),
    NotFound(String),
    Source(String, String),
    Build(String, BuildError),
    NoVersion(String, String),
    UnknownVersion(String, i64),
    /// The server could not write to its data dir.
    Storage(String, String),
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployError::Store(e) => write!(f, "{e}"),
            DeployError::InvalidName(name) => {
                write!(
                    f,
                    "invalid function name {name:?}: use [a-z0-9][a-z0-9_-]{{0,63}}"
                )
            }
            DeployError::NotFound(name) => write!(f, "no function named {name}"),
            DeployError::Source(name, why) => write!(f, "failed to read function {name}: {why}"),
            DeployError::Build(name, e) => write!(f, "failed to build function {name}: {e}"),
            DeployError::NoVersion(name, why) => write!(f, "function {name}: {why}"),
            DeployError::Storage(name, why) => write!(f, "failed to store function {name}: {why}"),
            DeployError::UnknownVersion(name, version) => {
                write!(f, "function {name} has no version {version}")
            }
        }
    }
}

impl std::error::Error for DeployError {}

impl From<StoreError> for DeployError {
    fn from(e: StoreError) -> DeployError {
        DeployError::Store(e)
    }
}

/// The outcome of a deploy, rollback or environment change.
#[derive(Debug, Serialize)]
pub struct Deployed {
    pub name: String,
    pub version: i64,
    /// The source, environment and settings were all as already deployed.
    pub unchanged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_ms: Option<u64>,
}

/// Source code uploaded over the socket API.
pub struct Upload<'a> {
    pub name: &'a str,
    pub filename: &'a str,
    pub source: &'a [u8],
    /// Replaces the stored environment when given.
    pub env: Option<Env>,
    /// Merged into the stored settings.
    pub settings: Settings,
}

pub struct Deployer {
    pub meta: Arc<Metadata>,
    pub registry: Arc<Registry>,
    pub data_dir: PathBuf,
    pub bun: PathBuf,
    pub script: PathBuf,
    pub limits: Limits,
    serial: Mutex<()>,
}

impl Deployer {
    pub fn new(
        meta: Arc<Metadata>,
        registry: Arc<Registry>,
        data_dir: PathBuf,
        bun: PathBuf,
        script: PathBuf,
        limits: Limits,
    ) -> Deployer {
        Deployer {
            meta,
            registry,
            data_dir,
            bun,
            script,
            limits,
            serial: Mutex::new(()),
        }
    }

    /// Routes every active deployment recorded in metadata.db; returns how many.
    pub fn restore(&self) -> Result<usize, StoreError> {
        let deployments = self.meta.active_deployments()?;
        for deployment in &deployments {
            let bundle = bundle_path(&self.data_dir, deployment.function_id, deployment.version);
            if !bundle.is_file() {
                let why = format!(
                    "bundle {} is missing; deploy the function again",
                    bundle.display()
                );
                log::error!("failed to restore function={}: {why}", deployment.name);
                self.registry.mark_failed(&deployment.name, why);
                continue;
            }
            let settings = self
                .meta
                .function(&deployment.name)?
                .map(|f| f.settings)
                .unwrap_or_default();
            self.registry
                .activate(&deployment.name, self.pool(deployment, &settings, bundle));
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
            match self.deploy_source(&source) {
                Ok(_) => deployed += 1,
                Err(e) => {
                    log::error!("{e}");
                    self.registry.mark_failed(&source.name, e.to_string());
                }
            }
        }
        Ok(deployed)
    }

    /// Deploys one function of a functions directory. The directory is the source of
    /// truth: its `NAME.env` file is the whole environment (none without the file).
    pub fn deploy_source(&self, source: &FunctionSource) -> Result<Deployed, DeployError> {
        let name = &source.name;
        let env = source
            .env()
            .map_err(|e| DeployError::Source(name.clone(), e))?;
        self.deploy_code(name, &source.entry, Some(env), &Settings::default())
    }

    /// Deploys uploaded source, stored under `data/sources/{function_id}/{digest}/`.
    pub fn deploy_upload(&self, upload: &Upload) -> Result<Deployed, DeployError> {
        let name = upload.name;
        if !valid_name(name) {
            return Err(DeployError::InvalidName(name.to_string()));
        }
        let filename = entry_filename(upload.filename).ok_or_else(|| {
            DeployError::Source(
                name.to_string(),
                format!(
                    "{:?} is not a .ts, .js, .mts or .mjs file name",
                    upload.filename
                ),
            )
        })?;
        let mut hash = Fnv64::default();
        hash.write(filename.as_bytes());
        hash.write(upload.source);
        let digest = hash.finish();

        let function_id = self.meta.register(name)?;
        let dir = self
            .data_dir
            .join("sources")
            .join(function_id.to_string())
            .join(&digest[6..]);
        let entry = dir.join(filename);
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&entry, upload.source))
            .map_err(|e| {
                DeployError::Storage(name.to_string(), format!("cannot store the source: {e}"))
            })?;
        self.deploy_code(name, &entry, upload.env.clone(), &upload.settings)
    }

    /// Builds `entry` and deploys the result. A version is identified by the digest of its
    /// bundle, so an edit anywhere in what the entry imports makes a new version, and a
    /// rebuild of unchanged code keeps the version it had.
    fn deploy_code(
        &self,
        name: &str,
        entry: &Path,
        env: Option<Env>,
        settings: &Settings,
    ) -> Result<Deployed, DeployError> {
        let _serial = self.serial.lock();
        let function_id = self.meta.register(name)?;
        let stored = self
            .meta
            .function(name)?
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        let env = env.unwrap_or(stored.env.clone());
        let mut merged = stored.settings.clone();
        merged.merge(settings);

        let started = Instant::now();
        let function_dir = self.data_dir.join("bundles").join(function_id.to_string());
        let staging = function_dir.join(format!("staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let staged_bundle = staging.join("bundle.js");
        if let Err(e) = build_into(&self.bun, entry, &staged_bundle) {
            let _ = std::fs::remove_dir_all(&staging);
            self.record_build_failure(function_id, &e.to_string())?;
            return Err(DeployError::Build(name.to_string(), e));
        }
        let build_ms = started.elapsed().as_millis() as u64;
        let digest =
            file_digest(&staged_bundle).map_err(|e| DeployError::Source(name.to_string(), e))?;

        let latest = self.meta.latest_version(function_id)?;
        let version = match latest {
            Some(v)
                if v.digest == digest
                    && v.state != "FAILED"
                    && bundle_path(&self.data_dir, function_id, v.version).is_file() =>
            {
                let _ = std::fs::remove_dir_all(&staging);
                v.version
            }
            _ => {
                let version = self.meta.add_version(function_id, &digest)?;
                let target = version_dir(&self.data_dir, function_id, version);
                let _ = std::fs::remove_dir_all(&target);
                std::fs::rename(&staging, &target).map_err(|e| {
                    DeployError::Storage(
                        name.to_string(),
                        format!("cannot store the bundle in {}: {e}", target.display()),
                    )
                })?;
                self.meta.mark_built(function_id, version)?;
                log::info!(
                    "built function={name} version={version} build_ms={}",
                    build_ms
                );
                version
            }
        };
        let deployed = self.activate(
            name,
            function_id,
            version,
            env.clone(),
            &merged,
            Some(build_ms),
        )?;
        self.meta.set_env(function_id, &env)?;
        self.meta.set_settings(function_id, &merged)?;
        Ok(deployed)
    }

    /// Records a failed build as a FAILED version, unless the newest version already
    /// failed the same way (a restart with the same broken file adds nothing).
    fn record_build_failure(&self, function_id: i64, error: &str) -> Result<(), StoreError> {
        let latest = self.meta.latest_version(function_id)?;
        if latest.is_some_and(|v| v.state == "FAILED" && v.error.as_deref() == Some(error)) {
            return Ok(());
        }
        let version = self.meta.add_version(function_id, "build-failed")?;
        self.meta.mark_failed(function_id, version, error)
    }

    /// Makes `version` active with `env` unless exactly that is already serving.
    fn activate(
        &self,
        name: &str,
        function_id: i64,
        version: i64,
        env: Env,
        settings: &Settings,
        build_ms: Option<u64>,
    ) -> Result<Deployed, DeployError> {
        let active = self.meta.active(function_id)?;
        let limits = settings.apply(&self.limits);
        let same_record = active
            .as_ref()
            .is_some_and(|a| a.version == version && a.env == env);
        let serving = matches!(self.registry.lookup(name),
            Some(Route::Active(p)) if p.spec.version == version && p.spec.env == env && p.limits == limits);
        if same_record && serving {
            log::info!("function unchanged function={name} version={version}");
            return Ok(Deployed {
                name: name.to_string(),
                version,
                unchanged: true,
                build_ms,
            });
        }
        let deployment = Deployment {
            name: name.to_string(),
            function_id,
            version,
            env: env.clone(),
        };
        let pool = self.pool(
            &deployment,
            settings,
            bundle_path(&self.data_dir, function_id, version),
        );
        // Start the new version before it takes traffic (and before it is recorded): a
        // version whose workers cannot start never replaces a working one, and with
        // min_warm > 0 a deploy adds no cold starts.
        let deadline = Instant::now()
            + limits
                .invocation_timeout
                .max(std::time::Duration::from_secs(10));
        if let Err(reason) = pool.check_starts(deadline) {
            pool.retire()
                .into_iter()
                .for_each(|w| w.kill("deploy aborted"));
            return Err(DeployError::NoVersion(
                name.to_string(),
                format!("version {version} failed to start: {reason}"),
            ));
        }
        if !same_record {
            self.meta.deploy(function_id, version, &env)?;
        }
        self.registry.activate(name, pool);
        log::info!("deployed function={name} version={version}");
        Ok(Deployed {
            name: name.to_string(),
            version,
            unchanged: false,
            build_ms,
        })
    }

    fn pool(&self, deployment: &Deployment, settings: &Settings, bundle: PathBuf) -> Arc<Pool> {
        let spec = WorkerSpec {
            function: deployment.name.clone(),
            version: deployment.version,
            bun: self.bun.clone(),
            script: self.script.clone(),
            bundle,
            env: deployment.env.clone(),
        };
        Arc::new(Pool::new(spec, settings.apply(&self.limits)))
    }
}

/// The digest of a file's bytes, as stored in metadata.db.
fn file_digest(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut hash = Fnv64::default();
    hash.write(&bytes);
    Ok(hash.finish())
}

/// The file name an uploaded entry is stored under, if it is a plain source file name.
fn entry_filename(name: &str) -> Option<&str> {
    let name = if name.is_empty() { "index.ts" } else { name };
    let plain = !name.contains('/') && !name.starts_with('.') && name.len() <= 128;
    let source = ["ts", "js", "mts", "mjs"]
        .iter()
        .any(|ext| name.ends_with(&format!(".{ext}")));
    (plain && source).then_some(name)
}

fn build_into(bun: &Path, entry: &Path, bundle: &Path) -> Result<(), BuildError> {
    if let Some(dir) = bundle.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| BuildError::Compile(format!("failed to create {}: {e}", dir.display())))?;
    }
    // `bun build` runs in the entry's directory, so both paths must be absolute.
    let entry = std::path::absolute(entry).unwrap_or_else(|_| entry.to_path_buf());
    let bundle = std::path::absolute(bundle).unwrap_or_else(|_| bundle.to_path_buf());
    bundler::build(bun, &entry, &bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploaded_file_names_are_plain_source_files() {
        assert_eq!(entry_filename(""), Some("index.ts"));
        assert_eq!(entry_filename("hello.js"), Some("hello.js"));
        for bad in ["../x.ts", "a/b.ts", ".hidden.ts", "notes.txt", "x.ts.exe"] {
            assert_eq!(entry_filename(bad), None, "{bad}");
        }
    }
}
