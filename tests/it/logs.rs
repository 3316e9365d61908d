//! Stored function output through the real binary and real Bun: the level and invocation
//! of every kind of output, the filters and `--follow` of `functions logs`, a flood that
//! neither stalls another function nor escapes its budget, and the history (lines, JSONL
//! files, invocation records) across a graceful restart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{Request, Server, ServerBuilder};

/// How long stored lines may take to show up, and a CLI run to finish.
const DEADLINE: Duration = Duration::from_secs(30);

/// Logs `<level>-<m>` at every level, to raw stderr and with a stray stdout write.
const LEVELS: &str = r#"
export default function (req: Request): Response {
  const m = new URL(req.url).searchParams.get("m") ?? "none";
  console.debug(`debug-${m}`);
  console.info(`info-${m}`);
  console.log(`log-${m}`);
  console.warn(`warn-${m}`);
  console.error(`error-${m}`);
  process.stderr.write(`stderr-${m}\n`);
  process.stdout.write(`stdout-${m}\n`);
  return new Response("ok\n");
}
"#;

/// Prints 1000-byte lines until it printed `?mb=` megabytes and ran `?ms=` milliseconds.
const FLOOD: &str = r#"
export default function (req: Request): Response {
  const params = new URL(req.url).searchParams;
  const bytes = Number(params.get("mb") ?? 50) * 1_000_000;
  const ms = Number(params.get("ms") ?? 0);
  const line = "f".repeat(999);
  const start = Date.now();
  let printed = 0;
  while (printed < bytes || Date.now() - start < ms) {
    for (let i = 0; i < 100; i++) console.log(line);
    printed += 100_000;
  }
  return new Response(`${printed}\n`);
}
"#;

const HELLO: &str = "export default () => new Response('hello\\n');\n";

/// Starts the server and waits until its socket answers.
fn start(builder: ServerBuilder) -> Server {
    let server = builder.start();
    let bound = server.wait_for_log("socket api listening on", DEADLINE);
    assert!(bound, "socket not bound:\n{}", server.logs_tail(8000));
    server
}

/// `functions --socket S ARGS`, without any inherited `FUNCTIONS_*` variable.
fn functions(socket: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_functions"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command.args(args).arg("--socket").arg(socket);
    command
}

/// Runs `functions ARGS` to the end (killed past [`DEADLINE`]) and returns its stdout,
/// asserting success.
fn cli(server: &Server, args: &[&str]) -> String {
    let mut child = functions(server.socket_path(), args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start the functions binary");
    let output = wait_output(&mut child, args);
    assert!(
        output.status.success(),
        "functions {args:?} failed ({}): {}\nserver:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.logs_tail(4000)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

fn wait_output(child: &mut Child, args: &[&str]) -> Output {
    let deadline = Instant::now() + DEADLINE;
    // Read both pipes on threads so a full pipe cannot stall the child.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut bytes).map(|_| bytes)
    });
    let err = thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut bytes).map(|_| bytes)
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("failed to poll the CLI") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("functions {args:?} still running after {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

/// `functions logs ARGS --json`, parsed.
fn logs_json(server: &Server, args: &[&str]) -> Value {
    let args: Vec<&str> = ["logs"]
        .iter()
        .chain(args)
        .chain(&["--json"])
        .copied()
        .collect();
    let text = cli(server, &args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Polls `functions logs ARGS --json` until `done` holds for its lines; panics at the deadline.
fn wait_for_lines(server: &Server, args: &[&str], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let reply = logs_json(server, args);
        let lines = reply["logs"].as_array().cloned().unwrap_or_default();
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "lines never matched for logs {args:?}; last reply: {reply}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn has_message(lines: &[Value], message: &str) -> bool {
    lines.iter().any(|l| l["message"] == message)
}

fn line_with<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    let found = lines.iter().find(|l| l["message"] == message);
    found.unwrap_or_else(|| panic!("no line {message:?} in {lines:?}"))
}

fn messages(lines: &[Value]) -> Vec<String> {
    let texts = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap_or("").to_string());
    texts.collect()
}

/// Invokes over HTTP, expects 200, returns the invocation id the answer carried.
fn invoke(server: &Server, path: &str) -> String {
    let response = server.get(path);
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response
        .header("x-invocation-id")
        .expect("an invocation id")
}

#[test]
fn every_kind_of_output_is_stored_with_its_level_and_invocation() {
    let server = start(Server::builder().function("levels.ts", LEVELS));
    let one = invoke(&server, "/functions/levels?m=one");
    let two = invoke(&server, "/functions/levels?m=two");
    // Some lines may come a moment after the response.
    let lines = wait_for_lines(&server, &["levels"], |lines| {
        ["stderr-one", "stderr-two", "stdout-two"]
            .iter()
            .all(|m| has_message(lines, m))
    });

    for (message, stream, level) in [
        ("debug-one", "debug", "debug"),
        ("info-one", "info", "info"),
        ("log-one", "log", "info"),
        ("warn-one", "warn", "warn"),
        ("error-one", "error", "error"),
        ("stdout-one", "stdout", "info"),
        ("stderr-one", "stderr", "warn"),
    ] {
        let line = line_with(&lines, message);
        assert_eq!(
            (&line["stream"], &line["level"], &line["invocation"]),
            (
                &Value::from(stream),
                &Value::from(level),
                &Value::from(one.as_str())
            ),
            "{line}"
        );
        assert_eq!(
            (&line["function"], &line["version"]),
            (&"levels".into(), &1.into())
        );
        assert!(line["id"].as_i64().is_some() && line["time_ms"].as_i64().is_some());
    }

    // --level warn: warn, stderr and error only.
    let warn = logs_json(&server, &["levels", "--level", "warn"]);
    let warn = warn["logs"].as_array().unwrap();
    let mut got = messages(warn);
    got.retain(|m| m.ends_with("-one"));
    got.sort();
    assert_eq!(got, ["error-one", "stderr-one", "warn-one"]);
    assert!(warn
        .iter()
        .all(|l| l["level"] == "warn" || l["level"] == "error"));

    // --invocation: that invocation's lines only.
    let only = logs_json(&server, &["levels", "--invocation", &two]);
    let only = only["logs"].as_array().unwrap();
    assert_eq!(only.len(), 7, "{only:?}");
    assert!(only.iter().all(|l| l["invocation"] == two.as_str()));
    for message in ["debug-two", "stdout-two", "stderr-two"] {
        assert!(has_message(only, message), "{message} missing: {only:?}");
    }

    // --limit keeps the newest; the human form is one line each.
    let text = cli(&server, &["logs", "levels", "--limit", "2"]);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(" levels@1 "), "{text}");

    // An unknown level is a usage error.
    let output = functions(server.socket_path(), &["logs", "--level", "loud"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn follow_prints_lines_stored_after_it_started() {
    let server = start(Server::builder().function("levels.ts", LEVELS));
    invoke(&server, "/functions/levels?m=before");
    wait_for_lines(&server, &["levels"], |lines| {
        has_message(lines, "log-before")
    });

    let mut child = functions(
        server.socket_path(),
        &["logs", "levels", "--follow", "--json", "--level", "info"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("failed to start functions logs --follow");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |message: &str| {
        let deadline = Instant::now() + DEADLINE;
        while !seen.iter().any(|l: &Value| l["message"] == message) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("--follow never printed {message:?}; got {seen:?}"));
            seen.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    };

    // What was stored before it started, then what comes after.
    wait_for("log-before");
    invoke(&server, "/functions/levels?m=after");
    wait_for("log-after");
    wait_for("error-after");
    assert!(
        seen.iter().all(|l| l["level"] != "debug"),
        "--level applies while following: {seen:?}"
    );

    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap();
}

#[test]
fn a_flood_neither_stalls_others_nor_escapes_its_budget() {
    let server = start(
        Server::builder()
            .function("flood.ts", FLOOD)
            .function("hello.ts", HELLO)
            .config("invocation_timeout", "120s"),
    );
    invoke(&server, "/functions/hello");

    // The flood prints at least 50 MB, for at least two seconds.
    let addr = server.addr();
    let flood = thread::spawn(move || {
        let request = Request::get("/functions/flood?mb=50&ms=2000");
        crate::support::http::send(addr, &request).expect("the flood answers")
    });
    wait_for_lines(&server, &["flood", "--limit", "1"], |lines| {
        !lines.is_empty()
    });

    let mut during = Vec::new();
    while !flood.is_finished() {
        let response = server.get("/functions/hello");
        assert_eq!(response.status, 200, "{}", response.text());
        during.push(response.total);
    }
    let flood = flood.join().unwrap();
    assert_eq!(flood.status, 200, "{}", flood.text());
    let printed: u64 = flood.text().trim().parse().unwrap();
    let slowest = during.iter().max().copied().unwrap_or_default();
    eprintln!(
        "flood printed {printed} bytes; {} hello invocations during it, slowest {slowest:?}",
        during.len()
    );
    assert!(printed >= 50_000_000);
    assert!(
        during.len() >= 3,
        "too few invocations overlapped the flood"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "hello took {slowest:?} during the flood"
    );

    // The first 1M of the flood is kept, then one notice tells what was dropped.
    let id = flood.header("x-invocation-id").unwrap();
    let kept = logs_json(&server, &["flood", "--invocation", &id, "--limit", "10000"]);
    let kept = kept["logs"].as_array().unwrap();
    let notice = kept.last().unwrap();
    assert_eq!(
        (&notice["stream"], &notice["level"]),
        (&"notice".into(), &"warn".into())
    );
    let text = notice["message"].as_str().unwrap();
    assert!(text.starts_with("output truncated: "), "{text}");
    let stored: usize = kept[..kept.len() - 1]
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    assert!(stored <= 1 << 20 && stored > 1 << 19, "{stored} bytes kept");

    let records = logs_json(&server, &["flood", "--records", "--invocation", &id]);
    let record = &records["records"][0];
    let dropped = record["lines_dropped"].as_u64().unwrap();
    assert_eq!(
        dropped * 999 + stored as u64,
        printed / 1000 * 999,
        "{record}"
    );
    assert!(text.contains(&format!("{dropped} lines")), "{text}");
}

#[test]
fn history_survives_a_restart_with_records_and_jsonl_files() {
    let data = TempDir::new().unwrap();
    let server = start(
        Server::builder()
            .function("levels.ts", LEVELS)
            .data_dir(data.path()),
    );
    let first = invoke(&server, "/functions/levels?m=kept");
    let second = invoke(&server, "/functions/levels?m=warm");
    wait_for_lines(&server, &["levels"], |lines| has_message(lines, "log-warm"));

    // One record per invocation: status, outcome, cold start, duration, the worker.
    let reply = logs_json(&server, &["levels", "--records"]);
    let records = reply["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    let (cold, warm) = (&records[0], &records[1]);
    assert_eq!(
        (&cold["invocation"], &warm["invocation"]),
        (&first.clone().into(), &second.clone().into())
    );
    for record in records {
        assert_eq!(
            (&record["status"], &record["outcome"]),
            (&200.into(), &"ok".into())
        );
        assert!(record["duration_ms"].as_f64().unwrap() > 0.0, "{record}");
        assert!(record["worker_pid"].as_u64().is_some(), "{record}");
        assert!(
            record["peak_rss_bytes"].as_u64().unwrap() > 1 << 20,
            "{record}"
        );
    }
    assert_eq!(
        (&cold["cold"], &warm["cold"]),
        (&true.into(), &false.into())
    );
    assert!(cold["init_ms"].as_f64().unwrap() > 0.0, "{cold}");

    // Lines of an invocation that ends just before shutdown are kept too.
    let last = invoke(&server, "/functions/levels?m=last");
    server.stop();

    // The day's JSONL file holds every line and record, one JSON object each.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let file = data
        .path()
        .join("logs")
        .join(functions::store::logs::jsonl_file_name(now));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let objects: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let line = line_with(&objects, "log-kept");
    assert_eq!(
        (&line["type"], &line["invocation"]),
        (&"log".into(), &first.clone().into())
    );
    let record = objects
        .iter()
        .find(|o| o["type"] == "invocation" && o["invocation"] == last.as_str());
    assert!(
        record.is_some(),
        "no record of {last} in {}",
        file.display()
    );

    // A restart on the same data shows the lines from before, and goes on numbering.
    let server = start(
        Server::builder()
            .without_functions_dir()
            .data_dir(data.path()),
    );
    let reply = logs_json(&server, &["levels", "--limit", "1000"]);
    let lines = reply["logs"].as_array().unwrap();
    for message in ["log-kept", "log-last", "stdout-last", "stderr-last"] {
        assert!(has_message(lines, message), "{message} lost: {lines:?}");
    }
    assert_eq!(line_with(lines, "log-kept")["invocation"], first.as_str());
    let records = logs_json(&server, &["levels", "--records", "--invocation", &last]);
    assert_eq!(records["records"].as_array().unwrap().len(), 1, "{records}");

    let before = reply["last_id"].as_i64().unwrap();
    invoke(&server, "/functions/levels?m=again");
    let again = wait_for_lines(&server, &["levels"], |lines| {
        has_message(lines, "log-again")
    });
    assert!(line_with(&again, "log-again")["id"].as_i64().unwrap() > before);
}

#[test]
fn a_thrown_error_is_in_the_functions_logs_with_its_stack_and_invocation() {
    let source = "export default () => { throw new RangeError('marker-of-the-throw'); };";
    let server = start(Server::builder().function("thrower.ts", source));
    let response = server.get("/functions/thrower");
    assert_eq!(response.status, 500, "{}", response.text());
    let id = response
        .header("x-invocation-id")
        .expect("an invocation id");

    let lines = wait_for_lines(&server, &["thrower"], |lines| {
        lines.iter().any(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("marker-of-the-throw"))
        })
    });
    let line = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("marker-of-the-throw"))
        })
        .unwrap();
    assert_eq!(
        (&line["level"], &line["invocation"]),
        (&"error".into(), &Value::from(id.as_str()))
    );
    let message = line["message"].as_str().unwrap();
    assert!(
        message.starts_with("Uncaught RangeError: marker-of-the-throw"),
        "{message}"
    );
    assert!(message.contains("thrower"), "no stack in {message}");
}
