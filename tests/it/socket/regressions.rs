//! Regressions found by the second break-it review: followers holding API threads, dot
//! segments over socket INVOKE, and a socket file left by a server that failed to start.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{assert_error, client, start};
use crate::support::Server;
use functions::api::codes::{Command as Cmd, Status};

#[test]
fn socket_invoke_refuses_dot_segments_and_control_characters_in_the_path() {
    let server = start(Server::builder().function(
        "echo.ts",
        "export default (r: Request) => new Response(r.url);",
    ));
    let mut conn = client(&server);
    for path in ["/../etc", "/%2e%2e/secret", "/a\nb"] {
        let reply = conn
            .call(
                Cmd::Invoke,
                json!({ "name": "echo", "path": path }),
                Vec::new(),
            )
            .unwrap();
        assert_error(&reply, Status::BadRequest, "bad_request");
    }
    let reply = conn
        .call(
            Cmd::Invoke,
            json!({ "name": "echo", "path": "/a/b?x=1" }),
            Vec::new(),
        )
        .unwrap();
    assert_eq!(reply.status, Status::Ok);
    assert!(String::from_utf8_lossy(&reply.raw).ends_with("/functions/echo/a/b?x=1"));
}

#[test]
fn log_followers_do_not_hold_the_api_threads() {
    let server = start(
        Server::builder()
            .config("api_threads", "2")
            .function("hello.ts", "export default () => new Response('hi');"),
    );
    let socket = server.socket_path().to_path_buf();
    let follow = || {
        Command::new(env!("CARGO_BIN_EXE_functions"))
            .args(["logs", "--follow", "--socket"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut followers: Vec<_> = (0..4).map(|_| follow()).collect();

    // With 2 API threads and 4 followers, other commands still get answers.
    let started = Instant::now();
    for _ in 0..5 {
        let reply = client(&server)
            .call(Cmd::Status, json!({}), Vec::new())
            .unwrap();
        assert_eq!(reply.status, Status::Ok);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    for follower in &mut followers {
        let _ = follower.kill();
        let _ = follower.wait();
    }
}

#[test]
fn a_server_that_fails_to_start_removes_its_socket_file() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("f.sock");
    let status = Command::new(env!("CARGO_BIN_EXE_functions"))
        .args([
            "serve",
            "--config",
            "/dev/null",
            "--http-port",
            &port,
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--socket")
        .arg(&socket)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(!socket.exists(), "socket file left behind");
}

#[test]
fn a_function_deployed_with_its_own_max_body_size_gets_413_above_it() {
    let server = start(Server::builder());
    let source = "export default async (r: Request) => new Response(String((await r.arrayBuffer()).byteLength));";
    let payload =
        json!({ "name": "small", "filename": "small.ts", "settings": { "max_body_size": 1024 } });
    let reply = client(&server)
        .call(Cmd::DeployFunction, payload, source.as_bytes().to_vec())
        .unwrap();
    assert_eq!(reply.status, Status::Ok, "{}", reply.json);

    let post = |n: usize| {
        server.call(&crate::support::Request::new("POST", "/functions/small").body(vec![b'x'; n]))
    };
    assert_eq!(post(1024).text(), "1024");
    crate::support::assert_error(&post(1025), 413, "payload_too_large");

    // Over the socket the same limit applies.
    let reply = client(&server)
        .call(
            Cmd::Invoke,
            json!({ "name": "small", "method": "POST" }),
            vec![b'y'; 2048],
        )
        .unwrap();
    assert_error(&reply, Status::BadRequest, "payload_too_large");
}
