//! Faults of docs/reliability.md that the serve tests do not reach: an exception thrown
//! outside the handler, a response over max_response_size or the protocol limit, a native crash of Bun, the
//! reaping of a worker killed at its timeout, and SQLite after a SIGKILL mid-write.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{assert_error, procs, Server};

/// Generous: a first start builds the functions, and the machine may be busy.
const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn an_exception_thrown_after_the_answer_is_logged_and_the_worker_keeps_serving() {
    let source = r#"export default (r: Request) => {
        const q = new URL(r.url).searchParams;
        if (q.has("throw")) setTimeout(() => { throw new Error("late failure 5172"); }, 20);
        if (q.has("reject")) setTimeout(() => Promise.reject(new Error("late rejection 5172")), 20);
        return new Response(String(process.pid));
    };"#;
    let server = Server::builder().function("late.ts", source).start();
    // The deploy's trial worker has exited already; no other worker may.
    let exits = || server.logs().matches("worker exited function=late").count();
    let exited_before = exits();

    let first = server.get("/functions/late?throw");
    assert_eq!(first.status, 200, "{}", first.text());
    let logged = server.wait_for_log("Uncaught exception: Error: late failure 5172", DEADLINE);
    assert!(logged, "not logged:\n{}", server.logs_tail(4000));

    let second = server.get("/functions/late?reject");
    assert_eq!(second.status, 200, "{}", second.text());
    let logged = server.wait_for_log(
        "Unhandled promise rejection: Error: late rejection 5172",
        DEADLINE,
    );
    assert!(logged, "not logged:\n{}", server.logs_tail(4000));

    // The same worker (same pid) answers on, and none has exited.
    let third = server.get("/functions/late");
    assert_eq!(third.status, 200, "{}", third.text());
    assert_eq!(
        (second.text(), third.text()),
        (first.text(), first.text()),
        "the worker was replaced"
    );
    assert_eq!(exits(), exited_before, "{}", server.logs_tail(4000));
}

#[test]
fn a_response_over_max_response_size_gets_502_and_the_same_worker_serves_on() {
    // A whole body is checked once read; a stream is read until it passes the limit and
    // then cancelled, so an endless one ends too. The worker stays (same pid).
    let source = r#"let cancelled = 0;
    export default (r: Request) => {
        const path = new URL(r.url).pathname;
        if (path.endsWith("/whole")) return new Response(new Uint8Array((1 << 20) + 1));
        if (path.endsWith("/exact")) return new Response(new Uint8Array(1 << 20));
        if (path.endsWith("/endless")) {
            return new Response(new ReadableStream({
                pull(c) { c.enqueue(new Uint8Array(64 << 10)); },
                cancel() { cancelled++; console.log("stream cancelled"); },
            }));
        }
        return Response.json({ pid: process.pid, cancelled });
    };"#;
    let server = Server::builder()
        .function("big.ts", source)
        .config("max_response_size", "1M")
        .start();
    let pid = server.get("/functions/big").json()["pid"].clone();

    let response = server.get("/functions/big/whole");
    assert_error(&response, 502, "response_too_large");
    let message = response.json()["error"]["message"].to_string();
    assert!(
        message.contains("max_response_size (1048576 bytes)"),
        "{message}"
    );

    // HTTP/1.0 with keep-alive has a stream collected before anything is sent, so the
    // error can still be the status (else it is streamed and cut: tests/it/streaming.rs).
    let mut conn = std::net::TcpStream::connect(server.addr()).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let request = "GET /functions/big/endless HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    conn.write_all(request.as_bytes()).unwrap();
    let mut answer = vec![0; 4096];
    let n = conn.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.0 502 "), "{answer}");
    assert!(answer.contains("response_too_large"), "{answer}");
    let exact = server.get("/functions/big/exact");
    assert_eq!((exact.status, exact.body.len()), (200, 1 << 20));

    let after = server.get("/functions/big").json();
    assert_eq!(after["pid"], pid, "the worker was replaced");
    assert_eq!(
        after["cancelled"], 1,
        "the endless stream was not cancelled"
    );
    let logged = server.wait_for_log("response over max_response_size function=big", DEADLINE);
    assert!(logged, "not logged:\n{}", server.logs_tail(4000));
}

#[test]
fn a_protocol_line_over_its_cap_gets_502_saying_too_large_and_the_next_call_succeeds() {
    // 100 MiB of header value makes a protocol line over its 96 MiB cap: the worker is
    // cut off (the body limit does not cover headers). The memory limit is raised so
    // the worker is cut off for the line, not for its RSS.
    let source = r#"export default (r: Request) => {
        if (new URL(r.url).pathname.endsWith("/ok")) return new Response("ok\n");
        return new Response("x", { headers: { "x-huge": "a".repeat(100 << 20) } });
    };"#;
    let server = Server::builder()
        .function("huge.ts", source)
        .config("memory_limit", "2G")
        .config("invocation_timeout", "60s")
        .start();

    let response = server.get("/functions/huge");
    assert_error(&response, 502, "worker_crashed");
    let message = response.json()["error"]["message"].to_string();
    assert!(message.contains("too large"), "message: {message}");
    let logged = server.wait_for_log("too large a response?", DEADLINE);
    assert!(logged, "not logged:\n{}", server.logs_tail(4000));
    drop(response);

    let next = server.get("/functions/huge/ok");
    assert_eq!((next.status, next.text().as_str()), (200, "ok\n"));
}

#[test]
fn a_native_crash_of_bun_gets_502_naming_the_signal_and_the_next_call_succeeds() {
    let source = r#"export default (r: Request) => {
        const path = new URL(r.url).pathname;
        if (path.endsWith("/segv")) process.kill(process.pid, "SIGSEGV");
        if (path.endsWith("/abort")) process.abort();
        return new Response("ok\n");
    };"#;
    let server = Server::builder().function("native.ts", source).start();

    for (path, signal) in [("segv", libc::SIGSEGV), ("abort", libc::SIGABRT)] {
        let response = server.get(&format!("/functions/native/{path}"));
        assert_error(&response, 502, "worker_crashed");
        let named = format!("killed by signal {signal}");
        let logged = server.wait_for_log(&named, DEADLINE);
        assert!(logged, "{named:?} not logged:\n{}", server.logs_tail(4000));

        let next = server.get("/functions/native");
        assert_eq!((next.status, next.text().as_str()), (200, "ok\n"));
    }
}

#[test]
fn a_worker_killed_at_its_timeout_leaves_no_zombie() {
    // The hanging call also starts a child, killed with the worker's group.
    let source = r#"export default (r: Request) => {
        if (new URL(r.url).pathname.endsWith("/ok")) return new Response("ok\n");
        Bun.spawn(["sleep", "31.4159"]);
        return new Promise(() => {});
    };"#;
    let server = Server::builder()
        .function("stuck.ts", source)
        .config("invocation_timeout", "1s")
        .start();

    for _ in 0..3 {
        assert_error(&server.get("/functions/stuck"), 504, "timeout");
        let next = server.get("/functions/stuck/ok");
        assert_eq!((next.status, next.text().as_str()), (200, "ok\n"));
    }
    assert!(server.wait_for_log("worker exited function=stuck", DEADLINE));

    // The reader thread reaps a killed worker once its stdout closes: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut zombies = procs::zombie_children_of(server.pid());
    while !zombies.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        zombies = procs::zombie_children_of(server.pid());
    }
    assert!(zombies.is_empty(), "zombie children: {zombies:?}");
    let sleepers: Vec<u32> = procs::descendants_of(server.pid())
        .into_iter()
        .filter(|&p| procs::cmdline(p) == "sleep 31.4159")
        .collect();
    assert!(
        sleepers.is_empty(),
        "children of killed workers: {sleepers:?}"
    );
}

#[test]
fn sqlite_stays_consistent_after_a_sigkill_during_a_log_flood() {
    let flood = r#"export default async () => {
        const line = "w".repeat(300);
        for (;;) {
            for (let i = 0; i < 200; i++) console.log(line);
            await new Promise((ok) => setTimeout(ok, 1));
        }
    };"#;
    let data = TempDir::new().unwrap();
    let mut server = Server::builder()
        .function("flood.ts", flood)
        .function("hello.ts", "export default () => new Response('hi');")
        .config("invocation_timeout", "60s")
        .config("log_invocation_max", "1G")
        .data_dir(data.path())
        .start();
    assert_eq!(server.get("/functions/hello").status, 200);

    // Two floods write logs.db (and the records and metrics go on) when the kill comes.
    let addr = server.addr();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(move || {
                let request = crate::support::Request::get("/functions/flood");
                crate::support::http::send(addr, &request)
            })
        })
        .collect();
    let logs_db = data.path().join("logs.db");
    let wal = data.path().join("logs.db-wal");
    let deadline = Instant::now() + DEADLINE;
    while file_size(&wal) + file_size(&logs_db) < 4 << 20 {
        assert!(Instant::now() < deadline, "logs.db did not grow");
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(500));
    server.signal(libc::SIGKILL);
    server.wait_exit(DEADLINE);
    for call in calls {
        assert!(call.join().unwrap().is_err(), "a flood got an answer");
    }
    drop(server);

    let server = Server::builder()
        .without_functions_dir()
        .data_dir(data.path())
        .start();
    assert!(server.wait_for_log("socket api listening on", DEADLINE));
    assert_eq!(server.get("/functions/hello").text(), "hi");
    let output = functions_cli(
        server.socket_path(),
        &["logs", "flood", "--limit", "5", "--json"],
    );
    let reply: serde_json::Value = serde_json::from_str(&output)
        .unwrap_or_else(|e| panic!("`functions logs` printed no JSON ({e}): {output}"));
    let lines = reply["logs"].as_array().cloned().unwrap_or_default();
    assert!(!lines.is_empty(), "no flood line survived: {reply}");

    for db in ["logs.db", "metrics.db", "metadata.db"] {
        let conn = rusqlite::Connection::open(data.path().join(db)).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap_or_else(|e| panic!("{db}: {e}"));
        assert_eq!(check, "ok", "{db}");
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// `functions ARGS --socket S`, killed past [`DEADLINE`]; its stdout, asserting success.
fn functions_cli(socket: &Path, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_functions"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args(args)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start the functions binary");
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("functions {args:?} still running after {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "functions {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

/// Helper-found: a worker killed while writing a reply left the cut-off line (with a
/// request's body in base64) in the function's logs as its output.
#[test]
fn a_protocol_line_cut_short_is_dropped_not_stored_as_output() {
    let source = r#"export default async () => {
        await Bun.write(Bun.stdout, '\n{"type":"chunk","id":"x","data":"U0VDUkVUNTE3Mg\n');
        console.log("visible 5172");
        return new Response("ok\n");
    };"#;
    let server = Server::builder().function("cut.ts", source).start();
    let response = server.get("/functions/cut");
    assert_eq!(response.status, 200, "{}", response.text());
    let dropped = server.wait_for_log("dropping a protocol message cut short", DEADLINE);
    assert!(dropped, "{}", server.logs_tail(3000));
    assert!(server.wait_for_log("visible 5172", DEADLINE));
    assert!(
        !server.logs().contains("U0VDUkVUNTE3Mg"),
        "{}",
        server.logs_tail(3000)
    );
}
