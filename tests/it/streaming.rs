//! Streamed response bodies through the gateway: chunks reach the client as the function
//! produces them, a client that goes away cancels the function's stream and frees the
//! worker, the deadline and `max_response_size` cut a stream, a client that does not read
//! holds the worker's stream back instead of filling the server's memory, and HEAD and
//! HTTP/1.0 get the whole body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Server;

/// A function with several streaming routes; `/state` tells its pid and how many of its
/// streams were cancelled.
const STREAMS: &str = r#"let cancelled = 0;
const enc = new TextEncoder();
export default (r: Request) => {
    const url = new URL(r.url);
    const path = url.pathname.replace(/^\/functions\/streams/, "");
    const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
    if (path === "/events") {
        return new Response(new ReadableStream({
            async start(c) {
                for (let i = 1; i <= 4; i++) {
                    c.enqueue(enc.encode(`data: ${i}\n\n`));
                    if (i < 4) await sleep(300);
                }
                c.close();
            },
        }), { headers: { "content-type": "text/event-stream" } });
    }
    if (path === "/endless") {
        const every = Number(url.searchParams.get("every") ?? "20");
        const size = Number(url.searchParams.get("size") ?? "16");
        return new Response(new ReadableStream({
            async pull(c) { await sleep(every); c.enqueue(new Uint8Array(size).fill(97)); },
            cancel() { cancelled++; },
        }));
    }
    if (path === "/big") {
        const total = Number(url.searchParams.get("mib")) << 20;
        let sent = 0;
        return new Response(new ReadableStream({
            pull(c) {
                if (sent >= total) return c.close();
                c.enqueue(new Uint8Array(256 << 10).fill(98));
                sent += 256 << 10;
            },
        }));
    }
    if (path === "/quiet") {
        return new Response(new ReadableStream({
            start(c) { c.enqueue(enc.encode("first\n")); },
            cancel() { cancelled++; },
        }));
    }
    if (path === "/generator") {
        return new Response(async function* () { yield "one "; await sleep(10); yield "two"; }());
    }
    return Response.json({ pid: process.pid, cancelled });
};"#;

fn server(extra: &[(&str, &str)]) -> Server {
    let mut builder = Server::builder()
        .function("streams.ts", STREAMS)
        .config("max_workers", "1");
    for (key, value) in extra {
        builder = builder.config(key, value);
    }
    builder.start()
}

/// A response read off a raw connection: status, headers, and the body's chunks with
/// the time each arrived. `complete` is false when the chunked framing broke or ended
/// early.
struct Chunked {
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<(Duration, Vec<u8>)>,
    complete: bool,
}

impl Chunked {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    fn body(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|(_, c)| c.clone()).collect()
    }
}

fn open(addr: SocketAddr, path: &str, version: &str, method: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!("{method} {path} {version}\r\nHost: {addr}\r\n\r\n");
    (&stream).write_all(request.as_bytes()).unwrap();
    BufReader::new(stream)
}

fn read_head(conn: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            return (status, headers);
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

/// Reads a chunked response, at most `max_chunks` chunks.
fn read_chunked(conn: &mut BufReader<TcpStream>, max_chunks: usize) -> Chunked {
    let start = Instant::now();
    let (status, headers) = read_head(conn);
    let mut chunked = Chunked {
        status,
        headers,
        chunks: Vec::new(),
        complete: false,
    };
    while chunked.chunks.len() < max_chunks {
        let mut size_line = String::new();
        if conn.read_line(&mut size_line).unwrap_or(0) == 0 {
            return chunked;
        }
        let Ok(size) = usize::from_str_radix(size_line.trim_end(), 16) else {
            return chunked;
        };
        let mut data = vec![0; size + 2];
        if conn.read_exact(&mut data).is_err() || !data.ends_with(b"\r\n") {
            return chunked;
        }
        if size == 0 {
            chunked.complete = true;
            return chunked;
        }
        data.truncate(size);
        chunked.chunks.push((start.elapsed(), data));
    }
    chunked
}

#[test]
fn events_reach_the_client_as_they_are_produced() {
    let server = server(&[]);
    let mut conn = open(
        server.addr(),
        "/functions/streams/events",
        "HTTP/1.1",
        "GET",
    );
    let response = read_chunked(&mut conn, 100);
    assert_eq!(response.status, 200);
    assert!(response.complete, "the stream did not end properly");
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert!(response.header("x-invocation-id").is_some());
    let body = String::from_utf8(response.body()).unwrap();
    assert_eq!(body, "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n");
    let first = response.chunks.first().unwrap().0;
    let last = response.chunks.last().unwrap().0;
    assert!(
        last - first >= Duration::from_millis(800),
        "events were not spread out: first at {first:?}, last at {last:?}"
    );

    // The same connection serves the next request (keep-alive after a stream).
    let request = "GET /functions/streams/generator HTTP/1.1\r\nHost: x\r\n\r\n";
    conn.get_mut().write_all(request.as_bytes()).unwrap();
    let generator = read_chunked(&mut conn, 100);
    assert!(generator.complete);
    assert_eq!(generator.body(), b"one two");
}

#[test]
fn a_client_that_goes_away_cancels_the_stream_and_frees_the_worker() {
    let server = server(&[]);
    let before = server.get("/functions/streams/state").json();
    let mut conn = open(
        server.addr(),
        "/functions/streams/endless",
        "HTTP/1.1",
        "GET",
    );
    let response = read_chunked(&mut conn, 3);
    assert_eq!((response.status, response.chunks.len()), (200, 3));
    drop(conn);

    // One worker only: the next call is served once the cancelled stream let it go.
    let began = Instant::now();
    let mut state = server.get("/functions/streams/state").json();
    while state["cancelled"] == 0 && began.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(20));
        state = server.get("/functions/streams/state").json();
    }
    assert_eq!(state["cancelled"], 1, "the stream's cancel did not run");
    assert_eq!(state["pid"], before["pid"], "the worker was replaced");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "took {:?}",
        began.elapsed()
    );
    let logged = server.wait_for_log(
        "cancelling a response stream function=streams",
        Duration::from_secs(5),
    );
    assert!(logged, "{}", server.logs_tail(3000));
}

#[test]
fn the_deadline_and_the_size_limit_cut_a_stream_and_the_client_sees_it_broken() {
    let server = server(&[("invocation_timeout", "1s"), ("max_response_size", "1M")]);

    let began = Instant::now();
    let mut conn = open(
        server.addr(),
        "/functions/streams/endless?every=50",
        "HTTP/1.1",
        "GET",
    );
    let timed_out = read_chunked(&mut conn, 10_000);
    assert_eq!(timed_out.status, 200);
    assert!(
        !timed_out.complete,
        "a stream past its deadline looked complete"
    );
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(server.wait_for_log("response stream cut", Duration::from_secs(5)));

    let mut conn = open(
        server.addr(),
        "/functions/streams/endless?every=1&size=65536",
        "HTTP/1.1",
        "GET",
    );
    let too_big = read_chunked(&mut conn, 10_000);
    assert_eq!(too_big.status, 200);
    assert!(
        !too_big.complete,
        "a stream past max_response_size looked complete"
    );
    assert!(
        too_big.body().len() <= 1 << 20,
        "{} bytes got through",
        too_big.body().len()
    );
    let logged = server.wait_for_log("max_response_size (1048576 bytes)", Duration::from_secs(5));
    assert!(logged, "{}", server.logs_tail(3000));

    // A worker that kept to its limit is kept; the one past its deadline was replaced,
    // and either way the function answers on.
    let state = server.get("/functions/streams/state");
    assert_eq!(state.status, 200);
}

#[test]
fn a_client_that_does_not_read_holds_the_stream_back_not_the_servers_memory() {
    let server = server(&[("max_response_size", "24M"), ("invocation_timeout", "60s")]);
    let rss = || crate::support::procs::rss_kib(server.pid());
    let before = rss();

    // `Connection: close`, so the end of the body is the end of the connection.
    let close = "HTTP/1.1\r\nConnection: close";
    let mut conn = open(server.addr(), "/functions/streams/big?mib=24", close, "GET");
    let (status, headers) = read_head(&mut conn);
    assert_eq!(status, 200);
    assert!(
        headers.contains(&("Connection".into(), "close".into())),
        "{headers:?}"
    );
    // Not reading: the socket buffers fill, the acks stop, the worker's stream waits.
    thread::sleep(Duration::from_secs(2));
    let stalled = rss();

    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    let received = rest.len();
    assert!(
        received > 24 << 20,
        "only {received} bytes of the 24 MiB body (with chunk framing) arrived"
    );
    assert!(
        stalled < before + 16 * 1024,
        "server RSS grew from {before} KiB to {stalled} KiB while the client did not read"
    );
}

#[test]
fn head_gets_the_head_at_once_and_http_1_0_the_body_until_the_connection_closes() {
    let server = server(&[]);
    let mut conn = open(
        server.addr(),
        "/functions/streams/generator",
        "HTTP/1.0",
        "GET",
    );
    let (status, headers) = read_head(&mut conn);
    let mut body = Vec::new();
    conn.read_to_end(&mut body).unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"one two"[..]));
    let named = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    assert!(
        !named("content-length") && !named("transfer-encoding"),
        "{headers:?}"
    );

    // HEAD of an endless stream: the head at once, and the worker (the only one) free.
    let began = Instant::now();
    let mut conn = open(
        server.addr(),
        "/functions/streams/endless",
        "HTTP/1.1",
        "HEAD",
    );
    let (status, _) = read_head(&mut conn);
    assert_eq!(status, 200);
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    let state = server.get("/functions/streams/state").json();
    assert_eq!(
        state["cancelled"], 1,
        "the endless stream was not cancelled"
    );
}

#[test]
fn a_client_that_leaves_a_quiet_stream_frees_the_worker_within_seconds() {
    let server = server(&[]);
    let mut conn = open(server.addr(), "/functions/streams/quiet", "HTTP/1.1", "GET");
    let first = read_chunked(&mut conn, 1);
    assert_eq!(first.body(), b"first\n");
    // The function sends nothing more; the client leaves.
    let left = Instant::now();
    drop(conn);

    // One worker only: it answers again once the quiet stream noticed the client left.
    let state = server.get("/functions/streams/state");
    let took = left.elapsed();
    assert_eq!(state.status, 200);
    assert_eq!(
        state.json()["cancelled"],
        1,
        "the quiet stream was not cancelled"
    );
    assert!(
        took < Duration::from_secs(5),
        "the worker was held {took:?}"
    );

    // An HTTP/1.0 keep-alive client waits for the whole body (it needs a length); leaving
    // frees the worker the same way.
    let keep_alive = "HTTP/1.0\r\nConnection: keep-alive";
    let conn = open(server.addr(), "/functions/streams/quiet", keep_alive, "GET");
    thread::sleep(Duration::from_millis(500));
    let left = Instant::now();
    drop(conn);
    let state = server.get("/functions/streams/state");
    let took = left.elapsed();
    assert_eq!(
        state.json()["cancelled"],
        2,
        "the collected stream was not cancelled"
    );
    assert!(
        took < Duration::from_secs(5),
        "the worker was held {took:?}"
    );
}

#[test]
fn functions_invoke_writes_streamed_chunks_as_they_arrive() {
    use std::process::{Command, Stdio};
    let server = server(&[("invocation_timeout", "1s")]);
    let cli = |path: &str| {
        Command::new(env!("CARGO_BIN_EXE_functions"))
            .args(["invoke", "streams", "--path", path, "--socket"])
            .arg(server.socket_path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    let mut child = cli("/events");
    let started = Instant::now();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut events = Vec::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if line.starts_with("data: ") {
            events.push((started.elapsed(), line.trim_end().to_string()));
        }
        line.clear();
    }
    assert!(child.wait().unwrap().success());
    let names: Vec<&str> = events.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(names, ["data: 1", "data: 2", "data: 3", "data: 4"]);
    let spread = events[3].0 - events[0].0;
    assert!(
        spread >= Duration::from_millis(800),
        "printed all at once: {events:?}"
    );

    // A stream cut by the deadline: what came is printed, then the error, exit code 3.
    let cut = cli("/endless?every=50").wait_with_output().unwrap();
    assert_eq!(cut.status.code(), Some(3), "{cut:?}");
    assert!(!cut.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&cut.stderr);
    assert!(stderr.contains("was cut (timeout)"), "{stderr}");

    // A reader that stops early (`| head -c 10`): the CLI ends at its next write, and
    // the function's stream is cancelled, freeing the only worker.
    let mut head = cli("/endless?every=100");
    let mut first = [0u8; 10];
    head.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let began = Instant::now();
    let status = head.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let state = server.get("/functions/streams/state").json();
    assert_eq!(state["cancelled"], 1, "the stream was not cancelled");
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn the_ticker_example_of_the_docs_sends_its_events_half_a_second_apart() {
    let ticker = crate::support::manifest_dir().join("examples/ticker.ts");
    let server = Server::builder().copy_function(&ticker).start();
    let mut conn = open(
        server.addr(),
        "/functions/ticker?count=3",
        "HTTP/1.1",
        "GET",
    );
    let response = read_chunked(&mut conn, 100);
    assert!(response.complete);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let body = String::from_utf8(response.body()).unwrap();
    let expected = "event: tick\ndata: 1\n\nevent: tick\ndata: 2\n\nevent: tick\ndata: 3\n\n";
    assert_eq!(body, expected);
    let times: Vec<Duration> = response.chunks.iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), 3, "one chunk per event: {times:?}");
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(350), "{times:?}");
    }
}
