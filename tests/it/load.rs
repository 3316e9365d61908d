//! The gateway under concurrent load: a burst of new keep-alive connections is answered in
//! full, and callers of a function that hangs do not hold up the callers of another one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Server;

/// Far above any answer on a healthy server, far below a test timeout.
const STALL: Duration = Duration::from_secs(12);

/// Sends `GET path` on `stream` and reads one answer; the status, or why there is none.
fn exchange(
    stream: &mut BufReader<TcpStream>,
    addr: SocketAddr,
    path: &str,
) -> Result<u16, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream
        .get_mut()
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut status_line = String::new();
    stream
        .read_line(&mut status_line)
        .map_err(|e| format!("no answer: {e}"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream
            .read_line(&mut line)
            .map_err(|e| format!("headers: {e}"))?;
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|e| format!("length: {e}"))?;
            }
        }
    }
    let mut body = vec![0; length];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

fn keep_alive(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(STALL)).unwrap();
    stream.set_write_timeout(Some(STALL)).unwrap();
    BufReader::new(stream)
}

#[test]
fn a_burst_of_new_keep_alive_connections_is_answered_in_full() {
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 5;
    let source = r#"export default () => new Response("hi\n");"#;
    let server = Server::builder()
        .function("hi.ts", source)
        .config("min_warm", "1")
        .start();
    let addr = server.addr();
    assert_eq!(server.get("/functions/hi").status, 200);

    // Each round: CLIENTS connections opened at once, each sending three requests and
    // holding its connection open until every client is done, as browsers and fetch do.
    for round in 0..ROUNDS {
        let start = Arc::new(Barrier::new(CLIENTS));
        let done = Arc::new(Barrier::new(CLIENTS));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (start, done) = (Arc::clone(&start), Arc::clone(&done));
                thread::spawn(move || {
                    start.wait();
                    let mut conn = keep_alive(addr);
                    let mut outcome = Vec::new();
                    for _ in 0..3 {
                        let began = Instant::now();
                        outcome.push(
                            exchange(&mut conn, addr, "/functions/hi")
                                .map(|s| (s, began.elapsed())),
                        );
                    }
                    done.wait();
                    outcome
                })
            })
            .collect();
        let outcomes: Vec<_> = clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        let failed: Vec<_> = outcomes
            .iter()
            .filter(|o| !matches!(o, Ok((200, _))))
            .collect();
        assert!(
            failed.is_empty(),
            "round {round}: {} of {} requests failed, the first: {:?}",
            failed.len(),
            outcomes.len(),
            failed[0]
        );
    }
}

#[test]
fn callers_waiting_for_a_hung_function_do_not_hold_up_another_function() {
    // Four gateway threads kept, twenty callers of `hang`: with a fixed pool of four,
    // `hi` would wait in tiny_http's queue until the hung calls time out.
    let server = Server::builder()
        .function("hang.ts", "export default () => new Promise(() => {});")
        .function("hi.ts", r#"export default () => new Response("hi\n");"#)
        .config("http_threads", "4")
        .config("max_workers", "2")
        .config("invocation_timeout", "8s")
        .start();
    let addr = server.addr();
    assert_eq!(server.get("/functions/hi").status, 200);

    let hung: Vec<_> = (0..20)
        .map(|_| {
            let mut conn = keep_alive(addr);
            let request = format!("GET /functions/hang HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            conn.get_mut().write_all(request.as_bytes()).unwrap();
            conn
        })
        .collect();
    // Once two run and eighteen wait in hang's queue, the gateway has taken all twenty.
    // With a fixed pool of four, /health itself would wait behind them.
    let taken = wait_until(Duration::from_secs(10), || {
        let health = server.get("/health").json();
        let hang = &health["functions"][0];
        hang["name"] == "hang" && hang["queued"] == 18
    });

    let began = Instant::now();
    let hi = server.get("/functions/hi");
    let took = began.elapsed();
    assert_eq!(hi.status, 200, "{}", hi.text());
    assert!(
        taken,
        "hang's queue never held 18 calls:\n{}",
        server.logs_tail(3000)
    );
    assert!(
        took < Duration::from_secs(3),
        "hi took {took:?} behind the hung calls"
    );
    drop(hung);
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn near_the_thread_limit_callers_that_would_queue_get_429_and_others_are_served() {
    // 8 threads at most, 2 kept in reserve: once 6 are busy, a call that would have to
    // wait in a queue gets 429 at once instead of taking one of the last threads.
    let server = Server::builder()
        .function("hang.ts", "export default () => new Promise(() => {});")
        .function("hi.ts", r#"export default () => new Response("hi\n");"#)
        .config("http_threads", "4")
        .config("http_max_threads", "8")
        .config("max_workers", "1")
        .config("invocation_timeout", "8s")
        .start();
    let addr = server.addr();
    assert_eq!(server.get("/functions/hi").status, 200);

    let callers: Vec<_> = (0..30)
        .map(|_| {
            thread::spawn(move || {
                let mut conn = keep_alive(addr);
                exchange(&mut conn, addr, "/functions/hang")
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let began = Instant::now();
    let hi = server.get("/functions/hi");
    let took = began.elapsed();
    assert_eq!(hi.status, 200, "{}", hi.text());
    assert!(took < Duration::from_secs(2), "hi took {took:?}");

    let statuses: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    let refused = statuses.iter().filter(|s| matches!(s, Ok(429))).count();
    let timed_out = statuses.iter().filter(|s| matches!(s, Ok(504))).count();
    assert!(refused >= 20, "{statuses:?}");
    assert_eq!(refused + timed_out, 30, "{statuses:?}");
}
