//! `metrics` (GET_METRICS): invocation counters per function.

use serde_json::{json, Value};

use super::args::{Raw, Spec};
use super::observe::optional_name;
use super::output;
use super::{connect, CliError};
use crate::api::codes::Command;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_tables_read_the_reply_fields() {
        let reply = json!({"functions": {"f": {"invocations": 4, "errors": 1, "timeouts": 0,
            "cold_starts": 1, "duration_ms_total": 10, "duration_ms_max": 7}}});
        let text = metrics_text(&reply);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["f", "4", "1", "0", "1", "2", "7"]);
        assert_eq!(metrics_text(&json!({"functions": {}})), "");
    }
}
