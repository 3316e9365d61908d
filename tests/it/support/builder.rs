//! The builder of a test server: its config file, functions dir and data dir, and the
//! start of the process with a thread that keeps its stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::{env, fs, thread};

use tempfile::TempDir;

use super::logs::Logs;
use super::{bun_path, Server, START_DEADLINE};

/// Writes `DIR/NAME.env` with one `KEY=VALUE` line per pair (removes it when empty).
pub fn write_env_file(functions_dir: &Path, name: &str, vars: &[(String, String)]) {
    let path = functions_dir.join(format!("{name}.env"));
    if vars.is_empty() {
        let _ = fs::remove_file(path);
        return;
    }
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    fs::write(&path, text).unwrap_or_else(|e| panic!("failed to write {}: {e}", path.display()));
}

/// Where the server's `--functions-dir` points.
enum FunctionsDir {
    Temp,
    At(PathBuf),
    Omitted,
}

pub struct ServerBuilder {
    config: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    envs: Vec<(String, Vec<(String, String)>)>,
    functions_dir: FunctionsDir,
    data_dir: Option<PathBuf>,
    vars: Vec<(String, String)>,
    /// Run as README.md's command does: from a directory holding a copy of the
    /// repository's `examples/` and `functions.conf`, with relative paths and defaults.
    like_the_readme: bool,
}

impl ServerBuilder {
    pub(super) fn new() -> Self {
        ServerBuilder {
            config: Vec::new(),
            files: Vec::new(),
            envs: Vec::new(),
            functions_dir: FunctionsDir::Temp,
            data_dir: None,
            vars: Vec::new(),
            like_the_readme: false,
        }
    }

    /// Adds `key = value` to the config file.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_string(), value.to_string()));
        self
    }

    /// Writes a function file (`hello.ts`, say) with this source.
    pub fn function(mut self, file: &str, source: &str) -> Self {
        self.files
            .push((file.to_string(), source.as_bytes().to_vec()));
        self
    }

    /// Copies a function file in, under its own file name.
    pub fn copy_function(mut self, path: &Path) -> Self {
        let source =
            fs::read(path).unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        self.files.push((file, source));
        self
    }

    /// Writes `NAME.env` for function `name`.
    pub fn function_env(mut self, name: &str, vars: &[(&str, &str)]) -> Self {
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.envs.push((name.to_string(), vars));
        self
    }

    /// Uses (and writes into) an existing functions directory.
    pub fn functions_dir(mut self, dir: &Path) -> Self {
        self.functions_dir = FunctionsDir::At(dir.to_path_buf());
        self
    }

    /// Starts without `--functions-dir`: only what the data dir already holds is served.
    pub fn without_functions_dir(mut self) -> Self {
        self.functions_dir = FunctionsDir::Omitted;
        self
    }

    /// Uses an existing data directory (to restart on the same data).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Sets an environment variable of the server process (after the `FUNCTIONS_*` purge).
    pub fn env_var(mut self, key: &str, value: &str) -> Self {
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs `functions serve --functions-dir examples` as README.md does (plus
    /// `--http-port 0`), in a temp copy of the repository's examples and functions.conf.
    pub fn like_the_readme(mut self) -> Self {
        self.like_the_readme = true;
        self
    }

    /// Starts the server and waits until it listens; panics with its stderr otherwise.
    pub fn start(self) -> Server {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(self) -> Result<Server, String> {
        let mut server = self.spawn();
        server.wait_listening(START_DEADLINE)?;
        Ok(server)
    }

    /// Starts the server process without waiting for it to listen.
    pub fn spawn(self) -> Server {
        let temp = TempDir::new().expect("failed to create a temp dir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| temp.path().join("data"));
        if !self.like_the_readme {
            fs::create_dir_all(&data_dir).expect("failed to create the data dir");
        }
        let functions_dir = match &self.functions_dir {
            FunctionsDir::Temp => Some(temp.path().join("functions")),
            FunctionsDir::At(dir) => Some(dir.clone()),
            FunctionsDir::Omitted => None,
        };
        if let Some(dir) = &functions_dir {
            fs::create_dir_all(dir).expect("failed to create the functions dir");
            for (file, source) in &self.files {
                fs::write(dir.join(file), source).expect("failed to write a function");
            }
            for (name, vars) in &self.envs {
                write_env_file(dir, name, vars);
            }
        }

        let socket = match self.config.iter().rev().find(|(key, _)| key == "socket") {
            Some((_, path)) if !path.is_empty() => PathBuf::from(path),
            _ => data_dir.join("functions.sock"),
        };
        let config_path = temp.path().join("functions.conf");
        let mut config = format!(
            "# written by the integration tests\nbun_path = {}\n",
            bun_path().display()
        );
        for (key, value) in &self.config {
            config.push_str(&format!("{key} = {value}\n"));
        }
        fs::write(&config_path, config).expect("failed to write the config file");

        let mut command = Command::new(env!("CARGO_BIN_EXE_functions"));
        let mut socket = socket;
        if self.like_the_readme {
            copy_dir(
                &super::manifest_dir().join("examples"),
                &temp.path().join("examples"),
            );
            fs::copy(
                super::manifest_dir().join("functions.conf"),
                temp.path().join("functions.conf"),
            )
            .expect("failed to copy functions.conf");
            command
                .current_dir(temp.path())
                .args(["serve", "--functions-dir", "examples"]);
            command.args(["--http-port", "0"]);
            socket = temp.path().join("data/functions.sock");
        } else {
            command.arg("serve").arg("--config").arg(&config_path);
            command
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--http-port", "0"]);
            if let Some(dir) = &functions_dir {
                command.arg("--functions-dir").arg(dir);
            }
        }
        for (key, _) in env::vars_os() {
            if key.to_string_lossy().starts_with("FUNCTIONS_") {
                command.env_remove(key);
            }
        }
        command.envs(self.vars.iter().map(|(k, v)| (k, v)));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .expect("failed to start the functions binary");

        let logs = Arc::new(Logs::default());
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        thread::Builder::new()
            .name("server-stderr".to_string())
            .spawn(move || sink.drain(stderr))
            .expect("failed to start the stderr reader");

        Server {
            child,
            port: None,
            logs,
            config_path,
            socket,
            _temp: temp,
        }
    }
}

/// Copies the files of `from` (one level) into a new directory `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("failed to create a directory");
    for entry in fs::read_dir(from)
        .expect("failed to read a directory")
        .flatten()
    {
        if entry.path().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("failed to copy a file");
        }
    }
}
