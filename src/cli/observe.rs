//! `status` (STATUS): the server's version, uptime, functions and addresses, plus the
//! NAME argument shared by the read-only commands `logs` and `metrics`. None of them
//! changes anything, so they are safe to run in loops and from monitors.

use serde_json::json;

use super::args::{Raw, Spec};
use super::output::{self, field};
use super::{checks, connect, CliError};
use crate::api::codes::Command;

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
pub(super) fn optional_name(raw: &Raw) -> Result<Option<String>, CliError> {
    let words = raw.words(0, 1, "at most one function NAME")?;
    words
        .first()
        .map(|name| checks::function_name(raw, name))
        .transpose()
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
