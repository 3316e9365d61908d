//! Tests of the `functions` client commands through the real binary. `tests/cli.sh` drives
//! every command the way a shell script does; the tests here cover what a shell makes
//! awkward to check: bodies byte for byte, which stream `-i` writes to, the shape of
//! `--json` output, a stdout closed early, and finding the socket through a config file.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{manifest_dir, Server};

/// A CLI run (or the whole script) that takes longer fails the test instead of hanging it.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// Starts a server and waits until its socket is bound, a moment after HTTP listens.
fn start() -> Server {
    let server = Server::builder().start();
    let bound = server.wait_for_log("socket api listening on", Duration::from_secs(30));
    assert!(
        bound,
        "socket not bound; stderr:\n{}",
        server.logs_tail(8000)
    );
    server
}

/// `program` with no inherited `FUNCTIONS_*` variable but `FUNCTIONS_SOCKET=socket`.
fn command(program: impl AsRef<std::ffi::OsStr>, socket: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FUNCTIONS_") {
            command.env_remove(key);
        }
    }
    command.env("FUNCTIONS_SOCKET", socket);
    command
}

fn functions(socket: &Path) -> Command {
    command(env!("CARGO_BIN_EXE_functions"), socket)
}

/// Runs `command` with `stdin` as its input, in a process group of its own that is
/// killed when it overruns [`RUN_DEADLINE`].
fn run(mut command: Command, stdin: &[u8]) -> Output {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().expect("failed to start the command");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });

    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("failed to poll the command") {
            break status;
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on the process group of a child we have not reaped yet.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            panic!("{command:?} still running after {RUN_DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs the CLI with `args`; panics with its output and the server's log unless it exits 0.
fn ok(server: &Server, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = functions(server.socket_path());
    command.args(args);
    let output = run(command, stdin);
    assert!(
        output.status.success(),
        "functions {args:?}: {}\nstdout: {}\nstderr: {}\nserver:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        server.logs_tail(4000)
    );
    output
}

/// Writes `source` as `NAME.ts` in `dir` and deploys it.
fn deploy(server: &Server, dir: &TempDir, name: &str, source: &str) {
    let file = dir.path().join(format!("{name}.ts"));
    std::fs::write(&file, source).unwrap();
    ok(server, &["deploy", name, file.to_str().unwrap()], b"");
}

#[test]
fn shell_script_passes_every_check() {
    let server = start();
    let mut bash = command("bash", server.socket_path());
    bash.arg(manifest_dir().join("tests/cli.sh"))
        .env("FUNCTIONS_BIN", env!("CARGO_BIN_EXE_functions"));
    let started = Instant::now();
    let output = run(bash, b"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !stdout.contains("not ok"),
        "tests/cli.sh: {}\n{stdout}\nstderr:\n{}\nserver:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.logs_tail(8000)
    );
    eprintln!("tests/cli.sh passed in {:?}", started.elapsed());
}

#[test]
fn binary_body_round_trips_through_invoke_byte_for_byte() {
    let server = start();
    let dir = TempDir::new().unwrap();
    let source = "export default async (r: Request) => new Response(await r.arrayBuffer());\n";
    deploy(&server, &dir, "bytes", source);

    // Every byte value, then a pseudo-random tail: NULs, invalid UTF-8, CR LF, all of it.
    let mut body: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let mut x: u32 = 12345;
    body.extend((0..200_000).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    }));
    let file = dir.path().join("body.bin");
    std::fs::write(&file, &body).unwrap();

    let data = format!("@{}", file.display());
    let output = ok(&server, &["invoke", "bytes", "--data", &data], b"");
    assert!(
        output.stdout == body,
        "--data @FILE body changed on the way"
    );
    assert!(output.stderr.is_empty(), "{:?}", output.stderr);

    let output = ok(&server, &["invoke", "bytes", "--data", "-"], &body);
    assert!(output.stdout == body, "--data - body changed on the way");
}

#[test]
fn include_flag_writes_status_and_headers_to_stderr_only() {
    let server = start();
    let dir = TempDir::new().unwrap();
    let source = r#"export default () =>
  new Response("created\n", { status: 201, headers: { "x-test": "yes" } });
"#;
    deploy(&server, &dir, "made", source);

    let output = ok(&server, &["invoke", "made", "-i"], b"");
    assert_eq!(output.stdout, b"created\n");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.first(), Some(&"HTTP 201"), "{stderr}");
    assert!(lines.contains(&"x-test: yes"), "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("x-invocation-id: ") && l.len() > 17),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("HTTP ") || l.contains(": ")),
        "{stderr}"
    );
}

/// The keys of a one-line JSON object printed on stdout.
#[track_caller]
fn json_keys(output: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.lines().count(), 1, "not one line: {text}");
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut keys: Vec<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn json_output_is_one_line_with_the_servers_field_names() {
    let server = start();
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("hello.ts");
    std::fs::write(&file, "export default () => new Response('hi');\n").unwrap();
    let file = file.to_str().unwrap();
    let json = |args: &[&str]| json_keys(&ok(&server, args, b""));

    let deployed = json(&["deploy", "hello", file, "--json", "--env", "A=1"]);
    assert_eq!(deployed, ["build_ms", "name", "unchanged", "version"]);
    ok(&server, &["invoke", "hello"], b"");
    assert_eq!(json(&["list", "--json"]), ["functions"]);
    let info = json(&["info", "hello", "--json"]);
    for key in [
        "active_version",
        "effective",
        "env_keys",
        "settings",
        "state",
        "versions",
    ] {
        assert!(info.iter().any(|k| k == key), "info lacks {key}: {info:?}");
    }
    assert_eq!(
        json(&["env", "hello", "list", "--json"]),
        ["env", "name", "revealed"]
    );
    assert_eq!(
        json(&["env", "hello", "set", "B=2", "--json"]),
        ["keys", "name"]
    );
    assert_eq!(json(&["logs", "--json"]), ["last_id", "logs"]);
    assert_eq!(
        json(&["metrics", "hello", "--json"]),
        ["functions", "window_ms"]
    );
    let status = json(&["status", "--json"]);
    assert_eq!(
        status,
        [
            "functions",
            "http",
            "pid",
            "socket",
            "uptime_ms",
            "version",
            "workers"
        ]
    );
    assert_eq!(
        json(&["register", "other", "--json"]),
        ["name", "registered"]
    );
    assert_eq!(json(&["delete", "other", "--json"]), ["deleted", "name"]);
}

#[test]
fn closed_stdout_pipe_is_a_quiet_success() {
    let server = start();
    let dir = TempDir::new().unwrap();
    deploy(
        &server,
        &dir,
        "big",
        "export default () => new Response('y'.repeat(1 << 22));\n",
    );

    // Like `functions invoke big | head -c 0`: the reader is gone before the body comes.
    let mut command = functions(server.socket_path());
    command
        .args(["invoke", "big"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}: {:?}",
        output.status,
        output.stderr
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn socket_is_found_through_functions_conf_despite_unrelated_bad_keys() {
    let server = start();
    let dir = TempDir::new().unwrap();
    let config = format!(
        "no_such_key = 1\nmax_workers = many\nsocket = {} # the test server\n",
        server.socket_path().display()
    );
    std::fs::write(dir.path().join("functions.conf"), config).unwrap();

    // ./functions.conf of the working directory, no flag and no FUNCTIONS_SOCKET.
    let mut command = functions(server.socket_path());
    command
        .env_remove("FUNCTIONS_SOCKET")
        .current_dir(dir.path());
    command.args(["status", "--json"]);
    let output = run(command, b"");
    assert!(
        output.status.success(),
        "{:?}",
        String::from_utf8_lossy(&output.stderr)
    );

    // With neither, the default ./data/functions.sock does not exist: exit code 5.
    let mut command = functions(server.socket_path());
    command
        .env_remove("FUNCTIONS_SOCKET")
        .current_dir(dir.path());
    command.args(["status", "--config", "/dev/null"]);
    let output = run(command, b"");
    assert_eq!(output.status.code(), Some(5), "{:?}", output);
}
