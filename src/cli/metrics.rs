//! `metrics` (GET_METRICS): invocations, failures, cold starts, durations and workers per
//! function version over a recent window.

use serde_json::{json, Value};

use super::args::{Raw, Spec};
use super::observe::optional_name;
use super::output::{self, field};
use super::{connect, CliError};
use crate::api::codes::Command;
use crate::config::parse_duration;

pub const METRICS: Spec = Spec {
    name: "metrics",
    help: "\
Usage: functions metrics [NAME] [--window 1h] [options]

What happened over the last hour (or --window) per function version (of NAME only
with NAME): invocations, errors of every kind, cold starts, duration percentiles in
milliseconds, and the workers of the serving version now (busy, idle, queued).
History is kept in metrics.db across restarts, per minute for metrics_retention and
per day after that.

Options:
  --window DURATION  how far back to look, like 15m, 1h or 7d (default 1h); counted
                     in whole minutes (whole days past metrics_retention)
  --json             print the server's JSON reply on one line: {window_ms, functions:
                     {NAME: {invocations, errors, errors_by_kind, cold_starts,
                     duration_ms: {p50, p90, p99, max, avg}, queue_wait_ms: {avg, max},
                     workers: {version, busy, idle, queued} or null, versions:
                     {VERSION: the same counts}}}}
",
    values: &["--window"],
    switches: &["--json"],
    run: metrics,
};

fn metrics(raw: Raw) -> Result<(), CliError> {
    let name = optional_name(&raw)?;
    let window = raw.parsed("--window", |v| match parse_duration(v)? {
        d if d.is_zero() => Err("must be longer than zero".into()),
        d => Ok(d.as_millis() as u64),
    })?;
    let payload = json!({ "name": name, "window_ms": window });
    let reply = connect::request(&raw.target(), Command::GetMetrics, payload, Vec::new())?;
    output::reply(raw.has("--json"), &reply.json, metrics_text)
}

/// One row per function version, newest version first; the worker columns belong to
/// the serving version.
fn metrics_text(reply: &Value) -> String {
    let Some(functions) = reply["functions"].as_object().filter(|f| !f.is_empty()) else {
        return String::new();
    };
    let header = [
        "NAME",
        "VERSION",
        "INVOCATIONS",
        "ERRORS",
        "COLD",
        "P50_MS",
        "P90_MS",
        "P99_MS",
        "MAX_MS",
        "AVG_MS",
        "BUSY",
        "IDLE",
        "QUEUED",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for (name, function) in functions {
        let workers = &function["workers"];
        let mut versions: Vec<(&String, &Value)> = function["versions"]
            .as_object()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        versions.sort_by_key(|(version, _)| std::cmp::Reverse(version.parse::<i64>().ok()));
        for (version, counts) in versions {
            let serving = workers["version"].as_i64() == version.parse().ok();
            let worker = |key: &str| match serving {
                true => field(&workers[key]),
                false => "-".to_string(),
            };
            let duration = |key: &str| milliseconds(&counts["duration_ms"][key]);
            rows.push(vec![
                name.clone(),
                version.clone(),
                field(&counts["invocations"]),
                field(&counts["errors"]),
                field(&counts["cold_starts"]),
                duration("p50"),
                duration("p90"),
                duration("p99"),
                duration("max"),
                duration("avg"),
                worker("busy"),
                worker("idle"),
                worker("queued"),
            ]);
        }
    }
    output::table(&rows)
}

/// Milliseconds to one decimal, or `-` when there were none.
fn milliseconds(value: &Value) -> String {
    match value.as_f64() {
        Some(ms) => format!("{ms:.1}"),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_tables_have_a_row_per_version_with_workers_on_the_serving_one() {
        let counts = json!({"invocations": 4, "errors": 1, "cold_starts": 1,
            "duration_ms": {"p50": 2.34, "p90": 7.0, "p99": 7.0, "max": 7.0, "avg": 3.5}});
        let old = json!({"invocations": 0, "errors": 0, "cold_starts": 0,
            "duration_ms": {"p50": null, "p90": null, "p99": null, "max": null, "avg": null}});
        let reply = json!({"window_ms": 3_600_000, "functions": {"f": {
            "workers": {"version": 10, "busy": 1, "idle": 2, "queued": 0},
            "versions": {"9": old, "10": counts}}}});
        let text = metrics_text(&reply);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            ["f", "10", "4", "1", "1", "2.3", "7.0", "7.0", "7.0", "3.5", "1", "2", "0"]
        );
        assert_eq!(rows[2][..5], ["f", "9", "0", "0", "0"]);
        assert!(rows[2][5..].iter().all(|cell| *cell == "-"));
        assert_eq!(metrics_text(&json!({"functions": {}})), "");
    }
}
