//! Metrics through the real binary: the counts of `functions metrics --json` and the
//! Prometheus text of `GET /metrics` (parsed here, sample by sample) agree with what the
//! test did; `/metrics` switches off and is not the function `metrics`; the history
//! survives a restart on the same data dir.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{assert_error, Response, Server};

/// Answers `ok` (or `?status=N`), throws with `?fail=1`, never answers with `?hang=1`.
const FLAKY: &str = r#"
export default async function (req: Request): Promise<Response> {
  const url = new URL(req.url);
  if (url.searchParams.get("fail") === "1") throw new Error("failing on purpose");
  if (url.searchParams.get("hang") === "1") return new Promise<Response>(() => {});
  return new Response("ok\n", { status: Number(url.searchParams.get("status") ?? 200) });
}
"#;

const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `functions ARGS --socket SOCKET`; panics with its output unless it exits 0.
fn functions(socket: &Path, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_functions"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command.args(args).arg("--socket").arg(socket);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .expect("failed to start the functions binary");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("functions {args:?} still running after {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success(),
        "functions {args:?}: {status}\n{out}\n{err}"
    );
    out
}

fn metrics_json(server: &Server, name: &str) -> Value {
    let out = functions(server.socket_path(), &["metrics", name, "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Polls `functions metrics NAME --json` until `NAME` has `invocations`.
fn wait_for_invocations(server: &Server, name: &str, invocations: u64) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let reply = metrics_json(server, name);
        if reply["functions"][name]["invocations"] == invocations {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "never {invocations} invocations: {reply}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// One sample of the exposition text.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples and the declared type of each family.
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

/// Parses the text format: `# HELP`/`# TYPE` lines, then `name{label="value",...} value`.
fn parse_exposition(text: &str) -> Exposition {
    assert!(
        text.ends_with('\n'),
        "the last line must end in a line feed"
    );
    let mut exposition = Exposition {
        samples: Vec::new(),
        types: BTreeMap::new(),
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            let first = exposition.types.insert(name.to_string(), kind.to_string());
            assert!(first.is_none(), "two TYPE lines for {name}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').unwrap())),
            None => (series, BTreeMap::new()),
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        assert!(name.chars().all(valid), "bad metric name in {line:?}");
        exposition.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    exposition
}

/// `a="x",b="y\"z"` with the escapes undone.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {name} is not quoted");
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => panic!("bad escape {other:?} in {text}"),
                },
                c => value.push(c),
            }
        }
        labels.insert(name, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

impl Exposition {
    /// Samples named `name` whose labels include all of `wanted`.
    fn find(&self, name: &str, wanted: &[(&str, &str)]) -> Vec<&Sample> {
        let matches = |s: &&Sample| {
            s.name == name
                && wanted
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        };
        self.samples.iter().filter(matches).collect()
    }

    /// The value of the one sample named `name` with `wanted` labels.
    fn value(&self, name: &str, wanted: &[(&str, &str)]) -> f64 {
        let found = self.find(name, wanted);
        assert_eq!(found.len(), 1, "{name} {wanted:?}: {found:?}");
        found[0].value
    }

    /// The family a sample belongs to (a histogram's `_bucket` is the histogram's).
    fn family_of<'a>(&self, name: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if self.types.get(base).map(String::as_str) == Some("histogram") {
                    return base;
                }
            }
        }
        name
    }
}

fn scrape(server: &Server) -> (Response, Exposition) {
    let response = server.get("/metrics");
    assert_eq!(response.status, 200, "body: {}", response.text());
    let exposition = parse_exposition(&response.text());
    (response, exposition)
}

#[test]
fn invocations_failures_timeouts_and_cold_starts_add_up_in_the_cli_and_in_prometheus() {
    let server = Server::builder()
        .function("flaky.ts", FLAKY)
        .config("invocation_timeout", "1s")
        .start();

    // 4 answers, 1 of them a 503, then 2 thrown errors, then 1 timeout.
    let paths = [
        "/functions/flaky",
        "/functions/flaky",
        "/functions/flaky?status=503",
        "/functions/flaky",
        "/functions/flaky?fail=1",
        "/functions/flaky?fail=1",
        "/functions/flaky?hang=1",
    ];
    let mut cold = 0;
    for path in paths {
        let response = server.get(path);
        cold += u64::from(response.header("x-cold-start").as_deref() == Some("true"));
    }
    assert!(cold >= 1, "the first call starts a worker");
    let n = paths.len() as u64;

    // The CLI's JSON.
    let reply = wait_for_invocations(&server, "flaky", n);
    assert_eq!(reply["window_ms"], 3_600_000);
    let flaky = &reply["functions"]["flaky"];
    assert_eq!(flaky["errors"], 4, "{flaky}");
    let kinds = &flaky["errors_by_kind"];
    assert_eq!(
        (
            &kinds["function_error"],
            &kinds["timeout"],
            &kinds["status_5xx"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(1)),
        "{flaky}"
    );
    assert_eq!(flaky["cold_starts"], cold, "{flaky}");
    assert_eq!(flaky["versions"]["1"]["invocations"], n);
    let max = flaky["duration_ms"]["max"].as_f64().unwrap();
    assert!(max >= 1000.0, "the timeout took a second: {flaky}");
    let p50 = flaky["duration_ms"]["p50"].as_f64().unwrap();
    assert!(p50 <= flaky["duration_ms"]["p99"].as_f64().unwrap() && p50 <= max);
    assert_eq!(flaky["workers"]["version"], 1, "{flaky}");

    // The human table: one row for version 1 under its header.
    let table = functions(
        server.socket_path(),
        &["metrics", "flaky", "--window", "15m"],
    );
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    let cell = |column: &str| rows[1][rows[0].iter().position(|c| *c == column).unwrap()];
    assert_eq!((cell("NAME"), cell("VERSION")), ("flaky", "1"));
    assert_eq!(cell("INVOCATIONS"), n.to_string());
    assert_eq!(cell("ERRORS"), "4");

    // The Prometheus text.
    let (response, exposition) = scrape(&server);
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for sample in &exposition.samples {
        let family = exposition.family_of(&sample.name);
        assert!(
            exposition.types.contains_key(family),
            "no TYPE for {family}"
        );
    }
    let flaky = [("function", "flaky"), ("version", "1")];
    let outcome = |o: &str| {
        let labels = [flaky[0], flaky[1], ("outcome", o)];
        exposition.value("functions_invocations_total", &labels)
    };
    assert_eq!(outcome("ok"), 3.0);
    assert_eq!(outcome("status_5xx"), 1.0);
    assert_eq!(outcome("function_error"), 2.0);
    assert_eq!(outcome("timeout"), 1.0);
    let all: f64 = exposition
        .find("functions_invocations_total", &flaky)
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(all, n as f64);
    assert_eq!(exposition.types["functions_invocations_total"], "counter");
    assert_eq!(
        exposition.value("functions_cold_starts_total", &flaky),
        cold as f64
    );

    let histogram = "functions_invocation_duration_seconds";
    assert_eq!(exposition.types[histogram], "histogram");
    let mut buckets: Vec<(f64, f64)> = exposition
        .find(&format!("{histogram}_bucket"), &flaky)
        .iter()
        .map(|s| {
            let le = match s.labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().unwrap(),
            };
            (le, s.value)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(buckets.len(), 15);
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    let count = exposition.value(&format!("{histogram}_count"), &flaky);
    assert_eq!(count, n as f64);
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
    // The timeout took a second, so at least one value is above 0.5 s.
    let below_half_second = buckets.iter().find(|(le, _)| *le == 0.5).unwrap().1;
    assert!(below_half_second < count, "{buckets:?}");
    assert!(exposition.value(&format!("{histogram}_sum"), &flaky) >= 1.0);

    assert_eq!(exposition.types["functions_workers"], "gauge");
    let busy = exposition.value("functions_workers", &[flaky[0], ("state", "busy")]);
    let idle = exposition.value("functions_workers", &[flaky[0], ("state", "idle")]);
    assert!(busy + idle <= 4.0, "busy={busy} idle={idle}");
    assert_eq!(
        exposition.value("functions_queued_invocations", &flaky),
        0.0
    );
}

#[test]
fn metrics_route_is_not_the_function_named_metrics_and_switches_off() {
    let named_metrics = "export default () => new Response('the function\\n');\n";
    let server = Server::builder()
        .function("metrics.ts", named_metrics)
        .start();
    let function = server.get("/functions/metrics");
    assert_eq!(function.text(), "the function\n");
    let (_, exposition) = scrape(&server);
    let labels = [("function", "metrics"), ("outcome", "ok")];
    assert_eq!(
        exposition.value("functions_invocations_total", &labels),
        1.0
    );
    drop(server);

    let server = Server::builder()
        .function("metrics.ts", named_metrics)
        .config("enable_metrics", "false")
        .start();
    assert_error(&server.get("/metrics"), 404, "not_found");
    assert_eq!(server.get("/functions/metrics").text(), "the function\n");
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn history_survives_a_restart_while_prometheus_counters_start_again() {
    let data = tempfile::TempDir::new().unwrap();
    let first = Server::builder()
        .function("flaky.ts", FLAKY)
        .data_dir(data.path())
        .start();
    for path in [
        "/functions/flaky",
        "/functions/flaky?fail=1",
        "/functions/flaky",
    ] {
        first.get(path);
    }
    wait_for_invocations(&first, "flaky", 3);

    // SIGTERM writes what is in memory to metrics.db before the server exits.
    first.stop();

    let second = Server::builder()
        .without_functions_dir()
        .data_dir(data.path())
        .start();
    let reply = metrics_json(&second, "flaky");
    let flaky = &reply["functions"]["flaky"];
    assert_eq!(
        (&flaky["invocations"], &flaky["errors"]),
        (&3.into(), &1.into()),
        "{reply}"
    );

    // New invocations add to the stored ones in the CLI, and alone in Prometheus.
    second.get("/functions/flaky");
    let reply = wait_for_invocations(&second, "flaky", 4);
    assert_eq!(reply["functions"]["flaky"]["errors"], 1);
    let (_, exposition) = scrape(&second);
    let labels = [("function", "flaky"), ("version", "1")];
    let since_start: f64 = exposition
        .find("functions_invocations_total", &labels)
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(since_start, 1.0);
}

#[test]
fn prometheus_label_parser_undoes_the_escapes() {
    let labels = parse_labels(r#"a="x",b="q\"\\\n""#);
    assert_eq!(labels["a"], "x");
    assert_eq!(labels["b"], "q\"\\\n");
}
