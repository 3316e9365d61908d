//! `logs` (GET_LOGS): what functions printed, newest lines, oldest first.

use serde_json::{json, Value};

use super::args::{Raw, Spec};
use super::observe::optional_name;
use super::output::{self, field};
use super::{connect, CliError};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_read_the_reply_fields() {
        let line = json!({"time_ms": 0, "function": "f", "version": 2, "invocation": null,
            "stream": "log", "message": "hi"});
        assert_eq!(log_line(&line), "1970-01-01T00:00:00.000Z f@2 - log hi\n");
    }
}
