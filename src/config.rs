//! Server configuration: built-in defaults < `functions.conf` < `FUNCTIONS_*` environment <
//! command-line flags, parsed and validated once at start-up.
//!
//! Every key is declared once in [`KEYS`] with its default and a one-line description; the
//! repository's `functions.conf` lists the same keys. A bad value is an error that names the
//! key and where the value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration key: its name, default value and one-line description.
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every key the server reads, in the order `functions.conf` lists them.
pub const KEYS: &[Key] = &[
    key(
        "data_dir",
        "./data",
        "directory for metadata.db, bundles and the socket",
    ),
    key(
        "socket",
        "",
        "Unix socket path; empty means <data_dir>/functions.sock",
    ),
    key(
        "socket_group",
        "",
        "group allowed to use the socket (mode 0660); empty means owner only (0600)",
    ),
    key(
        "api_threads",
        "16",
        "socket API threads, each serving one connection at a time",
    ),
    key(
        "max_frame_size",
        "64M",
        "largest socket API request frame accepted",
    ),
    key(
        "functions_dir",
        "",
        "deploy every function in this directory at start-up",
    ),
    key(
        "watch",
        "false",
        "redeploy functions_dir functions when their files change",
    ),
    key("enable_http", "true", "serve functions over HTTP"),
    key("http_host", "127.0.0.1", "address the HTTP gateway binds"),
    key(
        "http_port",
        "8080",
        "port the HTTP gateway binds (0 picks a free one)",
    ),
    key(
        "http_threads",
        "16",
        "gateway threads kept running, each serving one request at a time",
    ),
    key(
        "http_max_threads",
        "256",
        "most gateway threads: more start while all are busy, up to this",
    ),
    key("log_level", "info", "error, warn, info, debug or trace"),
    key(
        "bun_path",
        "",
        "Bun executable; empty means PATH, then bun/node_modules/.bin/bun",
    ),
    key("max_workers", "4", "most Bun workers per function version"),
    key(
        "min_warm",
        "0",
        "workers kept ready per function version even when idle",
    ),
    key(
        "idle_timeout",
        "5m",
        "an idle worker above min_warm is stopped after this",
    ),
    key(
        "invocation_timeout",
        "30s",
        "deadline of one invocation; past it the worker is killed",
    ),
    key(
        "memory_limit",
        "256M",
        "a worker whose resident memory passes this is killed and replaced",
    ),
    key(
        "queue_depth",
        "64",
        "invocations that may wait per function when all workers are busy",
    ),
    key(
        "max_body_size",
        "16M",
        "largest request body accepted (413 above it)",
    ),
    key(
        "max_response_size",
        "32M",
        "largest response body a function may return (502 above it)",
    ),
    key(
        "shutdown_grace",
        "10s",
        "how long in-flight invocations may finish at shutdown",
    ),
    key(
        "log_retention",
        "7d",
        "function logs and invocation records older than this are deleted",
    ),
    key(
        "log_max_size",
        "256M",
        "logs.db plus logs/*.jsonl above this lose their oldest entries",
    ),
    key(
        "log_invocation_max",
        "1M",
        "output kept per invocation; the rest is dropped and counted",
    ),
    key(
        "metrics_retention",
        "7d",
        "per-minute metric rows are kept this long, then rolled up daily",
    ),
    key(
        "metrics_daily_retention",
        "400d",
        "daily metric rows are kept this long",
    ),
    key(
        "enable_metrics",
        "true",
        "serve Prometheus metrics on GET /metrics of the HTTP port",
    ),
];

const fn key(name: &'static str, default: &'static str, help: &'static str) -> Key {
    Key {
        name,
        default,
        help,
    }
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub socket_group: Option<String>,
    pub api_threads: usize,
    pub max_frame_size: usize,
    pub functions_dir: Option<PathBuf>,
    pub watch: bool,
    pub enable_http: bool,
    pub http_host: String,
    pub http_port: u16,
    pub http_threads: usize,
    /// Gateway threads start on demand up to this many (at least `http_threads`).
    pub http_max_threads: usize,
    pub log_level: log::LevelFilter,
    pub bun_path: Option<PathBuf>,
    pub limits: Limits,
    pub max_body_size: usize,
    pub shutdown_grace: Duration,
    pub observability: Observability,
}

/// Retention and limits of logs, invocation records and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Observability {
    pub log_retention: Duration,
    pub log_max_size: u64,
    pub log_invocation_max: u64,
    pub metrics_retention: Duration,
    pub metrics_daily_retention: Duration,
    pub enable_metrics: bool,
}

/// Per-function-version limits; the defaults come from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_workers: usize,
    pub min_warm: usize,
    pub idle_timeout: Duration,
    pub invocation_timeout: Duration,
    pub memory_limit: u64,
    pub queue_depth: usize,
    /// Largest request body, in bytes (413 above it).
    pub max_body_size: usize,
    /// Largest response body, in bytes (502 `response_too_large` above it).
    pub max_response_size: usize,
}

/// Where a value came from, so errors can point at it.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Default,
    File(PathBuf, usize),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "the built-in default"),
            Source::File(path, line) => write!(f, "{}:{}", path.display(), line),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

#[derive(Debug)]
pub enum ConfigError {
    Read(PathBuf, std::io::Error),
    Syntax(PathBuf, usize, String),
    UnknownKey(String, Source),
    BadValue {
        key: &'static str,
        value: String,
        source: Source,
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(path, e) => {
                write!(f, "failed to read config file {}: {e}", path.display())
            }
            ConfigError::Syntax(path, line, text) => {
                write!(
                    f,
                    "{}:{line}: expected `key = value`, got {text:?}",
                    path.display()
                )
            }
            ConfigError::UnknownKey(key, source) => {
                write!(f, "unknown config key {key:?} (from {source})")
            }
            ConfigError::BadValue {
                key,
                value,
                source,
                reason,
            } => {
                write!(f, "bad value {value:?} for {key} (from {source}): {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Raw values collected from all layers, each with its source; later layers win.
#[derive(Default)]
pub struct Layers {
    values: BTreeMap<&'static str, (String, Source)>,
}

impl Layers {
    /// Starts from the built-in defaults.
    pub fn new() -> Layers {
        let mut layers = Layers::default();
        for k in KEYS {
            layers
                .values
                .insert(k.name, (k.default.to_string(), Source::Default));
        }
        layers
    }

    /// Sets one key from a named source.
    pub fn set(&mut self, name: &str, value: &str, source: Source) -> Result<(), ConfigError> {
        let key = KEYS
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| ConfigError::UnknownKey(name.to_string(), source.clone()))?;
        self.values.insert(key.name, (value.to_string(), source));
        Ok(())
    }

    /// Applies a `functions.conf` file: `key = value` lines, `#` comments, blank lines.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        self.read_file(path, None)
    }

    /// Applies only the keys of a config file that `wanted` accepts, ignoring every other
    /// line whatever it holds (the CLI needs `socket` and `data_dir`, nothing else).
    pub fn apply_file_keys(
        &mut self,
        path: &Path,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        self.read_file(path, Some(wanted))
    }

    fn read_file(
        &mut self,
        path: &Path,
        wanted: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<(), ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let source = Source::File(path.to_path_buf(), index + 1);
            let (name, value) = match (line.split_once('='), wanted) {
                (Some((name, value)), None) => (name.trim(), value),
                (Some((name, value)), Some(wanted)) if wanted(name.trim()) => (name.trim(), value),
                (_, Some(_)) => continue,
                (None, None) => {
                    return Err(ConfigError::Syntax(
                        path.to_path_buf(),
                        index + 1,
                        line.into(),
                    ))
                }
            };
            self.set(name, strip_comment(value).trim(), source)?;
        }
        Ok(())
    }

    /// Applies every `FUNCTIONS_<KEY>` variable of the given environment.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(&mut self, vars: I) {
        for (var, value) in vars {
            let Some(rest) = var.strip_prefix("FUNCTIONS_") else {
                continue;
            };
            let name = rest.to_ascii_lowercase();
            // Variables that name no key are someone else's (FUNCTIONS_HOME...): ignore them.
            if KEYS.iter().any(|k| k.name == name) {
                let _ = self.set(&name, &value, Source::Env(var));
            }
        }
    }

    fn get(&self, name: &'static str) -> (&str, &Source) {
        let (value, source) = &self.values[name];
        (value, source)
    }

    fn parse<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let (value, source) = self.get(name);
        parse(value).map_err(|reason| ConfigError::BadValue {
            key: name,
            value: value.to_string(),
            source: source.clone(),
            reason,
        })
    }

    /// Validates every value into a [`Config`].
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        // Absolute from here on: children (bun build, workers) run in other directories.
        let data_dir = absolute(PathBuf::from(self.parse("data_dir", non_empty)?));
        let socket = match self.get("socket").0 {
            "" => data_dir.join("functions.sock"),
            path => absolute(PathBuf::from(path)),
        };
        let optional_path = |v: &str| Ok((!v.is_empty()).then(|| PathBuf::from(v)));
        let limits = Limits {
            max_workers: self.parse("max_workers", |v| positive(v, 1024))?,
            min_warm: self.parse("min_warm", |v| count(v, 1024))?,
            idle_timeout: self.parse("idle_timeout", parse_duration)?,
            invocation_timeout: self.parse("invocation_timeout", positive_duration)?,
            memory_limit: self.parse("memory_limit", parse_size)?,
            queue_depth: self.parse("queue_depth", |v| count(v, 1_000_000))?,
            max_body_size: self.parse("max_body_size", |v| Ok(parse_size(v)? as usize))?,
            max_response_size: self.parse("max_response_size", response_size)?,
        };
        if limits.min_warm > limits.max_workers {
            return Err(ConfigError::BadValue {
                key: "min_warm",
                value: limits.min_warm.to_string(),
                source: self.get("min_warm").1.clone(),
                reason: format!("must not exceed max_workers ({})", limits.max_workers),
            });
        }
        let http_threads = self.parse("http_threads", |v| positive(v, 1024))?;
        let mut http_max_threads = self.parse("http_max_threads", |v| positive(v, 4096))?;
        // The default follows a larger http_threads; a value someone set must fit it.
        if http_max_threads < http_threads && *self.get("http_max_threads").1 == Source::Default {
            http_max_threads = http_threads;
        }
        if http_max_threads < http_threads {
            return Err(ConfigError::BadValue {
                key: "http_max_threads",
                value: http_max_threads.to_string(),
                source: self.get("http_max_threads").1.clone(),
                reason: format!("must be at least http_threads ({http_threads})"),
            });
        }
        Ok(Config {
            socket,
            socket_group: self.parse("socket_group", |v| {
                Ok((!v.is_empty()).then(|| v.to_string()))
            })?,
            api_threads: self.parse("api_threads", |v| positive(v, 1024))?,
            max_frame_size: self.parse("max_frame_size", |v| match parse_size(v)? {
                n if n < 1024 => Err("must be at least 1K".into()),
                n if n > u32::MAX as u64 => Err("must be below 4G".into()),
                n => Ok(n as usize),
            })?,
            functions_dir: self.parse("functions_dir", optional_path)?,
            watch: self.parse("watch", parse_bool)?,
            enable_http: self.parse("enable_http", parse_bool)?,
            http_host: self.parse("http_host", non_empty)?,
            http_port: self.parse("http_port", |v| v.parse().map_err(|_| "not a port".into()))?,
            http_threads,
            http_max_threads,
            log_level: self.parse("log_level", parse_level)?,
            bun_path: self.parse("bun_path", optional_path)?,
            limits,
            max_body_size: self.parse("max_body_size", |v| Ok(parse_size(v)? as usize))?,
            shutdown_grace: self.parse("shutdown_grace", parse_duration)?,
            observability: Observability {
                log_retention: self.parse("log_retention", positive_duration)?,
                log_max_size: self.parse("log_max_size", parse_size)?,
                log_invocation_max: self.parse("log_invocation_max", parse_size)?,
                metrics_retention: self.parse("metrics_retention", positive_duration)?,
                metrics_daily_retention: self
                    .parse("metrics_daily_retention", positive_duration)?,
                enable_metrics: self.parse("enable_metrics", parse_bool)?,
            },
            data_dir,
        })
    }
}

/// The process environment without the variables that are not UTF-8: none can be a
/// `FUNCTIONS_*` setting, and `std::env::vars` would panic on them.
pub fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

/// `path` made absolute against the current directory (unchanged if that fails).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// Drops a trailing ` # comment` from a value.
fn strip_comment(value: &str) -> &str {
    match value.find(" #") {
        Some(at) => &value[..at],
        None => value,
    }
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(v.to_string())
}

fn count(v: &str, max: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(format!("must be at most {max}")),
        Err(_) => Err("not a whole number".into()),
    }
}

fn positive(v: &str, max: usize) -> Result<usize, String> {
    match count(v, max)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_level(v: &str) -> Result<log::LevelFilter, String> {
    v.parse()
        .map_err(|_| "expected error, warn, info, debug or trace".into())
}

/// Largest `max_response_size`: its base64 must fit a protocol line (96 MiB).
pub const MAX_RESPONSE_SIZE: u64 = 64 << 20;

fn response_size(v: &str) -> Result<usize, String> {
    match parse_size(v)? {
        n if n > MAX_RESPONSE_SIZE => Err("must be at most 64M".into()),
        n => Ok(n as usize),
    }
}

fn positive_duration(v: &str) -> Result<Duration, String> {
    match parse_duration(v)? {
        d if d.is_zero() => Err("must be longer than zero".into()),
        d => Ok(d),
    }
}

/// Parses `250ms`, `2s`, `5m`, `1h`, `7d`; a bare number is seconds.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a duration like 250ms, 2s, 5m or 7d")?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err("expected a duration like 250ms, 2s, 5m or 7d".into()),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| "duration too long".into())
}

/// Parses `512K`, `16M`, `1G` (powers of 1024); a bare number is bytes.
pub fn parse_size(v: &str) -> Result<u64, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a size like 512K or 16M")?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err("expected a size like 512K or 16M".into()),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| "size too large".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn defaults_resolve() {
        let config = Layers::new().resolve().unwrap();
        assert_eq!(config.http_port, 8080);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config.data_dir, cwd.join("data"));
        assert_eq!(config.socket, cwd.join("data/functions.sock"));
        assert_eq!(config.limits.invocation_timeout, Duration::from_secs(30));
        assert_eq!(config.max_body_size, 16 << 20);
    }

    #[test]
    fn limits_that_depend_on_each_other_or_on_the_protocol_are_checked() {
        let resolve = |key: &str, value: &str| {
            let mut layers = Layers::new();
            layers.set(key, value, Source::Default).unwrap();
            layers.resolve()
        };
        assert_eq!(
            resolve("max_response_size", "64M")
                .unwrap()
                .limits
                .max_response_size,
            64 << 20
        );
        let err = resolve("max_response_size", "65M").unwrap_err().to_string();
        assert!(err.contains("at most 64M"), "{err}");
        let mut layers = Layers::new();
        let file = Source::File("functions.conf".into(), 1);
        layers.set("http_max_threads", "8", file).unwrap();
        let err = layers.resolve().unwrap_err().to_string();
        assert!(err.contains("at least http_threads (16)"), "{err}");
        // Left at its default, the maximum follows a larger http_threads.
        let config = resolve("http_threads", "300").unwrap();
        assert_eq!((config.http_threads, config.http_max_threads), (300, 300));
    }

    #[test]
    fn later_layers_win_and_errors_name_key_and_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("functions.conf");
        std::fs::write(&file, "# c\nhttp_port = 9000 # inline\nmax_workers = 3\n").unwrap();

        let mut layers = Layers::new();
        layers.apply_file(&file).unwrap();
        layers.apply_env([("FUNCTIONS_HTTP_PORT".to_string(), "9100".to_string())]);
        let config = layers.resolve().unwrap();
        assert_eq!(config.http_port, 9100);
        assert_eq!(config.limits.max_workers, 3);

        layers
            .set("http_port", "9200", Source::Flag("--http-port".into()))
            .unwrap();
        assert_eq!(layers.resolve().unwrap().http_port, 9200);

        layers.apply_env([(
            "FUNCTIONS_INVOCATION_TIMEOUT".to_string(),
            "soon".to_string(),
        )]);
        let err = layers.resolve().unwrap_err().to_string();
        assert!(err.contains("invocation_timeout"), "{err}");
        assert!(err.contains("FUNCTIONS_INVOCATION_TIMEOUT"), "{err}");
    }

    #[test]
    fn repository_functions_conf_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("functions.conf");
        let text = std::fs::read_to_string(&path).unwrap();
        for k in KEYS {
            let line = format!("{} = {}", k.name, k.default);
            assert!(
                text.lines().any(|l| l.trim_end() == line.trim_end()),
                "missing {line:?}"
            );
            assert!(
                text.contains(&format!("# {}", k.help)),
                "missing help of {}",
                k.name
            );
        }
        let mut layers = Layers::new();
        layers.apply_file(&path).unwrap();
        layers.resolve().unwrap();
    }

    #[test]
    fn file_errors_point_at_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("functions.conf");
        std::fs::write(&file, "max_workers = 2\nmax_workers = many\n").unwrap();
        let mut layers = Layers::new();
        layers.apply_file(&file).unwrap();
        let err = layers.resolve().unwrap_err().to_string();
        assert!(err.contains("functions.conf:2"), "{err}");

        std::fs::write(&file, "no_such_key = 1\n").unwrap();
        let err = Layers::new().apply_file(&file).unwrap_err().to_string();
        assert!(err.contains("no_such_key"), "{err}");
    }
}
