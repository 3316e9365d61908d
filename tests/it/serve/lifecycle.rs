//! Lifecycle tests of `functions serve`: restart on the same data, graceful SIGTERM,
//! refusal of a bad configuration, and no Bun process left behind by a killed server.

use std::thread;
use std::time::{Duration, Instant};

use super::with_functions;
use crate::support::{procs, Request, Server};

/// Longer than the `shutdown_grace` these tests set, so a late exit is a failure.
const EXIT_DEADLINE: Duration = Duration::from_secs(15);

#[test]
fn restart_without_functions_dir_keeps_the_deployed_functions() {
    let data = tempfile::TempDir::new().unwrap();
    let first = with_functions(&["hello.ts"]).data_dir(data.path()).start();
    assert_eq!(first.get("/functions/hello").status, 200);
    first.stop();

    let second = Server::builder()
        .without_functions_dir()
        .data_dir(data.path())
        .start();

    let response = second.get("/functions/hello");
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(response.text(), "hello world\n");
}

#[test]
fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    let mut server = with_functions(&["slow.ts"])
        .config("invocation_timeout", "10s")
        .config("shutdown_grace", "10s")
        .start();

    let (response, probe) = thread::scope(|s| {
        let in_flight = s.spawn(|| server.send(&Request::get("/functions/slow?ms=2000")));
        let started = server.wait_for_log("slow: sleeping 2000 ms", Duration::from_secs(10));
        assert!(
            started,
            "the slow request never started:\n{}",
            server.logs_tail(4000)
        );
        server.signal(libc::SIGTERM);

        // Give the server a moment to notice the signal, then try a new request.
        thread::sleep(Duration::from_millis(300));
        let probe = server.send(&Request::get("/functions/slow?ms=1"));
        (in_flight.join().unwrap(), probe)
    });

    let response = response.unwrap_or_else(|e| panic!("in-flight request failed: {e}"));
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(response.text(), "slept 2000 ms\n");
    match probe {
        Ok(probe) => assert_eq!(
            probe.status,
            503,
            "a request after SIGTERM got: {}",
            probe.text()
        ),
        Err(e) => assert!(!is_timeout(&e), "a request after SIGTERM hung: {e}"),
    }
    let status = server.wait_exit(EXIT_DEADLINE);
    assert_eq!(
        status.code(),
        Some(0),
        "stderr:\n{}",
        server.logs_tail(4000)
    );
}

#[test]
fn bad_config_value_from_the_environment_exits_2_naming_the_variable() {
    let mut server = with_functions(&["hello.ts"])
        .env_var("FUNCTIONS_MAX_WORKERS", "lots")
        .spawn();

    let status = server.wait_exit(EXIT_DEADLINE);

    let logs = server.logs();
    assert_eq!(status.code(), Some(2), "stderr:\n{logs}");
    assert!(
        logs.contains("FUNCTIONS_MAX_WORKERS"),
        "stderr does not name the variable:\n{logs}"
    );
    assert!(!logs.contains("listening on"), "stderr:\n{logs}");
}

#[test]
fn bad_config_value_from_the_file_exits_2_naming_the_key_and_the_file() {
    let mut server = with_functions(&["hello.ts"])
        .config("max_workers", "lots")
        .spawn();

    let status = server.wait_exit(EXIT_DEADLINE);

    let logs = server.logs();
    let file = server.config_path().display().to_string();
    assert_eq!(status.code(), Some(2), "stderr:\n{logs}");
    assert!(
        logs.contains("max_workers"),
        "stderr does not name the key:\n{logs}"
    );
    assert!(logs.contains(&file), "stderr does not name {file}:\n{logs}");
}

#[test]
fn no_bun_process_outlives_a_killed_server() {
    let mut server = with_functions(&["slow.ts"])
        .config("max_workers", "2")
        .start();

    // Two overlapping calls, so one or two workers are running.
    thread::scope(|s| {
        let calls: Vec<_> = (0..2)
            .map(|_| s.spawn(|| server.get("/functions/slow?ms=300")))
            .collect();
        for call in calls {
            assert_eq!(call.join().unwrap().status, 200);
        }
    });
    let workers = procs::descendants_of(server.pid());
    let commands: Vec<String> = workers.iter().map(|&p| procs::cmdline(p)).collect();
    assert!(
        commands.iter().any(|c| c.contains("bun")),
        "no Bun worker found under the server: {commands:?}"
    );

    server.signal(libc::SIGKILL);
    server.wait_exit(EXIT_DEADLINE);

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut alive: Vec<u32> = workers.clone();
    while !alive.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        alive.retain(|&pid| procs::is_alive(pid));
    }
    let described: Vec<String> = alive
        .iter()
        .map(|&p| format!("{p}: {}", procs::cmdline(p)))
        .collect();
    for &pid in &alive {
        // SAFETY: kill(2) on a worker this test's server started; it is cleanup only.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    assert!(
        described.is_empty(),
        "still running 5 s after SIGKILL: {described:#?}"
    );
}

/// A read that gave up on our side rather than an answer or a refusal from the server.
fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// Helper-found: past the grace, queued invocations started fresh workers and ran to
/// their own timeouts, and a client stalling its body kept the server from exiting.
#[test]
fn past_the_grace_queued_calls_get_503_and_a_stalled_client_does_not_hold_the_exit() {
    use std::io::Write;
    let mut server = Server::builder()
        .function("hang.ts", "export default () => new Promise(() => {});")
        .config("max_workers", "2")
        .config("invocation_timeout", "30s")
        .config("shutdown_grace", "1s")
        .start();
    let addr = server.addr();
    // A client that promises a body and stalls: its gateway thread waits for it.
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    let head = "POST /functions/hang HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&[b'x'; 2000]).unwrap();

    let answers = thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| s.spawn(|| server.send(&Request::get("/functions/hang"))))
            .collect();
        // Two run, six wait in the queue.
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let health = server.get("/health").json();
            if health["functions"][0]["queued"] == 6 {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        server.signal(libc::SIGTERM);
        let signalled = Instant::now();
        let answers: Vec<_> = calls.into_iter().map(|c| c.join().unwrap()).collect();
        (answers, signalled)
    });
    let (answers, signalled) = answers;
    let status = server.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(1), "{}", server.logs_tail(4000));
    assert!(took < Duration::from_secs(6), "exit took {took:?}");
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().map_or(0, |r| r.status))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        6,
        "{statuses:?}"
    );
    let logs = server.logs();
    let cut = logs.find("grace period over").expect("no cut-off logged");
    assert!(
        !logs[cut..].contains("worker ready"),
        "a worker started after the grace:\n{}",
        &logs[cut..]
    );
    drop(stalled);
}
