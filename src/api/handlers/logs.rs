//! GET_LOGS: stored lines of function output, filtered, newest or after an id (to follow),
//! and on request the invocation records. Reads `logs.db` after asking the writer to
//! commit what it holds, so a line printed before the request is in the answer.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{ok, payload, Failure, Handled};
use crate::api::codes::Status;
use crate::observe;
use crate::store::logs::{level, LogError, LogQuery};

/// How long a request waits for the writer to commit what it holds.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
struct LogsRequest {
    name: Option<String>,
    limit: Option<usize>,
    since_ms: Option<i64>,
    level: Option<String>,
    invocation: Option<String>,
    after_id: Option<i64>,
    #[serde(default)]
    records: bool,
}

pub fn get_logs(json: &Value) -> Handled {
    let p: LogsRequest = payload(json)?;
    let min_level = match p.level.as_deref() {
        None => level::TRACE,
        Some(name) => level::parse(name).ok_or_else(|| {
            let message =
                format!("unknown level {name:?}; expected trace, debug, info, warn or error");
            Failure(Status::BadRequest, "bad_request", message)
        })?,
    };
    let query = LogQuery {
        function: p.name,
        limit: p.limit.unwrap_or(100),
        since_ms: p.since_ms,
        min_level,
        invocation: p.invocation,
        after_id: p.after_id,
    };
    let Some(logs) = observe::logs() else {
        let message = "the log store is not running".to_string();
        return Err(Failure(Status::Error, "store", message));
    };
    if !logs.sink.flush(FLUSH_WAIT) {
        log::debug!("GET_LOGS: the log writer did not commit within {FLUSH_WAIT:?}; answering with what is stored");
    }
    let page = logs.reader.lines(&query).map_err(store_failure)?;
    let mut reply = json!({ "logs": page.lines, "last_id": page.last_id });
    if p.records {
        let records = logs.reader.records(&query).map_err(store_failure)?;
        reply["records"] = json!(records);
    }
    ok(reply)
}

fn store_failure(e: LogError) -> Failure {
    Failure(Status::Error, "store", e.to_string())
}
