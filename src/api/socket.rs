//! Creating the API's Unix socket file safely: mode 0600 (0660 with a group) from the
//! first moment it exists, a stale file from a crashed server replaced, a live server's
//! socket never stolen.
//!
//! The socket is bound inside a fresh private directory (mode 0700), given its mode and
//! group there, then renamed into place, so there is no window where it is more open.

use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum SocketError {
    InUse(PathBuf),
    NotASocket(PathBuf),
    UnknownGroup(String),
    Io(&'static str, PathBuf, io::Error),
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketError::InUse(path) => {
                write!(
                    f,
                    "another server is already listening on {}; stop it or choose another --socket",
                    path.display()
                )
            }
            SocketError::NotASocket(path) => {
                write!(
                    f,
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                )
            }
            SocketError::UnknownGroup(group) => {
                write!(f, "socket_group {group:?} is not a group on this system")
            }
            SocketError::Io(op, path, e) => write!(f, "failed to {op} {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for SocketError {}

/// Binds a listener at `path` with mode 0600, or 0660 owned by `group` when given.
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, SocketError> {
    let gid = group.map(group_id).transpose()?;
    remove_stale(path)?;

    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Short names: a socket path is limited to 107 bytes, staging included.
    let private = parent.join(format!(".fs{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| SocketError::Io("create", private.clone(), e))?;
    let staged = private.join("s");
    let result = (|| {
        let listener =
            UnixListener::bind(&staged).map_err(|e| SocketError::Io("bind", staged.clone(), e))?;
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
            .map_err(|e| SocketError::Io("set the mode of", staged.clone(), e))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&staged, None, Some(gid))
                .map_err(|e| SocketError::Io("set the group of", staged.clone(), e))?;
        }
        std::fs::rename(&staged, path)
            .map_err(|e| SocketError::Io("move the socket to", path.to_path_buf(), e))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// Removes a socket file nobody listens on; fails if a server answers or it is no socket.
fn remove_stale(path: &Path) -> Result<(), SocketError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket(path.to_path_buf()));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(SocketError::InUse(path.to_path_buf()));
    }
    log::info!("replacing stale socket {}", path.display());
    std::fs::remove_file(path)
        .map_err(|e| SocketError::Io("remove the stale socket", path.to_path_buf(), e))
}

/// The id of group `name` (or a numeric id).
fn group_id(name: &str) -> Result<u32, SocketError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let group = fields.next()?;
            let gid = fields.nth(1)?.parse().ok()?;
            (group == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| SocketError::UnknownGroup(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn socket_is_private_and_a_live_one_is_not_stolen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions.sock");
        let listener = bind(&path, None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(matches!(bind(&path, None), Err(SocketError::InUse(_))));

        // A socket whose server is gone is replaced.
        drop(listener);
        let _again = bind(&path, None).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp dir left behind"
        );
    }

    #[test]
    fn a_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions.sock");
        std::fs::write(&path, "data").unwrap();
        assert!(matches!(bind(&path, None), Err(SocketError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(group_id("0").unwrap(), 0);
        assert_eq!(group_id("root").unwrap(), 0);
        assert!(group_id("no-such-group-here").is_err());
    }
}
