//! Tests of the Unix-socket API through the real binary: normal calls with
//! `functions::client::Client`, and hand-made bytes on a raw `UnixStream` where the test
//! must control every byte. `socket/malformed.rs` sends broken frames, `socket/file.rs`
//! covers the socket file and connection limits, `socket/deploy.rs` deploys and invokes,
//! `socket/manage.rs` rolls back, sets the environment and deletes. docs/protocol.md
//! specifies what is asserted here.

mod deploy;
mod file;
mod malformed;
mod manage;
mod regressions;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use functions::api::codes::{Command, Status};
use functions::api::frame::Frame;
use functions::client::{Client, Reply};
use serde_json::{json, Value};

use crate::support::{Server, ServerBuilder};

/// A raw read that takes longer than this fails the test instead of hanging it.
const RAW_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest frame a raw read accepts.
const MAX_READ: usize = 1 << 26;

/// A function that answers with its name, to tell versions apart.
fn answers(text: &str) -> String {
    format!("export default () => new Response({text:?});\n")
}

/// Starts the server and waits until its socket is bound, which happens a moment after
/// the HTTP gateway listens.
fn start(builder: ServerBuilder) -> Server {
    let server = builder.start();
    wait_socket(&server);
    server
}

fn wait_socket(server: &Server) {
    let bound = server.wait_for_log("socket api listening on", Duration::from_secs(30));
    assert!(
        bound,
        "socket not bound; stderr:\n{}",
        server.logs_tail(8000)
    );
}

fn client(server: &Server) -> Client {
    Client::connect(server.socket_path()).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends one request and returns the reply; panics with the server's stderr on failure.
fn call(server: &Server, conn: &mut Client, command: Command, json: Value, raw: &[u8]) -> Reply {
    conn.call(command, json, raw.to_vec()).unwrap_or_else(|e| {
        panic!(
            "{} failed: {e}; stderr:\n{}",
            command.name(),
            server.logs_tail(8000)
        )
    })
}

/// Like `call` on a connection of its own, expecting OK.
fn ok(server: &Server, command: Command, json: Value, raw: &[u8]) -> Reply {
    let reply = call(server, &mut client(server), command, json, raw);
    assert_eq!(
        reply.status,
        Status::Ok,
        "{}: {}",
        command.name(),
        reply.json
    );
    reply
}

/// Asserts an error reply: its status and `error.code`, with a message.
#[track_caller]
fn assert_error(reply: &Reply, status: Status, code: &str) {
    assert_eq!(reply.status, status, "unexpected reply: {}", reply.json);
    assert_eq!(reply.json["error"]["code"], code, "{}", reply.json);
    assert!(reply.json["error"]["message"].is_string(), "{}", reply.json);
}

fn deploy(server: &Server, name: &str, source: &str) -> Reply {
    let json = json!({ "name": name, "filename": format!("{name}.ts") });
    call(
        server,
        &mut client(server),
        Command::DeployFunction,
        json,
        source.as_bytes(),
    )
}

/// An INVOKE's answer: the function's HTTP status and its body.
fn invoke(server: &Server, conn: &mut Client, name: &str, body: &[u8]) -> (u64, Vec<u8>) {
    let reply = call(server, conn, Command::Invoke, json!({ "name": name }), body);
    assert_eq!(reply.status, Status::Ok, "INVOKE {name}: {}", reply.json);
    (reply.json["status"].as_u64().unwrap_or(0), reply.raw)
}

/// A raw connection with read and write deadlines.
fn raw(server: &Server) -> UnixStream {
    let stream = UnixStream::connect(server.socket_path()).expect("failed to connect");
    stream.set_read_timeout(Some(RAW_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(RAW_TIMEOUT)).unwrap();
    stream
}

/// The bytes of a frame built by hand: `length | code | json length | json | raw`.
fn frame_bytes(code: u8, json: &[u8], raw: &[u8]) -> Vec<u8> {
    let length = (5 + json.len() + raw.len()) as u32;
    let mut out = length.to_be_bytes().to_vec();
    out.push(code);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(raw);
    out
}

fn send(stream: &mut UnixStream, bytes: &[u8]) {
    stream
        .write_all(bytes)
        .expect("failed to write to the socket");
}

/// Reads one answer frame; panics when none comes.
fn read_frame(stream: &mut UnixStream) -> Frame {
    Frame::read_from(stream, MAX_READ).unwrap_or_else(|e| panic!("no answer frame: {e}"))
}

/// True when the server closed the connection: a read sees the end or a reset.
fn closed(stream: &mut UnixStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// A STATUS on `stream` answers OK with the server's pid.
#[track_caller]
fn assert_status_answers(server: &Server, stream: &mut UnixStream) {
    send(stream, &frame_bytes(Command::Status.code(), b"", b""));
    let answer = read_frame(stream);
    assert_eq!(answer.code, Status::Ok.code(), "{}", answer.json);
    assert_eq!(answer.json["pid"], server.pid(), "{}", answer.json);
}

#[test]
fn several_requests_share_one_connection() {
    let server = start(Server::builder().function("hello.ts", &answers("hi")));
    let mut conn = client(&server);

    let status = call(&server, &mut conn, Command::Status, json!({}), b"");
    assert_eq!(status.status, Status::Ok, "{}", status.json);
    assert_eq!(status.json["pid"], server.pid());
    assert_eq!(status.json["functions"], 1);
    assert_eq!(
        status.json["socket"],
        server.socket_path().display().to_string()
    );
    assert_eq!(status.json["http"], format!("http://{}", server.addr()));

    let list = call(&server, &mut conn, Command::List, json!({}), b"");
    assert_eq!(list.json["functions"][0]["name"], "hello", "{}", list.json);
    assert_eq!(list.json["functions"][0]["state"], "serving");
    assert_eq!(list.json["functions"][0]["active_version"], 1);

    for _ in 0..3 {
        assert_eq!(
            invoke(&server, &mut conn, "hello", b""),
            (200, b"hi".to_vec())
        );
    }
    let info = call(
        &server,
        &mut conn,
        Command::Info,
        json!({"name": "hello"}),
        b"",
    );
    assert_eq!(
        info.json["versions"][0]["state"], "DEPLOYED",
        "{}",
        info.json
    );
    let metrics = call(
        &server,
        &mut conn,
        Command::GetMetrics,
        json!({"name": "hello"}),
        b"",
    );
    assert_eq!(
        metrics.json["functions"]["hello"]["invocations"], 3,
        "{}",
        metrics.json
    );
}
