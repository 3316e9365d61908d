//! DEPLOY_FUNCTION and INVOKE over the socket: raw bodies byte for byte, the error codes
//! of bad requests, a failed build that leaves the old version serving, and a deploy
//! under load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{answers, assert_error, call, client, deploy, invoke, ok, start};
use crate::support::Server;
use functions::api::codes::{Command, Status};

const ECHO: &str = "export default async (req: Request) => new Response(await req.arrayBuffer(), \
    { headers: { 'x-method': req.method, 'x-url': req.url } });\n";

#[test]
fn deployed_function_echoes_every_byte_value() {
    let server = start(Server::builder());
    let deployed = deploy(&server, "echo", ECHO);
    assert_eq!(deployed.status, Status::Ok, "{}", deployed.json);
    assert_eq!(deployed.json["version"], 1);
    assert_eq!(deployed.json["unchanged"], false);
    assert!(deployed.json["build_ms"].is_u64(), "{}", deployed.json);

    let body: Vec<u8> = (0..=255).collect();
    let request = json!({ "name": "echo", "path": "/sub?q=1", "headers": [["x-a", "1"]] });
    let reply = call(
        &server,
        &mut client(&server),
        Command::Invoke,
        request,
        &body,
    );
    assert_eq!(reply.status, Status::Ok, "{}", reply.json);
    assert_eq!(
        (reply.json["status"].as_u64(), &reply.raw),
        (Some(200), &body)
    );
    let headers = reply.json["headers"].as_array().expect("headers are pairs");
    assert!(
        headers.contains(&json!(["x-method", "POST"])),
        "{headers:?}"
    );
    let url = json!(["x-url", "http://localhost/functions/echo/sub?q=1"]);
    assert!(headers.contains(&url), "{headers:?}");
    assert!(reply.json["invocation_id"].is_string() && reply.json["version"] == 1);

    let again = deploy(&server, "echo", ECHO);
    assert_eq!(
        (
            again.json["version"].as_u64(),
            again.json["unchanged"].as_bool()
        ),
        (Some(1), Some(true))
    );
}

#[test]
fn bad_invocations_and_deploys_answer_their_error_codes() {
    let server = start(Server::builder());
    let mut conn = client(&server);
    let mut ask = |command, json| call(&server, &mut conn, command, json, b"x");

    assert_error(
        &ask(Command::Invoke, json!({"name": "nope"})),
        Status::NotFound,
        "not_found",
    );
    assert_error(
        &ask(Command::Invoke, json!({"name": "Bad/Name"})),
        Status::BadRequest,
        "bad_request",
    );
    assert_error(
        &ask(Command::Invoke, json!({})),
        Status::BadRequest,
        "bad_request",
    );
    let bad_path = json!({"name": "nope", "path": "x"});
    assert_error(
        &ask(Command::Invoke, bad_path),
        Status::BadRequest,
        "bad_request",
    );
    let bad_file = json!({"name": "f", "filename": "f.txt"});
    assert_error(
        &ask(Command::DeployFunction, bad_file),
        Status::BadRequest,
        "bad_request",
    );
    let no_source = call(
        &server,
        &mut client(&server),
        Command::DeployFunction,
        json!({"name": "f"}),
        b"",
    );
    assert_error(&no_source, Status::BadRequest, "bad_request");
}

/// Regression: a method that is no HTTP token reached the function as GET (Bun's
/// `Request` replaces it), and a header Bun cannot carry failed as the function's own
/// `function_error`; both are the caller's mistake.
#[test]
fn invoke_with_an_invalid_method_or_header_is_a_bad_request() {
    let server = start(Server::builder().function("app.ts", &answers("v1")));
    let mut conn = client(&server);
    for request in [
        json!({"name": "app", "method": "bad method"}),
        json!({"name": "app", "headers": [["bad name", "v"]]}),
        json!({"name": "app", "headers": [["x-a", "line\r\nbreak"]]}),
    ] {
        let reply = call(&server, &mut conn, Command::Invoke, request.clone(), b"");
        assert_error(&reply, Status::BadRequest, "bad_request");
    }
}

/// Regression: per-function settings were stored unchecked, so `max_workers: 0` made
/// every invocation wait out its timeout and `timeout_ms: 0` made every one time out,
/// values the configuration file refuses.
#[test]
fn zero_max_workers_or_timeout_in_settings_is_a_bad_request() {
    let server = start(Server::builder());
    for settings in [json!({"max_workers": 0}), json!({"timeout_ms": 0})] {
        let request = json!({ "name": "app", "settings": settings });
        let deployed = call(
            &server,
            &mut client(&server),
            Command::DeployFunction,
            request.clone(),
            answers("x").as_bytes(),
        );
        assert_error(&deployed, Status::BadRequest, "bad_request");
        let registered = call(
            &server,
            &mut client(&server),
            Command::RegisterFunction,
            request,
            b"",
        );
        assert_error(&registered, Status::BadRequest, "bad_request");
    }
}

#[test]
fn failed_build_answers_build_failed_and_the_old_version_keeps_serving() {
    let server = start(Server::builder().function("app.ts", &answers("v1")));

    let failed = deploy(&server, "app", "export default () => new Response(\"x\";\n");
    assert_error(&failed, Status::Error, "build_failed");
    let message = failed.error_message();
    assert!(
        message.contains("Expected \")\" but found \";\""),
        "{message}"
    );

    assert_eq!(
        invoke(&server, &mut client(&server), "app", b""),
        (200, b"v1".to_vec())
    );
    let info = ok(&server, Command::Info, json!({"name": "app"}), b"");
    assert_eq!(info.json["active_version"], 1, "{}", info.json);
    assert_eq!(info.json["versions"][1]["state"], "FAILED", "{}", info.json);
}

/// Regression: with `min_warm = 0` (the default) a deploy started no worker before
/// routing, so a version that throws while loading replaced a working one and every call
/// failed `start_failed`; SET_ENV did the same, and stored the new environment even
/// when it answered an error.
#[test]
fn a_version_or_env_whose_worker_cannot_start_never_replaces_a_working_one() {
    let server = start(Server::builder().function("app.ts", &answers("v1")));
    let throws = "throw new Error('boom at load');\nexport default () => new Response('v2');\n";
    assert_error(&deploy(&server, "app", throws), Status::Error, "no_version");
    assert_eq!(
        invoke(&server, &mut client(&server), "app", b""),
        (200, b"v1".to_vec())
    );

    let picky = "if (process.env.BOOM) throw new Error('boom');\nexport default () => new Response('ok');\n";
    assert_eq!(deploy(&server, "picky", picky).status, Status::Ok);
    let vars = json!({"name": "picky", "vars": {"BOOM": "1"}});
    let set = call(&server, &mut client(&server), Command::SetEnv, vars, b"");
    assert_error(&set, Status::Error, "no_version");
    let env = ok(&server, Command::ListEnv, json!({"name": "picky"}), b"");
    assert_eq!(env.json["env"], json!({}), "a refused SET_ENV was stored");
    assert_eq!(
        invoke(&server, &mut client(&server), "picky", b""),
        (200, b"ok".to_vec())
    );
}

#[test]
fn deploy_under_load_switches_answers_once_without_a_failure() {
    let server = start(Server::builder().function("app.ts", &answers("v1")));
    let done = AtomicUsize::new(0);
    let deployed = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(120);

    // Each caller makes 50 calls, then goes on until it has made 5 after the deploy.
    let caller = |over_socket: bool| {
        let mut conn = over_socket.then(|| client(&server));
        let (mut seen, mut after) = (Vec::new(), 0);
        while (seen.len() < 50 || after < 5) && Instant::now() < deadline {
            let finished = deployed.load(Ordering::Acquire);
            let (status, body) = match conn.as_mut() {
                Some(conn) => invoke(&server, conn, "app", b""),
                None => {
                    let response = server.get("/functions/app");
                    (response.status as u64, response.body)
                }
            };
            seen.push((status, String::from_utf8_lossy(&body).into_owned()));
            after += usize::from(finished);
            done.fetch_add(1, Ordering::Relaxed);
        }
        seen
    };
    let runs: Vec<Vec<(u64, String)>> = thread::scope(|s| {
        let callers: Vec<_> = [true, true, false, false]
            .map(|over_socket| s.spawn(move || caller(over_socket)))
            .into_iter()
            .collect();
        while done.load(Ordering::Relaxed) < 40 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let reply = deploy(&server, "app", &answers("v2"));
        assert_eq!(reply.status, Status::Ok, "{}", reply.json);
        deployed.store(true, Ordering::Release);
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });

    let before: usize = runs.iter().flatten().filter(|(_, b)| b == "v1").count();
    assert!(before >= 40, "only {before} answers came from v1");
    for seen in runs {
        assert!(
            seen.iter().all(|(status, _)| *status == 200),
            "failures: {seen:?}"
        );
        let bodies: Vec<&str> = seen.iter().map(|(_, body)| body.as_str()).collect();
        let switch = bodies
            .iter()
            .position(|b| *b == "v2")
            .expect("never saw v2");
        assert!(bodies[..switch].iter().all(|b| *b == "v1"), "{bodies:?}");
        assert!(
            bodies[switch..].iter().all(|b| *b == "v2"),
            "went back: {bodies:?}"
        );
    }
}
