//! The Prometheus text exposition format (version 0.0.4) of the counts since start and
//! of the workers: one `# HELP` and one `# TYPE` line per metric, then its samples, every
//! line ending in a line feed. Label values escape backslash, double quote and line feed.

use std::fmt::Write;

use super::aggregate::{Aggregate, ErrorKind};
use super::histogram::BOUNDS_US;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The counts of one function version since the server started.
pub struct Series {
    pub function: String,
    pub version: i64,
    pub totals: Aggregate,
}

/// The workers of one serving function version, now.
pub struct Workers {
    pub function: String,
    pub version: i64,
    /// Workers running an invocation or starting for one.
    pub busy: usize,
    pub idle: usize,
    /// Invocations waiting for a worker.
    pub queued: usize,
}

/// A label value with `\`, `"` and line feeds escaped.
pub fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `function="..",version=".."`, the labels every sample starts with.
fn labels(function: &str, version: i64) -> String {
    format!(
        "function=\"{}\",version=\"{version}\"",
        escape_label(function)
    )
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1_000_000.0
}

pub fn render(series: &[Series], workers: &[Workers]) -> String {
    let mut out = String::new();

    family(
        &mut out,
        "functions_invocations_total",
        "counter",
        "Invocations finished since the server started, by outcome.",
    );
    for s in series {
        let labels = labels(&s.function, s.version);
        let ok = s.totals.invocations.saturating_sub(s.totals.failed());
        let _ = writeln!(
            out,
            "functions_invocations_total{{{labels},outcome=\"ok\"}} {ok}"
        );
        for kind in ErrorKind::ALL {
            let _ = writeln!(
                out,
                "functions_invocations_total{{{labels},outcome=\"{}\"}} {}",
                kind.name(),
                s.totals.error_count(kind)
            );
        }
    }

    family(
        &mut out,
        "functions_cold_starts_total",
        "counter",
        "Invocations that had to start a new worker, since the server started.",
    );
    for s in series {
        let labels = labels(&s.function, s.version);
        let _ = writeln!(
            out,
            "functions_cold_starts_total{{{labels}}} {}",
            s.totals.cold_starts
        );
    }

    let name = "functions_invocation_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from the request's arrival to the function's answer, queueing included.",
    );
    for s in series {
        let labels = labels(&s.function, s.version);
        let cumulative = s.totals.duration.cumulative();
        for (at, count) in cumulative.iter().enumerate() {
            let le = match BOUNDS_US.get(at) {
                Some(&bound) => seconds(bound).to_string(),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
        }
        let duration = &s.totals.duration;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", seconds(duration.sum_us));
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", duration.count());
    }

    family(
        &mut out,
        "functions_queue_wait_seconds_total",
        "counter",
        "Time invocations spent waiting for a worker, since the server started.",
    );
    for s in series {
        let labels = labels(&s.function, s.version);
        let wait = seconds(s.totals.queue_wait_us_sum);
        let _ = writeln!(out, "functions_queue_wait_seconds_total{{{labels}}} {wait}");
    }

    family(
        &mut out,
        "functions_workers",
        "gauge",
        "Workers of the serving version: busy (or starting) and idle.",
    );
    for w in workers {
        let labels = labels(&w.function, w.version);
        let _ = writeln!(
            out,
            "functions_workers{{{labels},state=\"busy\"}} {}",
            w.busy
        );
        let _ = writeln!(
            out,
            "functions_workers{{{labels},state=\"idle\"}} {}",
            w.idle
        );
    }

    family(
        &mut out,
        "functions_queued_invocations",
        "gauge",
        "Invocations waiting for a worker of the serving version.",
    );
    for w in workers {
        let labels = labels(&w.function, w.version);
        let _ = writeln!(out, "functions_queued_invocations{{{labels}}} {}", w.queued);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::aggregate::Sample;

    fn series() -> Series {
        let mut totals = Aggregate::default();
        for (error, ms) in [(None, 3), (None, 40), (Some(ErrorKind::Timeout), 1_000)] {
            totals.record(&Sample {
                error,
                cold: ms == 3,
                duration_us: ms * 1000,
                queue_wait_us: 500,
            });
        }
        Series {
            function: "hello".into(),
            version: 2,
            totals,
        }
    }

    #[test]
    fn label_values_escape_backslash_quote_and_line_feed() {
        assert_eq!(escape_label("plain-name_1"), "plain-name_1");
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(labels("x\"y", 3), "function=\"x\\\"y\",version=\"3\"");
    }

    #[test]
    fn every_family_has_help_and_type_and_the_histogram_is_cumulative() {
        let workers = Workers {
            function: "hello".into(),
            version: 2,
            busy: 1,
            idle: 2,
            queued: 0,
        };
        let text = render(&[series()], &[workers]);
        assert!(text.ends_with('\n'));
        let has = |line: &str| text.lines().any(|l| l == line);
        let l = "function=\"hello\",version=\"2\"";
        assert!(has("# TYPE functions_invocations_total counter"));
        assert!(has(&format!(
            "functions_invocations_total{{{l},outcome=\"ok\"}} 2"
        )));
        assert!(has(&format!(
            "functions_invocations_total{{{l},outcome=\"timeout\"}} 1"
        )));
        assert!(has(&format!("functions_cold_starts_total{{{l}}} 1")));
        let d = "functions_invocation_duration_seconds";
        assert!(has(&format!("# TYPE {d} histogram")));
        assert!(has(&format!("{d}_bucket{{{l},le=\"0.001\"}} 0")));
        assert!(has(&format!("{d}_bucket{{{l},le=\"0.0025\"}} 0")));
        assert!(has(&format!("{d}_bucket{{{l},le=\"0.005\"}} 1")));
        assert!(has(&format!("{d}_bucket{{{l},le=\"0.05\"}} 2")));
        assert!(has(&format!("{d}_bucket{{{l},le=\"1\"}} 3")));
        assert!(has(&format!("{d}_bucket{{{l},le=\"30\"}} 3")));
        assert!(has(&format!("{d}_bucket{{{l},le=\"+Inf\"}} 3")));
        assert!(has(&format!("{d}_sum{{{l}}} 1.043")));
        assert!(has(&format!("{d}_count{{{l}}} 3")));
        assert!(has(&format!(
            "functions_queue_wait_seconds_total{{{l}}} 0.0015"
        )));
        assert!(has(&format!("functions_workers{{{l},state=\"busy\"}} 1")));
        assert!(has(&format!("functions_workers{{{l},state=\"idle\"}} 2")));
        assert!(has(&format!("functions_queued_invocations{{{l}}} 0")));

        // Each family's HELP and TYPE come once, before its samples.
        for name in [
            "functions_invocations_total",
            "functions_cold_starts_total",
            d,
            "functions_queue_wait_seconds_total",
            "functions_workers",
            "functions_queued_invocations",
        ] {
            let help = format!("# HELP {name} ");
            let first_sample = text
                .lines()
                .position(|l| l.starts_with(name) && !l.starts_with('#'));
            let help_at = text.lines().position(|l| l.starts_with(&help)).unwrap();
            assert_eq!(text.lines().filter(|l| l.starts_with(&help)).count(), 1);
            assert!(first_sample.unwrap() > help_at + 1, "{name}");
        }
    }

    #[test]
    fn nothing_to_show_is_still_valid_text() {
        let text = render(&[], &[]);
        assert!(text
            .lines()
            .all(|l| l.starts_with("# HELP ") || l.starts_with("# TYPE ")));
    }
}
