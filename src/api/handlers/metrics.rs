//! GET_METRICS: invocation counters per function.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{ok, payload, Handled};
use crate::observe;

#[derive(Deserialize)]
struct MetricsRequest {
    name: Option<String>,
}

pub fn get_metrics(json: &Value) -> Handled {
    let p: MetricsRequest = payload(json)?;
    ok(json!({ "functions": observe::counters(p.name.as_deref()) }))
}
