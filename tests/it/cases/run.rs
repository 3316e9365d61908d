//! Sends a case's requests to a phase's server: its first request and `then` steps, with
//! `concurrency`, `repeat` and `signal`, restarting the server when a step changes env.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;

use super::check::{check_logs, check_response, check_timing, Expect};
use super::{env_pairs, Case, CaseRequest, CaseSignal, Headers};
use crate::support::{write_env_file, Request, Server};

/// How long after a signal a new request probes that intake has stopped.
const PROBE_DELAY: Duration = Duration::from_millis(300);
/// Longer than the phases' `shutdown_grace` of 10 s.
const EXIT_DEADLINE: Duration = Duration::from_secs(15);

/// Runs one case, adding what differed to `failures`. An error means the server is gone
/// and the phase cannot go on.
pub fn run_case(
    case: &Case,
    server: &mut Server,
    functions_dir: &Path,
    start: &dyn Fn() -> Result<Server, String>,
    failures: &mut Vec<String>,
) -> Result<(), String> {
    let first = std::iter::once((None, &case.request, &case.expect));
    let then = case
        .then
        .iter()
        .map(|s| (s.env.as_ref(), &s.request, &s.expect));
    let steps: Vec<_> = first.chain(then).collect();
    let report = |failures: &mut Vec<String>, n: usize, problems: Vec<String>| {
        let label = if n == 0 {
            "request".to_string()
        } else {
            format!("then[{}]", n - 1)
        };
        let request = steps[n].1;
        let path: String = request.path.chars().take(80).collect();
        let at = format!("[{}] {label} ({} {path})", case.id, request.method);
        failures.extend(problems.into_iter().map(|p| format!("{at}: {p}")));
    };

    // Logs are checked once the steps ran (a case may list what its `then` steps log),
    // or before a restart, which starts a new log.
    let check_logs_until = |failures: &mut Vec<String>, server: &Server, from: usize, to: usize| {
        for (n, step) in steps.iter().enumerate().take(to).skip(from) {
            report(failures, n, check_logs(step.2, server));
        }
    };
    let mut logs_checked = 0;

    for (n, &(env, request, expect)) in steps.iter().enumerate() {
        // A new env takes effect at a restart on the same data dir. That retires every
        // worker, so `fresh_worker` needs no check of its own (52's body shows it anyway).
        if let Some(env) = env {
            check_logs_until(failures, server, logs_checked, n);
            logs_checked = n;
            write_env_file(functions_dir, &case.function(), &env_pairs(env));
            report(failures, n, stop(server, libc::SIGTERM));
            *server = start()
                .map_err(|e| format!("then[{}]: restart with the new env failed: {e}", n - 1))?;
        }

        let problems = match (&case.signal, n) {
            (Some(signal), 0) => signalled(case, server, request, expect, signal),
            _ => exchange(server, request, expect),
        };
        report(failures, n, problems);
    }
    check_logs_until(failures, server, logs_checked, steps.len());
    Ok(())
}

/// Sends the signal and waits for the server to exit by itself with code 0.
fn stop(server: &mut Server, signal: i32) -> Vec<String> {
    server.signal(signal);
    match server.try_wait_exit(EXIT_DEADLINE) {
        Some(status) if status.code() == Some(0) => vec![],
        Some(status) => vec![format!(
            "server exited with {status}; stderr:\n{}",
            server.logs_tail(3000)
        )],
        None => vec![format!(
            "server still running {EXIT_DEADLINE:?} after signal {signal}"
        )],
    }
}

fn exchange(server: &Server, request: &CaseRequest, expect: &Expect) -> Vec<String> {
    let sent = build_request(request);
    let timing = expect.timing.as_ref();
    let mut problems = Vec::new();

    // `concurrency`: N copies at once; timing applies to the whole group.
    if let Some(n) = request.concurrency {
        let started = Instant::now();
        let results: Vec<_> = thread::scope(|s| {
            let calls: Vec<_> = (0..n).map(|_| s.spawn(|| server.send(&sent))).collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let wall = started.elapsed();
        let mut slowest_first_byte = Duration::ZERO;
        for (i, result) in results.iter().enumerate() {
            let copy = format!("copy {}/{n}", i + 1);
            let response = match result {
                Ok(response) => response,
                Err(e) => {
                    problems.push(format!("{copy}: no answer: {e}"));
                    continue;
                }
            };
            slowest_first_byte = slowest_first_byte.max(response.ttfb);
            if let Some(all) = expect.all_status.filter(|s| *s != response.status) {
                problems.push(format!(
                    "{copy}: status {} instead of {all}",
                    response.status
                ));
            }
            let found = check_response(expect, response);
            problems.extend(found.into_iter().map(|p| format!("{copy}: {p}")));
        }
        if let Some(timing) = timing {
            problems.extend(check_timing(timing, slowest_first_byte, wall));
        }
        return problems;
    }

    // `repeat`: N in a row. Case 48's note lets a runner fail a call with a 5xx when it
    // recycles a worker over its memory limit, as long as the next call succeeds: that
    // can happen more than once in 64 calls, but never twice in a row. A 5xx on the last
    // call is followed by one more call, which must succeed.
    let repeat = request.repeat.unwrap_or(1);
    let mut tolerated_5xx = false;
    let mut calls = repeat;
    for i in 0.. {
        if i >= calls {
            break;
        }
        let call = if repeat > 1 {
            format!("call {}/{repeat}: ", i + 1)
        } else {
            String::new()
        };
        let response = match server.send(&sent) {
            Ok(response) => response,
            Err(e) => {
                problems.push(format!("{call}no answer: {e}"));
                break;
            }
        };
        let mut found = check_response(expect, &response);
        if let Some(timing) = timing {
            found.extend(check_timing(timing, response.ttfb, response.total));
        }
        if found.is_empty() {
            tolerated_5xx = false;
            continue;
        }
        if repeat > 1 && response.status >= 500 && !tolerated_5xx {
            tolerated_5xx = true;
            calls = calls.max(i + 2);
            continue;
        }
        problems.extend(found.into_iter().map(|p| format!("{call}{p}")));
        break;
    }
    problems
}

/// `signal`: sent `after_ms` into the request. The request must still succeed, a new
/// request must be refused or get 503, and the server must then exit with code 0.
fn signalled(
    case: &Case,
    server: &mut Server,
    request: &CaseRequest,
    expect: &Expect,
    signal: &CaseSignal,
) -> Vec<String> {
    let number = match signal.name.as_str() {
        "SIGTERM" => libc::SIGTERM,
        "SIGINT" => libc::SIGINT,
        other => return vec![format!("the tests do not know signal {other}")],
    };
    let sent = build_request(request);
    let probe = Request::get(&format!("/functions/{}", case.function()));

    let shared: &Server = server;
    let started = Instant::now();
    let (result, probed) = thread::scope(|s| {
        let in_flight = s.spawn(|| shared.send(&sent));
        thread::sleep(Duration::from_millis(signal.after_ms).saturating_sub(started.elapsed()));
        shared.signal(number);
        thread::sleep(PROBE_DELAY);
        let probed = shared.send(&probe);
        (in_flight.join().unwrap(), probed)
    });

    let mut problems = match &result {
        Ok(response) => check_response(expect, response),
        Err(e) => vec![format!("no answer after {}: {e}", signal.name)],
    };
    match probed {
        Ok(answer) if answer.status != 503 => {
            problems.push(format!(
                "a new request after {} got {} instead of a refusal or 503",
                signal.name, answer.status
            ));
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            problems.push(format!("a new request after {} hung: {e}", signal.name));
        }
        _ => {}
    }
    match server.try_wait_exit(EXIT_DEADLINE) {
        Some(status) if status.code() == Some(0) => {}
        Some(status) => problems.push(format!("server exited with {status} after {}", signal.name)),
        None => problems.push(format!(
            "server still running {EXIT_DEADLINE:?} after {}",
            signal.name
        )),
    }
    problems
}

/// The request as the case writes it; a `transfer-encoding: chunked` header means the
/// body goes chunked, in three pieces.
fn build_request(r: &CaseRequest) -> Request {
    let mut request = Request::new(&r.method, &r.path);
    request.headers = match &r.headers {
        None => Vec::new(),
        Some(Headers::Pairs(pairs)) => pairs.clone(),
        Some(Headers::Map(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    let chunked = request.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });

    let bytes = if let Some(text) = &r.body_text {
        text.as_bytes().to_vec()
    } else if let Some(encoded) = &r.body_base64 {
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("bad body_base64 in cases.json")
    } else if let Some(generate) = &r.body_generate {
        assert_eq!(
            generate.pattern, "mul31add7",
            "unknown body_generate pattern"
        );
        (0..generate.length)
            .map(|i| (i.wrapping_mul(31).wrapping_add(7) & 0xff) as u8)
            .collect()
    } else {
        return request;
    };
    if chunked {
        let third = bytes.len() / 3;
        let pieces = [
            &bytes[..third],
            &bytes[third..2 * third],
            &bytes[2 * third..],
        ];
        return request.chunked(pieces.map(<[u8]>::to_vec).to_vec());
    }
    request.body(bytes)
}
