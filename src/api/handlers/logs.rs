//! GET_LOGS: the newest lines of function output.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{ok, payload, Handled};
use crate::observe;

#[derive(Deserialize)]
struct LogsRequest {
    name: Option<String>,
    limit: Option<usize>,
}

pub fn get_logs(json: &Value) -> Handled {
    let p: LogsRequest = payload(json)?;
    let lines = observe::recent_logs(p.name.as_deref(), p.limit.unwrap_or(100));
    ok(json!({ "logs": lines }))
}
