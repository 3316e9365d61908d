//! Finding the server and asking it one thing: socket resolution, connecting, and turning
//! a non-OK answer into a [`CliError`].
//!
//! The socket is resolved as the server resolves it: `--socket` > `FUNCTIONS_SOCKET` >
//! `socket` from the config file > `<data_dir>/functions.sock`, where `data_dir` comes
//! from `FUNCTIONS_DATA_DIR`, the config file or the default `./data`. The config file is
//! `--config FILE`, else `./functions.conf` when present. Only the `socket` and `data_dir`
//! lines are read: a key the CLI does not need cannot stop it, whatever its value.

use std::path::PathBuf;

use serde_json::Value;

use super::args::Target;
use super::CliError;
use crate::api::codes::{Command, Status};
use crate::client::{Client, Reply};
use crate::config::Layers;

/// The only keys the CLI takes from the configuration.
const KEYS: &[&str] = &["socket", "data_dir"];

/// Sends one request to the server and returns its OK answer.
pub fn request(
    target: &Target,
    command: Command,
    json: Value,
    raw: Vec<u8>,
) -> Result<Reply, CliError> {
    request_on(target, command, json, raw).map(|(_, reply)| reply)
}

/// [`request`], keeping the connection for the frames that follow (a streamed body).
pub fn request_on(
    target: &Target,
    command: Command,
    json: Value,
    raw: Vec<u8>,
) -> Result<(Client, Reply), CliError> {
    let socket = socket_path(target, crate::config::process_env())?;
    let mut client = Client::connect(&socket).map_err(CliError::Client)?;
    let reply = client.call(command, json, raw).map_err(CliError::Client)?;
    match reply.status {
        Status::Ok => Ok((client, reply)),
        status => Err(CliError::Server {
            status,
            message: reply.error_message(),
        }),
    }
}

/// The socket path of `target`, given the process environment `vars`.
pub fn socket_path(
    target: &Target,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<PathBuf, CliError> {
    if let Some(socket) = &target.socket {
        return Ok(socket.clone());
    }
    let mut layers = Layers::new();
    let file = match &target.config {
        Some(path) => Some(path.clone()),
        None => Some(PathBuf::from("functions.conf")).filter(|p| p.is_file()),
    };
    if let Some(path) = file {
        layers
            .apply_file_keys(&path, &|key| KEYS.contains(&key))
            .map_err(CliError::Config)?;
    }
    layers.apply_env(vars.into_iter().filter(|(var, _)| {
        var.strip_prefix("FUNCTIONS_")
            .is_some_and(|key| KEYS.contains(&key.to_ascii_lowercase().as_str()))
    }));
    Ok(layers.resolve().map_err(CliError::Config)?.socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flag_beats_environment_beats_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("functions.conf");
        std::fs::write(&config, "data_dir = /srv/fn # where\n").unwrap();
        let mut target = Target {
            socket: None,
            config: Some(config),
        };
        let resolve = |t: &Target, env: &[(&str, &str)]| socket_path(t, vars(env)).unwrap();

        assert_eq!(resolve(&target, &[]), Path::new("/srv/fn/functions.sock"));
        let env = [("FUNCTIONS_DATA_DIR", "/other")];
        assert_eq!(resolve(&target, &env), Path::new("/other/functions.sock"));
        let env = [
            ("FUNCTIONS_SOCKET", "/run/f.sock"),
            ("FUNCTIONS_DATA_DIR", "/x"),
        ];
        assert_eq!(resolve(&target, &env), Path::new("/run/f.sock"));
        target.socket = Some("/flag.sock".into());
        assert_eq!(resolve(&target, &env), Path::new("/flag.sock"));
    }

    #[test]
    fn socket_key_wins_over_data_dir_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("functions.conf");
        std::fs::write(&config, "socket = /run/a.sock\ndata_dir = /srv\n").unwrap();
        let target = Target {
            socket: None,
            config: Some(config),
        };
        assert_eq!(
            socket_path(&target, vars(&[])).unwrap(),
            Path::new("/run/a.sock")
        );
    }

    #[test]
    fn unrelated_bad_config_does_not_stop_the_cli() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("functions.conf");
        let text = "no_such_key = 1\nmax_workers = many\ngarbage line\ndata_dir = /d\n";
        std::fs::write(&config, text).unwrap();
        let target = Target {
            socket: None,
            config: Some(config.clone()),
        };
        let env = [("FUNCTIONS_MAX_WORKERS", "lots"), ("FUNCTIONS_HOME", "/h")];
        assert_eq!(
            socket_path(&target, vars(&env)).unwrap(),
            Path::new("/d/functions.sock")
        );

        // A bad value of a key the CLI needs is still an error that names the line.
        std::fs::write(&config, "data_dir =\n").unwrap();
        let err = socket_path(&target, vars(&[])).unwrap_err();
        assert_eq!(err.code(), 2);
        assert!(err.to_string().contains("functions.conf:1"), "{err}");
    }

    #[test]
    fn missing_config_file_named_by_flag_is_an_error() {
        let target = Target {
            socket: None,
            config: Some("/nonexistent/functions.conf".into()),
        };
        let err = socket_path(&target, vars(&[])).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/functions.conf"),
            "{err}"
        );
    }
}
