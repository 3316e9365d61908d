//! Behaviour tests of `functions serve` over HTTP: handler shapes, env files, cold and
//! warm starts, concurrency, health and keep-alive. The error answers live in
//! `serve/errors.rs`; start, stop and restart in `serve/lifecycle.rs`. Each test starts
//! its own server on a free port.

mod errors;
mod lifecycle;

use std::thread;
use std::time::{Duration, Instant};

use crate::support::http::Connection;
use crate::support::{test_function, Request, Server, ServerBuilder};

/// A builder with these files of `tests/functions/` in its functions dir.
fn with_functions(files: &[&str]) -> ServerBuilder {
    let builder = Server::builder();
    files
        .iter()
        .fold(builder, |b, file| b.copy_function(&test_function(file)))
}

#[test]
fn hello_world_answers_200_with_its_body_and_invocation_headers() {
    let server = with_functions(&["hello.ts"]).start();

    let first = server.get("/functions/hello");
    assert_eq!(first.status, 200, "body: {}", first.text());
    assert_eq!(first.text(), "hello world\n");
    assert_eq!(first.header("content-type").as_deref(), Some("text/plain"));
    let cold = first.header("x-cold-start");
    assert!(
        matches!(cold.as_deref(), Some("true" | "false")),
        "x-cold-start: {cold:?}"
    );

    let second = server.get("/functions/hello");
    let ids = [&first, &second].map(|r| r.header("x-invocation-id").unwrap_or_default());
    assert!(
        ids.iter().all(|id| !id.is_empty()),
        "missing x-invocation-id: {ids:?}"
    );
    assert_ne!(ids[0], ids[1], "two invocations share an id");
}

#[test]
fn json_body_posted_comes_back_unchanged() {
    let server = with_functions(&["echo-json.ts"]).start();
    let sent =
        r#"{"name":"Ada","tags":["a","b"],"n":1.5,"nested":{"ok":true},"text":"héllo ✓ 👋"}"#;

    let request = Request::new("POST", "/functions/echo-json")
        .header("Content-Type", "application/json")
        .body(sent);
    let response = server.call(&request);

    assert_eq!(response.status, 200, "body: {}", response.text());
    let expected: serde_json::Value = serde_json::from_str(sent).unwrap();
    let json = response.json();
    assert_eq!(json["method"], "POST");
    assert_eq!(json["received"], expected);
}

#[test]
fn every_handler_shape_is_served_with_the_full_url() {
    let shapes = ["function", "fetch", "named"];
    let files = shapes.map(|s| format!("shape-{s}.ts"));
    let server = with_functions(&files.iter().map(String::as_str).collect::<Vec<_>>()).start();

    for shape in shapes {
        let response = server.get(&format!("/functions/shape-{shape}/sub/path?q=1"));
        assert_eq!(response.status, 200, "shape {shape}: {}", response.text());
        let expected = format!("shape={shape} url=/functions/shape-{shape}/sub/path\n");
        assert_eq!(response.text(), expected, "shape {shape}");
    }
}

#[test]
fn env_file_sets_the_environment_of_its_own_function_only() {
    let source = "export default () => Response.json({ greeting: process.env.GREETING ?? null });";
    let server = Server::builder()
        .function("env-a.ts", source)
        .function("env-b.ts", source)
        .function_env("env-a", &[("GREETING", "héllo = wörld")])
        .start();

    let a = server.get("/functions/env-a");
    let b = server.get("/functions/env-b");

    assert_eq!(a.json(), serde_json::json!({ "greeting": "héllo = wörld" }));
    assert_eq!(b.json(), serde_json::json!({ "greeting": null }));
}

#[test]
fn first_call_is_a_cold_start_and_the_next_is_warm() {
    let server = with_functions(&["hello.ts"])
        .config("min_warm", "0")
        .start();

    let first = server.get("/functions/hello");
    let second = server.get("/functions/hello");

    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.header("x-cold-start").as_deref(), Some("true"));
    assert_eq!(second.header("x-cold-start").as_deref(), Some("false"));
}

#[test]
fn twenty_parallel_requests_on_two_workers_all_succeed() {
    let server = with_functions(&["slow.ts"])
        .config("max_workers", "2")
        .config("queue_depth", "100")
        .start();

    let started = Instant::now();
    let responses: Vec<_> = thread::scope(|s| {
        let calls: Vec<_> = (0..20)
            .map(|_| s.spawn(|| server.get("/functions/slow?ms=100")))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });

    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        assert_eq!(response.text(), "slept 100 ms\n", "request {i}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn health_answers_200_json() {
    let server = with_functions(&["hello.ts"]).start();

    let response = server.get("/health");

    assert_eq!(response.status, 200, "body: {}", response.text());
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content-type: {content_type}"
    );
    assert!(response.json().is_object(), "body: {}", response.text());
}

#[test]
fn head_then_get_on_one_keep_alive_connection() {
    let function = crate::support::manifest_dir().join("tests/cases/functions/33-head-request.ts");
    let server = Server::builder().copy_function(&function).start();
    let mut conn = Connection::open(server.addr()).unwrap();

    // The handler returns 1000 bytes to the HEAD; were they sent, the GET would read them.
    let head = conn
        .send(&Request::new("HEAD", "/functions/33-head-request/naive"))
        .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-method-seen").as_deref(), Some("HEAD"));

    let get = conn
        .send(&Request::get("/functions/33-head-request/explicit"))
        .unwrap();
    assert_eq!(get.status, 200, "body: {}", get.text());
    assert_eq!(get.text(), "0123456789".repeat(100));
}

/// Regression: Bun turns methods it does not know into GET; the handler must see them.
#[test]
fn unknown_http_methods_reach_the_handler_as_sent_with_their_body() {
    let source =
        "export default async (r: Request) => new Response(`${r.method} ${await r.text()}`);";
    let server = Server::builder().function("method.ts", source).start();

    for (method, want) in [
        ("FOO", "FOO body"),
        ("PROPFIND", "PROPFIND body"),
        ("PATCH", "PATCH body"),
    ] {
        let response = server.call(&Request::new(method, "/functions/method").body("body"));
        assert_eq!((response.status, response.text().as_str()), (200, want));
    }
}

#[test]
fn hop_by_hop_request_headers_do_not_reach_the_function() {
    let source = "export default (r: Request) => Response.json([...r.headers.keys()]);";
    let server = Server::builder().function("names.ts", source).start();

    let request = Request::get("/functions/names")
        .header("Connection", "close, x-named-hop")
        .header("x-named-hop", "1")
        .header("Keep-Alive", "timeout=5")
        .header("Upgrade", "websocket")
        .header("x-kept", "yes");
    let names = server.call(&request).json();
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();

    assert!(
        names.contains(&"x-kept") && names.contains(&"x-invocation-id"),
        "{names:?}"
    );
    for hop in ["connection", "x-named-hop", "keep-alive", "upgrade"] {
        assert!(
            !names.contains(&hop),
            "{hop} reached the function: {names:?}"
        );
    }
}
