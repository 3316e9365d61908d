//! The Bun runtime the server depends on: finding the `bun` executable and installing the
//! embedded worker script into the data directory, so an installed binary needs no
//! source tree.

use std::fmt;
use std::path::{Path, PathBuf};

/// `bun/worker.ts`, compiled into the binary.
const WORKER_SCRIPT: &str = include_str!("../bun/worker.ts");

/// Where `npm ci --prefix bun` puts Bun, relative to the repository root.
const NPM_BUN: &str = "bun/node_modules/.bin/bun";

#[derive(Debug)]
pub enum RuntimeError {
    BunNotFound { configured: Option<PathBuf> },
    InstallScript(PathBuf, std::io::Error),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::BunNotFound { configured: Some(path) } => write!(
                f,
                "bun_path {} is not an executable file; install Bun with `npm ci --prefix bun` or fix bun_path",
                path.display()
            ),
            RuntimeError::BunNotFound { configured: None } => write!(
                f,
                "Bun not found on PATH or at {NPM_BUN}; install it with `npm ci --prefix bun` (or see https://bun.sh) or set bun_path"
            ),
            RuntimeError::InstallScript(path, e) => {
                write!(f, "failed to write the worker script {}: {e}", path.display())
            }
        }
    }
}

impl std::error::Error for RuntimeError {}

/// Finds Bun: the configured `bun_path`, then `PATH`, then `bun/node_modules/.bin/bun`
/// under the current directory or any ancestor of the running executable.
pub fn find_bun(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = configured {
        return match is_executable(path) {
            true => Ok(absolute(path)),
            false => Err(RuntimeError::BunNotFound {
                configured: Some(path.to_path_buf()),
            }),
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("bun"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    on_path
        .into_iter()
        .chain(roots.iter().map(|root| root.join(NPM_BUN)))
        .find(|candidate| is_executable(candidate))
        .map(|found| absolute(&found))
        .ok_or(RuntimeError::BunNotFound { configured: None })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Writes the embedded worker script to `data_dir/runtime/worker.ts` (only when it
/// differs, so running workers never see a half-written file) and returns its path.
pub fn install_worker_script(data_dir: &Path) -> Result<PathBuf, RuntimeError> {
    let dir = data_dir.join("runtime");
    let path = dir.join("worker.ts");
    if std::fs::read_to_string(&path).is_ok_and(|current| current == WORKER_SCRIPT) {
        return Ok(absolute(&path));
    }
    let fail = |e| RuntimeError::InstallScript(path.clone(), e);
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let temp = dir.join("worker.ts.tmp");
    std::fs::write(&temp, WORKER_SCRIPT).map_err(fail)?;
    std::fs::rename(&temp, &path).map_err(fail)?;
    Ok(absolute(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_bun_must_exist() {
        let err = find_bun(Some(Path::new("/no/such/bun"))).unwrap_err();
        assert!(err.to_string().contains("npm ci --prefix bun"), "{err}");
    }

    #[test]
    fn worker_script_is_installed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = install_worker_script(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), WORKER_SCRIPT);
        assert_eq!(install_worker_script(dir.path()).unwrap(), path);
    }
}
