//! The catalogue commands: `list`, `info`, `rollback`, `delete` and `register`. Each is
//! one request (LIST, INFO, ROLLBACK, DELETE, REGISTER_FUNCTION) and prints the reply as
//! JSON with `--json` or as a short table or line.

use serde_json::{json, Value};

use super::args::{Raw, Spec};
use super::output::{self, field};
use super::{checks, connect, CliError};
use crate::api::codes::Command;

pub const LIST: Spec = Spec {
    name: "list",
    help: "\
Usage: functions list [options]

Every function with its active and latest version, state and workers.

Options:
  --json             print the server's JSON reply on one line: {functions: [{name,
                     active_version, latest_version, created_at, state, error,
                     pool: {version, workers, idle, queued} or null}]}
",
    values: &[],
    switches: &["--json"],
    run: list,
};

pub const INFO: Spec = Spec {
    name: "info",
    help: "\
Usage: functions info NAME [options]

A function's state, versions, settings, effective limits, env keys and workers.

Options:
  --json             print the server's JSON reply on one line: {name, created_at,
                     active_version, latest_version, state, error, settings,
                     effective, env_keys, versions, pool}
",
    values: &[],
    switches: &["--json"],
    run: info,
};

pub const ROLLBACK: Spec = Spec {
    name: "rollback",
    help: "\
Usage: functions rollback NAME [--to V] [options]

Serves the version deployed before the current one again, or version V.

Options:
  --to V             the version to serve
  --json             print the server's JSON reply on one line: {name, version,
                     unchanged, previous_version}
",
    values: &["--to"],
    switches: &["--json"],
    run: rollback,
};

pub const DELETE: Spec = Spec {
    name: "delete",
    help: "\
Usage: functions delete NAME [options]

Stops routing NAME (in-flight invocations finish) and removes its versions, env,
logs and counters.

Options:
  --json             print the server's JSON reply on one line: {name, deleted}
",
    values: &[],
    switches: &["--json"],
    run: delete,
};

pub const REGISTER: Spec = Spec {
    name: "register",
    help: "\
Usage: functions register NAME [options]

Records NAME and its settings without code; invoking it answers not found until a
deploy. Settings given here are kept for later deploys.

Options:
  --timeout DURATION invocation timeout: 250ms, 2s, 5m
  --max-workers N    most Bun workers of the function
  --min-warm N       workers kept ready even when idle
  --memory SIZE      per-worker memory limit: 512K, 256M (stored; not enforced yet)
  --json             print the server's JSON reply on one line: {name, registered}
",
    values: checks::SETTINGS_FLAGS,
    switches: &["--json"],
    run: register,
};

/// The one NAME argument of a command, validated.
fn name(raw: &Raw) -> Result<String, CliError> {
    let words = raw.words(1, 1, "one function NAME")?;
    checks::function_name(raw, words[0])
}

fn list(raw: Raw) -> Result<(), CliError> {
    raw.words(0, 0, "no arguments")?;
    let reply = connect::request(&raw.target(), Command::List, json!({}), Vec::new())?;
    output::reply(raw.has("--json"), &reply.json, |reply| {
        let functions = reply["functions"].as_array().cloned().unwrap_or_default();
        if functions.is_empty() {
            return String::new();
        }
        let header = ["NAME", "ACTIVE", "LATEST", "STATE", "WORKERS"];
        let mut rows = vec![header.map(String::from).to_vec()];
        for f in &functions {
            rows.push(vec![
                field(&f["name"]),
                field(&f["active_version"]),
                field(&f["latest_version"]),
                field(&f["state"]),
                field(&f["pool"]["workers"]),
            ]);
        }
        output::table(&rows)
    })
}

fn info(raw: Raw) -> Result<(), CliError> {
    let name = name(&raw)?;
    let reply = connect::request(
        &raw.target(),
        Command::Info,
        json!({ "name": name }),
        Vec::new(),
    )?;
    output::reply(raw.has("--json"), &reply.json, info_text)
}

fn info_text(reply: &Value) -> String {
    let limits = &reply["effective"];
    let keys: Vec<String> = reply["env_keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(field)
        .collect();
    let pool = &reply["pool"];
    let workers = match pool.is_null() {
        true => "-".to_string(),
        false => format!(
            "{} ({} idle, {} queued)",
            pool["workers"], pool["idle"], pool["queued"]
        ),
    };
    let mut rows = vec![
        ("name", field(&reply["name"])),
        ("state", field(&reply["state"])),
        ("active version", field(&reply["active_version"])),
        ("latest version", field(&reply["latest_version"])),
        ("created", output::shown(&reply["created_at"], output::time)),
        (
            "timeout",
            output::shown(&limits["timeout_ms"], output::exact_duration),
        ),
        ("max workers", field(&limits["max_workers"])),
        ("min warm", field(&limits["min_warm"])),
        (
            "memory limit",
            output::shown(&limits["memory_limit"], output::size),
        ),
        (
            "env keys",
            field(&json!((!keys.is_empty()).then(|| keys.join(" ")))),
        ),
        ("workers", workers),
    ];
    if !reply["error"].is_null() {
        rows.push(("error", field(&reply["error"])));
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(|(k, v)| vec![k.into(), v]).collect();
    let mut text = output::table(&rows);
    let mut versions = vec![["VERSION", "STATE", "DIGEST", "REGISTERED"]
        .map(String::from)
        .to_vec()];
    for v in reply["versions"].as_array().into_iter().flatten() {
        let active = v["version"] == reply["active_version"];
        versions.push(vec![
            format!("{}{}", field(&v["version"]), if active { " *" } else { "" }),
            field(&v["state"]),
            field(&v["digest"]),
            output::shown(&v["registered_at"], output::time),
        ]);
    }
    if versions.len() > 1 {
        text.push('\n');
        text.push_str(&output::table(&versions));
    }
    text
}

fn rollback(raw: Raw) -> Result<(), CliError> {
    let name = name(&raw)?;
    let to = raw.parsed("--to", |v| match v.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a version number".into()),
    })?;
    let payload = json!({ "name": name, "version": to });
    let reply = connect::request(&raw.target(), Command::Rollback, payload, Vec::new())?;
    output::reply(raw.has("--json"), &reply.json, |reply| {
        let (name, version) = (field(&reply["name"]), &reply["version"]);
        match reply["unchanged"] == true {
            true => format!("{name}: version {version} already active"),
            false => format!(
                "{name}: rolled back from version {} to version {version}",
                field(&reply["previous_version"])
            ),
        }
    })
}

fn delete(raw: Raw) -> Result<(), CliError> {
    let name = name(&raw)?;
    let reply = connect::request(
        &raw.target(),
        Command::Delete,
        json!({ "name": name }),
        Vec::new(),
    )?;
    output::reply(raw.has("--json"), &reply.json, |r| {
        format!("{}: deleted", field(&r["name"]))
    })
}

fn register(raw: Raw) -> Result<(), CliError> {
    let name = name(&raw)?;
    let payload = json!({ "name": name, "settings": checks::settings(&raw)? });
    let reply = connect::request(
        &raw.target(),
        Command::RegisterFunction,
        payload,
        Vec::new(),
    )?;
    output::reply(raw.has("--json"), &reply.json, |r| {
        format!("{}: registered", field(&r["name"]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_table_marks_the_active_version_and_shows_units() {
        let reply = json!({"name": "f", "state": "serving", "active_version": 1,
            "latest_version": 2, "created_at": 0, "error": null, "env_keys": [],
            "effective": {"timeout_ms": 1500, "max_workers": 4, "min_warm": 0,
                "memory_limit": 268435456},
            "pool": {"workers": 1, "idle": 1, "queued": 0},
            "versions": [{"version": 1, "state": "DEPLOYED", "digest": "d1", "registered_at": 0},
                {"version": 2, "state": "FAILED", "digest": "d2", "registered_at": 0}]});
        let text = info_text(&reply);
        for line in [
            "timeout         1500ms",
            "memory limit    256M",
            "env keys        -",
            "workers         1 (1 idle, 0 queued)",
            "1 *      DEPLOYED",
            "2        FAILED",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
