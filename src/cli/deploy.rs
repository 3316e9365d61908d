//! `functions deploy NAME FILE`: uploads one source file with DEPLOY_FUNCTION. The server
//! builds it with `bun build` and routes the name to the new version once its workers
//! start; a build error comes back as the compiler's message.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::args::{Raw, Spec, Target};
use super::{checks, connect, output, CliError};
use crate::api::codes::Command;

pub const DEPLOY: Spec = Spec {
    name: "deploy",
    help: HELP,
    values: &[
        "--env",
        "--timeout",
        "--max-workers",
        "--min-warm",
        "--memory",
        "--max-body-size",
        "--max-response-size",
    ],
    switches: &["--json"],
    run,
};

const HELP: &str = "\
Usage: functions deploy NAME FILE [options]

Uploads FILE (.ts, .js, .mts or .mjs) as the source of function NAME, builds it and
serves the new version once its workers start. Deploying the same source, env and
settings again changes nothing. Settings given here are kept for later deploys.

Options:
  --env K=V          set a variable (repeatable); with any --env the stored
                     environment is replaced by exactly these variables
  --timeout DURATION invocation timeout: 250ms, 2s, 5m
  --max-workers N    most Bun workers of the function
  --min-warm N       workers kept ready even when idle
  --memory SIZE      per-worker memory limit: 512K, 256M; a worker over it is replaced
  --max-body-size S  largest request body: 512K, 16M (413 above it)
  --max-response-size S
                     largest response body: 1M, 32M, at most 64M (502 above it)
  --json             print the server's JSON reply on one line: {name, version,
                     unchanged, build_ms}
";

/// A validated `deploy` command line.
struct Deploy {
    target: Target,
    json: bool,
    name: String,
    file: PathBuf,
    env: Option<Map<String, Value>>,
    settings: Value,
}

fn parse(raw: &Raw) -> Result<Deploy, CliError> {
    let [name, file] = &raw.positional[..] else {
        return Err(raw.usage("expected NAME and FILE"));
    };
    let mut env = Map::new();
    for pair in raw.values("--env")? {
        let (key, value) = checks::env_pair(raw, pair)?;
        env.insert(key, Value::String(value));
    }
    Ok(Deploy {
        target: raw.target(),
        json: raw.has("--json"),
        name: checks::function_name(raw, &name.to_string_lossy())?,
        file: PathBuf::from(file),
        env: (!env.is_empty()).then_some(env),
        settings: checks::settings(raw)?,
    })
}

fn run(raw: Raw) -> Result<(), CliError> {
    let deploy = parse(&raw)?;
    let source = std::fs::read(&deploy.file).map_err(|e| CliError::Read(deploy.file.clone(), e))?;
    let mut payload = json!({
        "name": deploy.name,
        "filename": base_name(&deploy.file),
        "settings": deploy.settings,
    });
    if let Some(env) = deploy.env {
        payload["env"] = Value::Object(env);
    }
    let reply = connect::request(&deploy.target, Command::DeployFunction, payload, source)?;
    output::reply(deploy.json, &reply.json, human)
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `hello: deployed version 2 (built in 340ms)` or `hello: version 2 unchanged`.
fn human(reply: &Value) -> String {
    let (name, version) = (output::field(&reply["name"]), &reply["version"]);
    if reply["unchanged"] == true {
        return format!("{name}: version {version} unchanged");
    }
    match reply["build_ms"].as_u64() {
        Some(ms) => format!(
            "{name}: deployed version {version} (built in {})",
            output::duration(ms)
        ),
        None => format!("{name}: deployed version {version}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_line_says_what_changed() {
        let built = json!({"name": "hello", "version": 2, "unchanged": false, "build_ms": 340});
        assert_eq!(human(&built), "hello: deployed version 2 (built in 340ms)");
        let same = json!({"name": "hello", "version": 2, "unchanged": true});
        assert_eq!(human(&same), "hello: version 2 unchanged");
        assert_eq!(base_name(Path::new("/src/dir/hello.ts")), "hello.ts");
    }

    #[test]
    fn every_settings_flag_is_accepted() {
        let flags = checks::SETTINGS_FLAGS;
        assert!(flags.iter().all(|f| DEPLOY.values.contains(f)));
    }
}
