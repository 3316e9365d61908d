//! The gateway's error answers, each a JSON `{"error":{"code","message"}}` with its
//! status: timeout, thrown error, crashed worker, unknown function, failed deploy, body
//! too large and full queue. After each, the function must serve again.

use std::thread;
use std::time::{Duration, Instant};

use super::with_functions;
use crate::support::{assert_error, Request, Server};

#[test]
fn never_resolving_function_gets_504_after_the_timeout_and_the_next_call_succeeds() {
    let server = with_functions(&["hang.ts"])
        .config("invocation_timeout", "1s")
        .start();

    let started = Instant::now();
    let response = server.get("/functions/hang");
    let took = started.elapsed();
    assert_error(&response, 504, "timeout");
    let window = Duration::from_millis(900)..Duration::from_secs(3);
    assert!(
        window.contains(&took),
        "504 after {took:?}, expected about 1 s"
    );

    let next = server.get("/functions/hang/ok");
    assert_eq!((next.status, next.text().as_str()), (200, "ok\n"));
}

#[test]
fn throwing_function_gets_500_with_its_message_and_the_next_call_succeeds() {
    let server = with_functions(&["throws.ts"]).start();

    let response = server.get("/functions/throws");
    assert_error(&response, 500, "function_error");
    let message = response.json()["error"]["message"].to_string();
    assert!(
        message.contains("deliberate failure from throws.ts"),
        "message: {message}"
    );
    let logged = server.wait_for_log("deliberate failure from throws.ts", Duration::from_secs(5));
    assert!(
        logged,
        "the error is not in the log:\n{}",
        server.logs_tail(4000)
    );

    let next = server.get("/functions/throws/ok");
    assert_eq!((next.status, next.text().as_str()), (200, "ok\n"));
}

#[test]
fn unknown_function_gets_404_not_found() {
    let server = with_functions(&["hello.ts"]).start();

    let response = server.get("/functions/no-such-function/sub?x=1");

    assert_error(&response, 404, "not_found");
    assert!(response
        .header("x-invocation-id")
        .is_some_and(|id| !id.is_empty()));
}

#[test]
fn syntax_error_fails_that_deploy_only_and_logs_the_compiler_message() {
    let server = with_functions(&["hello.ts", "broken.ts"]).start();
    let compiler_says = r#"Expected ")" but found ";""#;

    let broken = server.get("/functions/broken");
    assert_error(&broken, 500, "not_deployed");
    let message = broken.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Build output (source lines, paths) stays in the log unless log_level is debug.
    assert!(
        !message.contains(compiler_says) && message.contains("server log"),
        "message: {message}"
    );

    let logs = server.logs();
    assert!(
        logs.contains(compiler_says) && logs.contains("broken.ts"),
        "logs:\n{logs}"
    );
    let hello = server.get("/functions/hello");
    assert_eq!(
        (hello.status, hello.text().as_str()),
        (200, "hello world\n")
    );
}

#[test]
fn body_over_max_body_size_gets_413() {
    let server = with_functions(&["echo-json.ts"])
        .config("max_body_size", "1M")
        .start();
    let big = vec![b' '; 2 * 1024 * 1024];
    let post =
        || Request::new("POST", "/functions/echo-json").header("Content-Type", "application/json");

    let response = server.call(&post().body(big.clone()));
    assert_error(&response, 413, "payload_too_large");

    let pieces = big.chunks(512 * 1024).map(<[u8]>::to_vec).collect();
    let response = server.call(&post().chunked(pieces));
    assert_error(&response, 413, "payload_too_large");

    let small = server.call(&post().body(r#"{"fits":true}"#));
    assert_eq!(small.status, 200, "body: {}", small.text());
}

#[test]
fn crashed_worker_gets_502_and_a_fresh_worker_serves_the_next_call() {
    let source = r#"export default (req: Request) => {
  if (!new URL(req.url).pathname.endsWith("/ok")) process.exit(3);
  return new Response("ok\n");
};"#;
    let server = Server::builder().function("exits.ts", source).start();

    let response = server.get("/functions/exits");
    assert_error(&response, 502, "worker_crashed");

    let next = server.get("/functions/exits/ok");
    assert_eq!((next.status, next.text().as_str()), (200, "ok\n"));
}

#[test]
fn full_queue_gets_429_with_retry_after() {
    let server = with_functions(&["slow.ts"])
        .config("max_workers", "1")
        .config("queue_depth", "1")
        .start();

    // Eight calls of one second at once: one worker and one queue slot cannot hold them.
    let responses: Vec<_> = thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| s.spawn(|| server.get("/functions/slow?ms=1000")))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });

    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "statuses: {statuses:?}"
    );
    for response in responses.iter().filter(|r| r.status != 200) {
        assert_error(response, 429, "queue_full");
        let retry = response.header("retry-after").unwrap_or_default();
        assert!(retry.parse::<u64>().is_ok(), "Retry-After: {retry:?}");
    }
}

/// Regression: a function that detached a child (setsid) holding the worker's stdout and
/// stderr, then hung, never got its 504: the server waited for those pipes to close.
#[test]
fn timeout_answers_even_when_a_detached_child_keeps_the_worker_pipes_open() {
    const MARK: &str = "47.3125"; // a sleep duration no other test uses
    let source = format!(
        "export default () => {{ Bun.spawn([\"setsid\", \"sleep\", \"{MARK}\"], \
         {{ stdout: \"inherit\", stderr: \"inherit\" }}); return new Promise(() => {{}}); }}"
    );
    let mut server = Server::builder()
        .function("detach.ts", &source)
        .config("invocation_timeout", "1s")
        .config("shutdown_grace", "2s")
        .start();

    let started = Instant::now();
    let response = server.get("/functions/detach");
    assert_error(&response, 504, "timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "504 after {:?}",
        started.elapsed()
    );
    assert_eq!(server.get("/health").status, 200);

    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(
        status.code().is_some(),
        "server did not exit by itself: {status}"
    );
    kill_sleepers(MARK);
}

/// Kills the `sleep MARK` processes a test's function left behind (they left its group).
fn kill_sleepers(mark: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if crate::support::procs::cmdline(pid as u32) == format!("sleep {mark}") {
            // SAFETY: kill(2) on a process this test's function started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn a_worker_over_its_memory_limit_is_replaced_and_its_caller_gets_502() {
    // Each call keeps 64 MiB more; ?wait=1 then holds the invocation open.
    let source = "const keep: Uint8Array[] = [];
        export default async (r: Request) => {
          keep.push(new Uint8Array(64 << 20).fill(7));
          if (new URL(r.url).searchParams.get('wait')) await new Promise((ok) => setTimeout(ok, 5000));
          return new Response(String(keep.length));
        };";
    let server = Server::builder()
        .function("hog.ts", source)
        .config("memory_limit", "128M")
        .config("invocation_timeout", "10s")
        .start();

    // A worker starts near 30 MiB: with 64 MiB kept it is under the limit, with 128 over.
    assert_eq!(server.get("/functions/hog").text(), "1");

    // The second allocation crosses the limit while the invocation waits: it is cut off.
    let started = Instant::now();
    let response = server.get("/functions/hog?wait=1");
    assert_error(&response, 502, "worker_crashed");
    let message = response.json()["error"]["message"].to_string();
    assert!(message.contains("memory limit"), "message: {message}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "502 after {:?}",
        started.elapsed()
    );

    // A fresh worker serves the next call.
    assert_eq!(server.get("/functions/hog").text(), "1");
}

#[test]
fn a_function_that_cannot_start_is_backed_off_not_respawned_per_request() {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let marker_path = marker.path().to_path_buf();
    let source = "import { existsSync } from 'node:fs';
        if (existsSync(process.env.BREAK_MARKER!)) throw new Error('broken at start');
        export default () => new Response('up');";
    std::fs::remove_file(&marker_path).unwrap();
    let marker_text = marker_path.display().to_string();
    let server = Server::builder()
        .config("log_level", "debug") // error bodies then carry the start error
        .function("fragile.ts", source)
        .function_env("fragile", &[("BREAK_MARKER", marker_text.as_str())])
        .start();

    // Deployed while healthy; from now on every start throws.
    std::fs::write(&marker_path, "x").unwrap();
    for _ in 0..20 {
        let response = server.get("/functions/fragile");
        assert_error(&response, 500, "start_failed");
    }
    let last = server.get("/functions/fragile").json()["error"]["message"].to_string();
    assert!(
        last.contains("in a row") && last.contains("broken at start"),
        "{last}"
    );
    let starts = server
        .logs()
        .matches("worker failed to start function=fragile")
        .count();
    assert!(
        (1..=5).contains(&starts),
        "{starts} failed starts for 21 requests"
    );

    // Once it can start again, it serves after the back-off.
    std::fs::remove_file(&marker_path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = server.get("/functions/fragile");
        if response.status == 200 {
            assert_eq!(response.text(), "up");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {}",
            response.text()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Sends raw bytes on a new connection and returns the status line's code.
fn raw_status(server: &Server, bytes: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

#[test]
fn ambiguous_framing_and_oversized_headers_are_refused_before_the_function() {
    let server = with_functions(&["hello.ts"]).start();
    let smuggle = b"POST /functions/hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    assert_eq!(raw_status(&server, smuggle), 400);
    let two_lengths = b"POST /functions/hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\
        Content-Length: 5\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&server, two_lengths), 400);
    let gzip = b"POST /functions/hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\
        Connection: close\r\n\r\n0\r\n\r\n";
    assert_eq!(raw_status(&server, gzip), 400);

    let mut many = Request::get("/functions/hello");
    for i in 0..201 {
        many = many.header(&format!("x-h-{i}"), "v");
    }
    assert_error(&server.call(&many), 431, "headers_too_large");
    let big = Request::get("/functions/hello").header("x-big", &"b".repeat(70 << 10));
    assert_error(&server.call(&big), 431, "headers_too_large");

    // The function still serves; only this one call reached it (the access line is
    // written just after the answer, so wait for it).
    assert_eq!(server.get("/functions/hello").status, 200);
    assert!(server.wait_for_log("status=200 function=hello", Duration::from_secs(5)));
    assert_eq!(
        server.logs().matches("status=200 function=hello").count(),
        1
    );
}

/// Regression: a lone surrogate (half an emoji) in a thrown message or a log line made the
/// worker's reply unreadable, so the caller waited for the timeout.
#[test]
fn lone_surrogates_in_errors_and_logs_do_not_stall_the_invocation() {
    let source = r#"export default (r: Request) => {
        console.log("half an emoji \uD83D");
        if (new URL(r.url).searchParams.has("throw")) throw new Error("bad \uD800 text");
        return new Response("fine", { statusText: "OK \uD800" });
    };"#;
    let server = Server::builder()
        .function("surrogate.ts", source)
        .config("invocation_timeout", "5s")
        .start();

    let started = Instant::now();
    assert_eq!(server.get("/functions/surrogate").text(), "fine");
    let thrown = server.get("/functions/surrogate?throw");
    assert_error(&thrown, 500, "function_error");
    assert!(
        thrown.text().contains("bad \u{fffd} text"),
        "{}",
        thrown.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(server.wait_for_log("half an emoji \u{fffd}", Duration::from_secs(5)));
}
