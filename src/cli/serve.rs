//! `functions serve`: flags on top of functions.conf and `FUNCTIONS_*`, then the server.

use std::path::PathBuf;
use std::process::ExitCode;

use pico_args::Arguments;
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};

use super::CliError;
use crate::config::{Layers, Source, KEYS};
use crate::server::{self, Stopped};

const HELP: &str = "\
Usage: functions serve [options]

Options (each overrides functions.conf and FUNCTIONS_* variables):
  --config FILE          config file (default: ./functions.conf if present)
  --data-dir DIR         data directory (data_dir)
  --socket PATH          Unix socket path (socket)
  --http-port PORT       HTTP port, 0 for any free port (http_port)
  --enable-http BOOL     serve HTTP, true or false (enable_http)
  --log-level LEVEL      error, warn, info, debug or trace (log_level)
  --functions-dir DIR    deploy every function in DIR at start-up (functions_dir)
  --watch                redeploy functions of --functions-dir when files change (watch)
";

/// Flags and the config key each one sets.
const FLAGS: &[(&str, &str)] = &[
    ("--data-dir", "data_dir"),
    ("--socket", "socket"),
    ("--http-port", "http_port"),
    ("--enable-http", "enable_http"),
    ("--log-level", "log_level"),
    ("--functions-dir", "functions_dir"),
];

pub fn run(mut args: Arguments) -> Result<ExitCode, CliError> {
    if args.contains(["-h", "--help"]) {
        print!("{HELP}\nConfiguration keys (functions.conf `key = value`, or FUNCTIONS_<KEY>):\n");
        for key in KEYS {
            println!("  {:<20} {:<10} {}", key.name, key.default, key.help);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let usage = |e: pico_args::Error| CliError::Usage(format!("{e}; try `functions serve --help`"));
    let config_file: Option<PathBuf> = args.opt_value_from_str("--config").map_err(usage)?;
    let mut flags = Vec::new();
    if args.contains("--watch") {
        flags.push(("--watch", "watch", "true".to_string()));
    }
    for (flag, key) in FLAGS {
        if let Some(value) = args.opt_value_from_str::<_, String>(*flag).map_err(usage)? {
            flags.push((*flag, *key, value));
        }
    }
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(CliError::Usage(format!(
            "unexpected arguments {rest:?}; try `functions serve --help`"
        )));
    }

    let mut layers = Layers::new();
    match config_file {
        Some(path) => layers.apply_file(&path).map_err(CliError::Config)?,
        None => {
            let default = PathBuf::from("functions.conf");
            if default.is_file() {
                layers.apply_file(&default).map_err(CliError::Config)?;
            }
        }
    }
    layers.apply_env(crate::config::process_env());
    for (flag, key, value) in flags {
        layers
            .set(key, &value, Source::Flag(flag.to_string()))
            .map_err(CliError::Config)?;
    }
    let config = layers.resolve().map_err(CliError::Config)?;

    init_logging(config.log_level);
    match server::run(config).map_err(CliError::Serve)? {
        Stopped::Clean => Ok(ExitCode::SUCCESS),
        Stopped::CutOff => Ok(ExitCode::from(1)),
    }
}

fn init_logging(level: LevelFilter) {
    let config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .add_filter_ignore_str("tiny_http")
        .build();
    let _ = TermLogger::init(level, config, TerminalMode::Stderr, ColorChoice::Never);
}
