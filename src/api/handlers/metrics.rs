//! GET_METRICS: per function and per version, what happened over a window (default the
//! last hour) from memory and `metrics.db`, and the workers each has now.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{checked_name, ok, payload, ApiContext, Failure, Handled};
use crate::api::codes::Status;
use crate::metrics::aggregate::{Aggregate, ErrorKind};
use crate::store::now_ms;

const DEFAULT_WINDOW_MS: u64 = 3_600_000;

#[derive(Deserialize)]
struct MetricsRequest {
    name: Option<String>,
    window_ms: Option<u64>,
}

pub fn get_metrics(context: &ApiContext, json: &Value) -> Handled {
    let p: MetricsRequest = payload(json)?;
    let name = p.name.as_deref().map(checked_name).transpose()?;
    let window_ms = p.window_ms.unwrap_or(DEFAULT_WINDOW_MS);
    if window_ms == 0 {
        let message = "window_ms must be at least 1".to_string();
        return Err(Failure(Status::BadRequest, "bad_request", message));
    }
    let from_ms = now_ms().saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
    let counted = crate::metrics::window(name, from_ms)
        .map_err(|e| Failure(Status::Error, "store", e.to_string()))?;

    // Every function counted in the window or serving now, by name, then by version.
    let mut functions: BTreeMap<String, (BTreeMap<i64, Aggregate>, Value)> = BTreeMap::new();
    for ((function, version), aggregate) in counted {
        let entry = functions
            .entry(function)
            .or_insert((BTreeMap::new(), Value::Null));
        entry.0.insert(version, aggregate);
    }
    for route in context.registry.stats() {
        if name.is_some_and(|n| n != route.name) {
            continue;
        }
        let Some(pool) = route.pool else { continue };
        let workers = json!({
            "version": pool.version,
            "busy": pool.workers.saturating_sub(pool.idle),
            "idle": pool.idle,
            "queued": pool.queued,
        });
        let entry = functions.entry(route.name).or_default();
        entry.0.entry(pool.version).or_default();
        entry.1 = workers;
    }

    let functions: Map<String, Value> = functions
        .into_iter()
        .map(|(function, (versions, workers))| {
            let mut total = Aggregate::default();
            let mut by_version = Map::new();
            for (version, aggregate) in &versions {
                total.add(aggregate);
                by_version.insert(version.to_string(), summary(aggregate));
            }
            let mut reply = summary(&total);
            reply["versions"] = Value::Object(by_version);
            reply["workers"] = workers;
            (function, reply)
        })
        .collect();
    ok(json!({ "window_ms": window_ms, "functions": functions }))
}

/// Microseconds as milliseconds, to the microsecond; null when there is nothing.
fn ms(us: Option<f64>) -> Value {
    us.map_or(Value::Null, |us| json!(us.round() / 1000.0))
}

/// The counts of one aggregate as the reply shows them.
fn summary(a: &Aggregate) -> Value {
    let by_kind: Map<String, Value> = ErrorKind::ALL
        .iter()
        .map(|kind| (kind.name().to_string(), json!(a.error_count(*kind))))
        .collect();
    let d = &a.duration;
    let seen = a.invocations > 0;
    let wait_avg = seen.then(|| a.queue_wait_us_sum as f64 / a.invocations as f64);
    json!({
        "invocations": a.invocations,
        "errors": a.failed(),
        "errors_by_kind": by_kind,
        "cold_starts": a.cold_starts,
        "duration_ms": {
            "p50": ms(d.quantile(0.5)),
            "p90": ms(d.quantile(0.9)),
            "p99": ms(d.quantile(0.99)),
            "max": ms(seen.then_some(d.max_us as f64)),
            "avg": ms(d.mean()),
        },
        "queue_wait_ms": {
            "avg": ms(wait_avg),
            "max": ms(seen.then_some(a.queue_wait_us_max as f64)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::aggregate::Sample;

    #[test]
    fn summaries_show_milliseconds_and_nulls_when_empty() {
        let mut a = Aggregate::default();
        for ms in [3, 3, 40] {
            a.record(&Sample {
                error: (ms == 40).then_some(ErrorKind::FunctionError),
                cold: false,
                duration_us: ms * 1000 + 1,
                queue_wait_us: 1500,
            });
        }
        let s = summary(&a);
        assert_eq!(s["invocations"], 3);
        assert_eq!(s["errors"], 1);
        assert_eq!(s["errors_by_kind"]["function_error"], 1);
        assert_eq!(s["errors_by_kind"]["status_5xx"], 0);
        assert_eq!(s["duration_ms"]["max"], 40.001);
        assert_eq!(s["queue_wait_ms"]["avg"], 1.5);

        let empty = summary(&Aggregate::default());
        assert_eq!(empty["invocations"], 0);
        assert!(empty["duration_ms"]["p50"].is_null());
        assert!(empty["queue_wait_ms"]["max"].is_null());
    }
}
