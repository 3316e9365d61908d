//! Looking at a running server: `logs` (GET_LOGS), `metrics` (GET_METRICS) and `status`
//! (STATUS). They change nothing, so they are safe to run in loops and from monitors.

use serde_json::{json, Value};

use super::args::{Raw, Spec};
use super::output::{self, field};
use super::{checks, connect, CliError};
use crate::api::codes::Command;

pub const LOGS: Spec = Spec {
    name: "logs",
    help: "\
Usage: functions logs [NAME] [--limit N] [options]

The newest console output of function NAME (of every function without NAME), oldest
first, one line each: time, function@version, invocation, stream, message.

Options:
  --limit N          at most N lines (default 100)
  --json             print the server's JSON reply on one line: {logs: [{time_ms,
                     function, version, invocation, stream, message}]}
",
    values: &["--limit"],
    switches: &["--json"],
    run: logs,
};

pub const METRICS: Spec = Spec {
    name: "metrics",
    help: "\
Usage: functions metrics [NAME] [options]

Invocation counters since the server started, per function (or of NAME only).

Options:
  --json             print the server's JSON reply on one line: {functions: {NAME:
                     {invocations, errors, timeouts, cold_starts, duration_ms_total,
                     duration_ms_max}}}
",
    values: &[],
    switches: &["--json"],
    run: metrics,
};

pub const STATUS: Spec = Spec {
    name: "status",
    help: "\
Usage: functions status [options]

The server's version, pid, uptime, functions, workers and addresses.

Options:
  --json             print the server's JSON reply on one line: {version, pid,
                     uptime_ms, functions, workers, http, socket}
",
    values: &[],
    switches: &["--json"],
    run: status,
};

/// The optional NAME argument, validated.
fn optional_name(raw: &Raw) -> Result<Option<String>, CliError> {
    let words = raw.words(0, 1, "at most one function NAME")?;
    words
        .first()
        .map(|name| checks::function_name(raw, name))
        .transpose()
}

fn logs(raw: Raw) -> Result<(), CliError> {
    let name = optional_name(&raw)?;
    let limit = raw.parsed("--limit", |v| match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of lines, at least 1".into()),
    })?;
    let payload = json!({ "name": name, "limit": limit });
    let reply = connect::request(&raw.target(), Command::GetLogs, payload, Vec::new())?;
    output::reply(raw.has("--json"), &reply.json, |reply| {
        let lines = reply["logs"].as_array().into_iter().flatten();
        lines.map(log_line).collect()
    })
}

/// `2024-05-01T12:00:00.250Z hello@2 1a2b3c log message`
fn log_line(line: &Value) -> String {
    format!(
        "{} {}@{} {} {} {}\n",
        output::shown(&line["time_ms"], output::time),
        field(&line["function"]),
        field(&line["version"]),
        field(&line["invocation"]),
        field(&line["stream"]),
        field(&line["message"]),
    )
}

fn metrics(raw: Raw) -> Result<(), CliError> {
    let name = optional_name(&raw)?;
    let payload = json!({ "name": name });
    let reply = connect::request(&raw.target(), Command::GetMetrics, payload, Vec::new())?;
    output::reply(raw.has("--json"), &reply.json, metrics_text)
}

fn metrics_text(reply: &Value) -> String {
    let Some(functions) = reply["functions"].as_object().filter(|f| !f.is_empty()) else {
        return String::new();
    };
    let header = [
        "NAME",
        "INVOCATIONS",
        "ERRORS",
        "TIMEOUTS",
        "COLD",
        "AVG_MS",
        "MAX_MS",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for (name, c) in functions {
        let count = |key: &str| c[key].as_u64().unwrap_or(0);
        let average = count("duration_ms_total")
            .checked_div(count("invocations"))
            .unwrap_or(0);
        rows.push(vec![
            name.clone(),
            count("invocations").to_string(),
            count("errors").to_string(),
            count("timeouts").to_string(),
            count("cold_starts").to_string(),
            average.to_string(),
            count("duration_ms_max").to_string(),
        ]);
    }
    output::table(&rows)
}

fn status(raw: Raw) -> Result<(), CliError> {
    raw.words(0, 0, "no arguments")?;
    let reply = connect::request(&raw.target(), Command::Status, json!({}), Vec::new())?;
    output::reply(raw.has("--json"), &reply.json, |reply| {
        let uptime = output::shown(&reply["uptime_ms"], output::duration);
        let rows = [
            ["version", &field(&reply["version"])],
            ["pid", &field(&reply["pid"])],
            ["uptime", &uptime],
            ["functions", &field(&reply["functions"])],
            ["workers", &field(&reply["workers"])],
            ["http", &field(&reply["http"])],
            ["socket", &field(&reply["socket"])],
        ];
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect();
        output::table(&rows)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_and_metrics_tables_read_the_reply_fields() {
        let line = json!({"time_ms": 0, "function": "f", "version": 2, "invocation": null,
            "stream": "log", "message": "hi"});
        assert_eq!(log_line(&line), "1970-01-01T00:00:00.000Z f@2 - log hi\n");

        let reply = json!({"functions": {"f": {"invocations": 4, "errors": 1, "timeouts": 0,
            "cold_starts": 1, "duration_ms_total": 10, "duration_ms_max": 7}}});
        let text = metrics_text(&reply);
        assert!(text
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .eq(["f", "4", "1", "0", "1", "2", "7"]));
        assert_eq!(metrics_text(&json!({"functions": {}})), "");
    }
}
