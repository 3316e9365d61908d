//! The socket file and the connection limits: its mode and group, a live server's socket
//! never taken over, a stale one replaced, BUSY when the backlog is full, and a shutdown
//! that does not wait on idle connections.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use serde_json::json;

use super::{answers, assert_status_answers, client, closed, ok, raw, read_frame, start};
use crate::support::Server;
use functions::api::codes::{Command, Status};

#[test]
fn socket_file_is_private_or_shared_with_the_configured_group() {
    let server = start(Server::builder());
    let meta = std::fs::metadata(server.socket_path()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o600);
    let dir = server.socket_path().parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "staging dirs left: {leftovers:?}");

    // SAFETY: getgid(2) cannot fail.
    let gid = unsafe { libc::getgid() };
    let server = start(Server::builder().config("socket_group", &gid.to_string()));
    let meta = std::fs::metadata(server.socket_path()).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, gid));
}

#[test]
fn a_second_server_on_the_same_socket_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let socket = socket.to_str().unwrap();
    let first = start(Server::builder().config("socket", socket));

    let mut second = Server::builder().config("socket", socket).spawn();
    let status = second.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "second server exited with {status}");
    let logs = second.logs();
    assert!(
        logs.contains(&format!("another server is already listening on {socket}")),
        "stderr:\n{logs}"
    );

    assert!(std::fs::metadata(socket).unwrap().file_type().is_socket());
    assert_status_answers(&first, &mut raw(&first));
}

/// Regression: the second server restored and deployed its functions dir into the
/// shared data dir before it found the socket taken, so the first server's metadata
/// recorded a version that server never ran.
#[test]
fn a_refused_second_server_leaves_the_shared_data_dir_alone() {
    let data = tempfile::tempdir().unwrap();
    let first = start(
        Server::builder()
            .data_dir(data.path())
            .function("hi.ts", &answers("v1")),
    );

    let mut second = Server::builder()
        .data_dir(data.path())
        .function("hi.ts", &answers("v2"))
        .spawn();
    assert!(!second.wait_exit(Duration::from_secs(60)).success());

    let info = ok(&first, Command::Info, json!({"name": "hi"}), b"");
    assert_eq!(info.json["active_version"], 1, "{}", info.json);
    assert_eq!(info.json["latest_version"], 1, "{}", info.json);
}

#[test]
fn a_stale_socket_of_a_killed_server_is_replaced() {
    let data = tempfile::tempdir().unwrap();
    let mut first = start(Server::builder().data_dir(data.path()));
    let socket = first.socket_path().to_path_buf();
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    assert!(
        socket.exists(),
        "a SIGKILLed server cannot remove its socket"
    );

    let second = start(Server::builder().data_dir(data.path()));
    assert!(
        second.logs().contains("replacing stale socket"),
        "{}",
        second.logs()
    );
    assert_status_answers(&second, &mut raw(&second));
}

#[test]
fn a_full_backlog_answers_busy_and_the_queue_is_served_later() {
    let server = start(Server::builder().config("api_threads", "1"));

    // The only thread serves `held`; four more connections fill the backlog.
    let mut held = raw(&server);
    assert_status_answers(&server, &mut held);
    let queued: Vec<_> = (0..4).map(|_| raw(&server)).collect();

    let mut refused = raw(&server);
    let busy = read_frame(&mut refused);
    assert_eq!(busy.code, Status::Busy.code(), "{}", busy.json);
    assert_eq!(busy.json["error"]["code"], "busy");
    assert!(closed(&mut refused));

    // Each closed connection frees the thread for the next one in the queue.
    drop(held);
    for mut stream in queued {
        assert_status_answers(&server, &mut stream);
    }
}

/// Regression: at shutdown a connection still waiting in the backlog was picked up after
/// the open connections had been told to stop, and its read never ended, so the server
/// never exited. Now it is answered UNAVAILABLE and closed.
#[test]
fn shutdown_does_not_wait_for_an_idle_queued_connection() {
    let mut server = start(
        Server::builder()
            .config("api_threads", "1")
            .config("shutdown_grace", "1s"),
    );
    let mut held = client(&server);
    let reply = held.call(Command::Status, json!({}), Vec::new()).unwrap();
    assert_eq!(reply.status, Status::Ok);
    let mut queued = raw(&server);
    std::thread::sleep(Duration::from_millis(200));

    server.signal(libc::SIGTERM);
    let exited = server.try_wait_exit(Duration::from_secs(20));
    assert!(
        exited.is_some(),
        "server still running 20 s after SIGTERM; stderr:\n{}",
        server.logs_tail(4000)
    );
    // The queued connection is told why, then closed.
    let answer = read_frame(&mut queued);
    assert_eq!(answer.code, Status::Unavailable.code(), "{}", answer.json);
    assert_eq!(answer.json["error"]["code"], "shutting_down");
    assert!(closed(&mut queued));
}
