//! Broken frames on a raw connection: each gets an error frame or a closed connection,
//! never a crash, and the server goes on answering other connections.

use std::io::Read;
use std::net::Shutdown;
use std::time::Duration;

use super::{assert_status_answers, closed, frame_bytes, raw, read_frame, send, start};
use crate::support::Server;
use functions::api::codes::{Command, Status};

/// The resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:"));
    let kib = line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    kib.expect("no VmRSS in /proc/<pid>/status")
}

/// Asserts a `bad_frame` answer whose message contains `needle`.
#[track_caller]
fn assert_bad_frame(stream: &mut std::os::unix::net::UnixStream, needle: &str) {
    let answer = read_frame(stream);
    assert_eq!(answer.code, Status::BadRequest.code(), "{}", answer.json);
    assert_eq!(answer.json["error"]["code"], "bad_frame", "{}", answer.json);
    let message = answer.json["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(needle),
        "message {message:?} lacks {needle:?}"
    );
}

#[test]
fn oversized_length_prefix_is_refused_before_allocating() {
    let server = start(Server::builder().config("max_frame_size", "64K"));
    let before = rss_kib(server.pid());

    for length in [u32::MAX, 64 * 1024 + 1] {
        let mut stream = raw(&server);
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[Command::Status.code(), 0, 0, 0, 0]);
        send(&mut stream, &bytes);
        assert_bad_frame(&mut stream, "exceeds the maximum of 65536 bytes");
        assert!(
            closed(&mut stream),
            "connection left open after length {length}"
        );
    }

    // A frame of exactly the maximum is accepted (STATUS ignores its raw part).
    let mut stream = raw(&server);
    send(
        &mut stream,
        &frame_bytes(Command::Status.code(), b"", &[7; 64 * 1024 - 5]),
    );
    assert_eq!(read_frame(&mut stream).code, Status::Ok.code());

    assert_status_answers(&server, &mut raw(&server));
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 32 * 1024, "resident memory grew by {grown} KiB");
}

#[test]
fn garbage_bytes_close_only_their_own_connection() {
    let server = start(Server::builder());
    let mut stream = raw(&server);

    // 1 KiB from a fixed linear congruential sequence, so a failure can be replayed.
    let mut state = 0x2545_f491_u32;
    let garbage: Vec<u8> = (0..1024)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    send(&mut stream, &garbage);
    stream.shutdown(Shutdown::Write).unwrap();

    // At most error frames, then the end; a reset may follow the data.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let mut rest = answer.as_slice();
    while !rest.is_empty() {
        let frame = functions::api::frame::Frame::read_from(&mut rest, 1 << 20)
            .unwrap_or_else(|e| panic!("unreadable answer to garbage: {e}"));
        assert_eq!(frame.json["error"]["code"], "bad_frame", "{}", frame.json);
    }

    assert_status_answers(&server, &mut raw(&server));
}

#[test]
fn truncated_frame_closed_early_gets_no_answer_but_an_error_or_the_end() {
    let server = start(Server::builder());
    let mut stream = raw(&server);
    let frame = frame_bytes(Command::Status.code(), b"", &[0; 95]);

    send(&mut stream, &frame[..10]);
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    if !answer.is_empty() {
        let frame = functions::api::frame::Frame::read_from(&mut answer.as_slice(), 1 << 20)
            .expect("unreadable answer");
        assert_eq!(frame.code, Status::BadRequest.code(), "{}", frame.json);
    }

    assert_status_answers(&server, &mut raw(&server));
}

#[test]
fn stalled_partial_frame_does_not_stop_other_connections() {
    let server = start(Server::builder());
    let mut stalled = raw(&server);
    let frame = frame_bytes(Command::Status.code(), b"", &[0; 95]);
    send(&mut stalled, &frame[..10]);

    for _ in 0..3 {
        assert_status_answers(&server, &mut raw(&server));
    }

    // The stalled frame was waited for: its rest completes it.
    send(&mut stalled, &frame[10..]);
    assert_eq!(read_frame(&mut stalled).code, Status::Ok.code());
}

/// Regression: a frame that is begun but never finished holds its connection thread
/// forever (no read deadline), so with every API thread stalled that way a new
/// connection waits in the backlog and never gets an answer.
#[test]
fn stalled_partial_frames_on_every_api_thread_do_not_starve_new_connections() {
    let server = start(Server::builder().config("api_threads", "1"));
    let mut stalled = raw(&server);
    send(
        &mut stalled,
        &frame_bytes(Command::Status.code(), b"", &[0; 95])[..10],
    );
    // Let the only API thread take the stalled connection before the next one queues.
    std::thread::sleep(Duration::from_millis(200));

    let mut waiting = raw(&server);
    send(&mut waiting, &frame_bytes(Command::Status.code(), b"", b""));
    let answer = functions::api::frame::Frame::read_from(&mut waiting, 1 << 20);
    assert!(
        answer.is_ok(),
        "no answer within {:?} while another connection stalls mid-frame: {:?}",
        super::RAW_TIMEOUT,
        answer.err().map(|e| e.to_string())
    );
}

#[test]
fn json_length_beyond_the_frame_answers_bad_frame_and_closes() {
    let server = start(Server::builder());
    let mut stream = raw(&server);

    let mut frame = frame_bytes(Command::Status.code(), b"", b"{}{}");
    frame[5..9].copy_from_slice(&100u32.to_be_bytes());
    send(&mut stream, &frame);
    assert_bad_frame(
        &mut stream,
        "json length 100 does not fit in a frame of 9 bytes",
    );
    assert!(closed(&mut stream));

    // A length shorter than the header is refused the same way.
    let mut stream = raw(&server);
    send(&mut stream, &[0, 0, 0, 2, Command::Status.code(), 0]);
    assert_bad_frame(&mut stream, "shorter than its header");
    assert!(closed(&mut stream));

    assert_status_answers(&server, &mut raw(&server));
}

#[test]
fn invalid_json_answers_bad_frame_and_keeps_the_connection() {
    let server = start(Server::builder());
    let mut stream = raw(&server);

    for json in [
        &b"{not json"[..],
        b"[1, 2]",
        b"\"text\"",
        b"{\"a\":1} trailing",
    ] {
        send(
            &mut stream,
            &frame_bytes(Command::Status.code(), json, b"raw"),
        );
        assert_bad_frame(&mut stream, "bad request frame: ");
    }
    assert_status_answers(&server, &mut stream);
}

#[test]
fn unknown_command_answers_unknown_command_and_keeps_the_connection() {
    let server = start(Server::builder());
    let mut stream = raw(&server);

    for code in [0x00, 0x0e, 0x7f, 0xff] {
        send(&mut stream, &frame_bytes(code, b"{}", b""));
        let answer = read_frame(&mut stream);
        assert_eq!(answer.code, Status::BadRequest.code(), "{}", answer.json);
        assert_eq!(answer.json["error"]["code"], "unknown_command");
        assert_eq!(
            answer.json["error"]["message"],
            format!("unknown command code {code}")
        );
    }
    assert_status_answers(&server, &mut stream);
}
