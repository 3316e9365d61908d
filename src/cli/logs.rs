//! `logs` (GET_LOGS): what functions printed, filtered by function, age, level and
//! invocation, once or followed; and the invocation records. Following polls the server
//! on one connection with `after_id`, and ends quietly on Ctrl-C or a closed stdout.

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use serde_json::{json, Value};

use super::args::{Raw, Spec};
use super::observe::optional_name;
use super::output::{self, field};
use super::{connect, CliError};
use crate::api::codes::{Command, Status};
use crate::client::Client;
use crate::config::parse_duration;
use crate::store::logs::level;

pub const LOGS: Spec = Spec {
    name: "logs",
    help: "\
Usage: functions logs [NAME] [--follow] [--since AGE] [--level LEVEL] [--invocation ID]
                      [--limit N] [--records] [--json]

Stored console output of function NAME (of every function without NAME), oldest first,
one line each: time, function@version, invocation, stream, message.

Options:
  --limit N          at most N lines, the newest (default 100)
  --since AGE        only lines of the last AGE: 30s, 10m, 2h, 1d
  --level LEVEL      only lines at LEVEL or above: trace < debug < info (log, stdout)
                     < warn (stderr) < error
  --invocation ID    only the lines of one invocation (its X-Invocation-Id)
  -f, --follow       keep printing new lines as they are stored, until interrupted
  --records          print invocation records (status, outcome, duration, cold start,
                     peak memory) instead of lines
  --json             print the server's JSON reply on one line: {logs: [{id, time_ms,
                     function, version, invocation, stream, level, message}], last_id}
                     (with --records also records: [...]); with --follow, one JSON
                     object per line instead
",
    values: &["--limit", "--since", "--level", "--invocation"],
    switches: &["--json", "--follow", "-f", "--records"],
    run: logs,
};

/// How often `--follow` asks for new lines.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Lines asked for per request while following.
const FOLLOW_PAGE: usize = 1000;

struct Options {
    name: Option<String>,
    limit: Option<usize>,
    since_ms: Option<i64>,
    level: Option<String>,
    invocation: Option<String>,
    follow: bool,
    records: bool,
    json: bool,
}

impl Options {
    fn parse(raw: &Raw) -> Result<Options, CliError> {
        let options = Options {
            name: optional_name(raw)?,
            limit: raw.parsed("--limit", |v| match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err("expected a whole number of lines, at least 1".into()),
            })?,
            since_ms: raw.parsed("--since", |v| {
                let age = parse_duration(v).map_err(|e| format!("{e}, or 1d"))?;
                Ok(crate::store::now_ms().saturating_sub(age.as_millis() as i64))
            })?,
            level: raw.parsed("--level", |v| match level::parse(v) {
                Some(_) => Ok(v.to_ascii_lowercase()),
                None => Err("expected trace, debug, info, warn or error".into()),
            })?,
            invocation: raw.value("--invocation")?.map(String::from),
            follow: raw.has("--follow") || raw.has("-f"),
            records: raw.has("--records"),
            json: raw.has("--json"),
        };
        if options.follow && options.records {
            return Err(raw.usage("--records cannot be combined with --follow"));
        }
        Ok(options)
    }

    /// The GET_LOGS payload: the newest lines, or (following) those after `after_id`.
    fn payload(&self, after_id: Option<i64>) -> Value {
        let limit = match after_id {
            Some(_) => Some(FOLLOW_PAGE),
            None => self.limit,
        };
        json!({ "name": self.name, "limit": limit, "since_ms": self.since_ms,
            "level": self.level, "invocation": self.invocation, "after_id": after_id,
            "records": self.records })
    }
}

fn logs(raw: Raw) -> Result<(), CliError> {
    let options = Options::parse(&raw)?;
    let socket = connect::socket_path(&raw.target(), crate::config::process_env())?;
    let mut client = Client::connect(&socket).map_err(CliError::Client)?;
    let reply = call(&mut client, options.payload(None))?;
    match (options.records, options.follow) {
        (true, _) => output::reply(options.json, &reply, records_text),
        (false, false) => output::reply(options.json, &reply, lines_text),
        (false, true) => {
            drop(client);
            follow(&socket, &options, reply)
        }
    }
}

/// Prints what the first reply held, then polls for lines after the last one seen, on a
/// new connection each time: a follower must not hold one of the server's API threads.
fn follow(socket: &Path, options: &Options, first: Value) -> Result<(), CliError> {
    let interrupted = interrupted();
    let mut reply = first;
    loop {
        if !print_follow(&reply, options.json)? {
            return Ok(());
        }
        let full = reply["logs"].as_array().map_or(0, Vec::len) >= FOLLOW_PAGE;
        if !full {
            match interrupted.recv_timeout(POLL_EVERY) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return Ok(()),
            }
        }
        let after_id = reply["last_id"].as_i64().unwrap_or(0);
        let mut client = Client::connect(socket).map_err(CliError::Client)?;
        reply = call(&mut client, options.payload(Some(after_id)))?;
    }
}

/// Receives once Ctrl-C (or SIGTERM, SIGHUP) arrives; never, if no handler could be set.
fn interrupted() -> Receiver<()> {
    let (tx, rx) = bounded(1);
    match ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    }) {
        Ok(()) => rx,
        // The default handling stays: the signal ends the process.
        Err(_) => crossbeam_channel::never(),
    }
}

/// Sends one GET_LOGS request and returns the JSON of its OK answer.
fn call(client: &mut Client, payload: Value) -> Result<Value, CliError> {
    let reply = client
        .call(Command::GetLogs, payload, Vec::new())
        .map_err(CliError::Client)?;
    match reply.status {
        Status::Ok => Ok(reply.json),
        status => Err(CliError::Server {
            status,
            message: reply.error_message(),
        }),
    }
}

/// Prints the lines of a reply as text or one JSON object each; false once the reader of
/// stdout went away.
fn print_follow(reply: &Value, json: bool) -> Result<bool, CliError> {
    let lines = reply["logs"].as_array().into_iter().flatten();
    let text: String = match json {
        true => lines.map(|l| format!("{l}\n")).collect(),
        false => lines.map(log_line).collect(),
    };
    if text.is_empty() {
        return Ok(true);
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::Write(e)),
    }
}

fn lines_text(reply: &Value) -> String {
    let lines = reply["logs"].as_array().into_iter().flatten();
    lines.map(log_line).collect()
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

fn records_text(reply: &Value) -> String {
    let records = reply["records"].as_array().into_iter().flatten();
    records.map(record_line).collect()
}

/// `2024-05-01T12:00:00.250Z hello@2 1a2b3c status=200 outcome=ok duration_ms=1.25 ...`
fn record_line(r: &Value) -> String {
    let peak = output::shown(&r["peak_rss_bytes"], |b: u64| format!("{}K", b >> 10));
    format!(
        "{} {}@{} {} status={} outcome={} duration_ms={} cold={} init_ms={} \
         queue_ms={} pid={} peak_rss={peak} dropped_lines={}\n",
        output::shown(&r["start_ms"], output::time),
        field(&r["function"]),
        field(&r["version"]),
        field(&r["invocation"]),
        field(&r["status"]),
        field(&r["outcome"]),
        field(&r["duration_ms"]),
        field(&r["cold"]),
        field(&r["init_ms"]),
        field(&r["queue_wait_ms"]),
        field(&r["worker_pid"]),
        field(&r["lines_dropped"]),
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

    #[test]
    fn record_lines_read_the_reply_fields() {
        let record = json!({"start_ms": 0, "function": "f", "version": 1, "invocation": "i",
            "status": 200, "outcome": "ok", "duration_ms": 1.5, "cold": true, "init_ms": null,
            "queue_wait_ms": 0.0, "worker_pid": 9, "peak_rss_bytes": 2048, "lines_dropped": 0});
        assert_eq!(
            record_line(&record),
            "1970-01-01T00:00:00.000Z f@1 i status=200 outcome=ok duration_ms=1.5 cold=true \
             init_ms=- queue_ms=0.0 pid=9 peak_rss=2K dropped_lines=0\n"
        );
    }

    #[test]
    fn following_asks_for_pages_after_the_last_id() {
        let options = Options {
            name: Some("f".into()),
            limit: Some(5),
            since_ms: None,
            level: Some("warn".into()),
            invocation: None,
            follow: true,
            records: false,
            json: false,
        };
        assert_eq!(options.payload(None)["limit"], 5);
        let next = options.payload(Some(42));
        assert_eq!(
            (next["after_id"].as_i64(), next["limit"].as_u64()),
            (Some(42), Some(1000))
        );
        assert_eq!(next["level"], "warn");
    }
}
