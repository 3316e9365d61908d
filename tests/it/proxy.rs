//! The reverse-proxy setup of `docs/reverse-proxy/nginx.conf`, run for real: a real nginx
//! from that template (free port, temp prefix, two timeouts lowered) in front of a real
//! server. It closes what tiny_http leaves open: slow-header, stalled-body and oversized
//! or ambiguous requests are answered or cut off by nginx and never reach the gateway,
//! whose access log is the proof, while normal requests go through untouched; nginx
//! also limits requests in progress per address and keeps /metrics to this machine.
//! nginx is required: without it these tests fail and say how to install it.

use std::io::{self, Read, Write};
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use std::{env, fs, thread};

use tempfile::TempDir;

use crate::support::{manifest_dir, procs, test_function, Request, Server};

/// The template's client_header_timeout and client_body_timeout, lowered to this.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack for a busy machine on top of CLIENT_TIMEOUT before a cut-off counts as missing.
const SLACK: Duration = Duration::from_secs(3);

/// The nginx executable: PATH first, then where distributions put it.
fn find_nginx() -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = env::var_os("PATH")
        .map(|path| {
            env::split_paths(&path)
                .map(|dir| dir.join("nginx"))
                .collect()
        })
        .unwrap_or_default();
    let known = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"].map(PathBuf::from);
    on_path.into_iter().chain(known).find(|p| p.is_file())
}

fn nginx_binary() -> PathBuf {
    find_nginx().expect("nginx_present() was checked first")
}

/// Whether nginx is here to test with. README's test command must pass on a machine with
/// only Rust, Node.js and npm, so without nginx these tests say so and do nothing, unless
/// FUNCTIONS_REQUIRE_NGINX is set (.ci/run installs nginx and sets it): then they fail.
fn nginx_present() -> bool {
    if find_nginx().is_some() {
        return true;
    }
    if env::var_os("FUNCTIONS_REQUIRE_NGINX").is_some() {
        panic!(
            "nginx is not installed, and FUNCTIONS_REQUIRE_NGINX asks for the reverse-proxy \
             tests: install it (`apt-get install nginx-light` or `nginx` on Debian)"
        );
    }
    eprintln!("NOTE: nginx is not installed; the reverse-proxy tests did not run (see .ci/run)");
    false
}

/// Replaces the one occurrence of `from`; a template edit that drops it fails loudly.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    let count = text.matches(from).count();
    assert_eq!(count, 1, "the nginx template has {count} times `{from}`");
    text.replacen(from, to, 1)
}

/// A free port of 127.0.0.1 (free a moment ago: a start that loses the race retries).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("no free port");
    listener.local_addr().unwrap().port()
}

/// One nginx master (and its workers, in its own process group) with a temp prefix.
struct Nginx {
    child: Child,
    reaped: bool,
    addr: SocketAddr,
    prefix: TempDir,
}

impl Nginx {
    /// Starts nginx from the template in front of `upstream` and waits until it answers.
    fn start(upstream: SocketAddr) -> Nginx {
        let binary = nginx_binary();
        let template = fs::read_to_string(manifest_dir().join("docs/reverse-proxy/nginx.conf"))
            .expect("failed to read docs/reverse-proxy/nginx.conf");
        let mut failures = Vec::new();
        for _ in 0..3 {
            let mut nginx = Nginx::spawn(&binary, &template, upstream);
            match nginx.wait_answering(Duration::from_secs(10)) {
                Ok(()) => return nginx,
                Err(why) => failures.push(why),
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n"));
    }

    fn spawn(binary: &Path, template: &str, upstream: SocketAddr) -> Nginx {
        let prefix = TempDir::new().expect("failed to create a temp dir");
        // Started as root, nginx runs its workers as nobody: they must reach the prefix.
        fs::set_permissions(prefix.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let timeout = format!("{}s;", CLIENT_TIMEOUT.as_secs());
        let mut config = replace_once(template, "127.0.0.1:8081;", &format!("{addr};"));
        config = replace_once(
            &config,
            "server 127.0.0.1:8080;",
            &format!("server {upstream};"),
        );
        config = replace_once(
            &config,
            "client_header_timeout 10s;",
            &format!("client_header_timeout {timeout}"),
        );
        config = replace_once(
            &config,
            "client_body_timeout 10s;",
            &format!("client_body_timeout {timeout}"),
        );
        config = replace_once(
            &config,
            "worker_shutdown_timeout 40s;",
            "worker_shutdown_timeout 1s;",
        );
        let conf = prefix.path().join("nginx.conf");
        fs::write(&conf, config).expect("failed to write nginx.conf");

        // The info log says why nginx closed each connection; stderr holds start errors.
        let info_log = prefix.path().join("info.log");
        let stderr = fs::File::create(prefix.path().join("stderr.log")).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg(format!(
                "daemon off; error_log {} info;",
                info_log.display()
            ))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", binary.display()));
        Nginx {
            child,
            reaped: false,
            addr,
            prefix,
        }
    }

    fn wait_answering(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let health = crate::support::http::send(self.addr, &Request::get("/health"));
            if health.as_ref().is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped = true;
                return Err(format!("nginx exited with {status}: {}", self.logs()));
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "no answer in {timeout:?} ({health:?}): {}",
                    self.logs()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn read(&self, file: &str) -> String {
        fs::read_to_string(self.prefix.path().join(file)).unwrap_or_default()
    }

    /// Its stderr, error log and access log, for failure messages.
    fn logs(&self) -> String {
        let files = ["stderr.log", "info.log", "access.log"];
        files.map(|f| format!("--- {f}\n{}", self.read(f))).join("")
    }

    /// Waits until the log `file` of the prefix has a line holding every one of `needles`.
    fn wait_for_line(&self, file: &str, needles: &[&str]) -> bool {
        let deadline = Instant::now() + SLACK;
        loop {
            let log = self.read(file);
            if log.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGQUIT (graceful: workers finish and exit first), then SIGKILL to the whole
    /// group. The master is reaped last, so its group id cannot be reused meanwhile.
    fn stop(&mut self) {
        if self.reaped {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while !exited_unreaped(pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: the group is nginx's own (process_group(0)); its leader is unreaped.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether our child `pid` has exited, without reaping it (WNOWAIT).
fn exited_unreaped(pid: libc::pid_t) -> bool {
    // SAFETY: waitid(2) with WNOHANG | WNOWAIT writes only into `info`.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 && info.si_pid() != 0
    }
}

/// Starts a server with `hello` deployed and nginx in front of it.
fn start() -> (Server, Nginx) {
    let server = Server::builder()
        .copy_function(&test_function("hello.ts"))
        .start();
    let nginx = Nginx::start(server.addr());
    (server, nginx)
}

/// Sends raw bytes on `stream`, returns the status code and the rest of the answer.
fn exchange(mut stream: TcpStream, bytes: &[u8]) -> (u16, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // nginx may answer before it read everything; its answer is what counts.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        answer.extend_from_slice(&buf[..n]);
        if complete(&answer) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok());
    let status = status.unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

/// Whether `answer` holds a whole head and as much body as its Content-Length says.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let named = name.eq_ignore_ascii_case("content-length");
        named.then(|| value.trim().parse::<usize>().ok()).flatten()
    });
    length.is_some_and(|length| body.len() >= length)
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("failed to connect to nginx")
}

/// A connection to `to` from the loopback address `from`, so nginx sees another client.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        unreachable!("nginx listens on 127.0.0.1")
    };
    let sockaddr = |addr: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let (local, remote) = (sockaddr(SocketAddrV4::new(from, 0)), sockaddr(to));
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket owned by the TcpStream at once; bind and connect read only
    // the sockaddr_in values above, of the length given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let fd = stream.as_raw_fd();
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// A client that sends part of a request, then dribbles header bytes or stalls, and
/// notes when the other side closed or reset the connection.
struct SlowClient {
    stream: TcpStream,
    dribbles: bool,
    opened: Instant,
    closed: Option<Duration>,
}

impl SlowClient {
    fn open(addr: SocketAddr, head: &str, dribbles: bool) -> SlowClient {
        let mut stream = connect(addr);
        stream
            .write_all(head.as_bytes())
            .expect("failed to send the start of a request");
        stream.set_nonblocking(true).unwrap();
        SlowClient {
            stream,
            dribbles,
            opened: Instant::now(),
            closed: None,
        }
    }

    /// One more header byte, as a slowloris client sends.
    fn dribble(&mut self) {
        if self.dribbles && self.is_open() && self.stream.write(b"x").is_err() {
            self.closed = Some(self.opened.elapsed());
        }
    }

    /// Whether the connection is still open. nginx answers nothing to a client it times
    /// out (it resets the connection); anything it did send would be read and ignored.
    fn is_open(&mut self) -> bool {
        if self.closed.is_none() {
            let mut buf = [0; 1024];
            match self.stream.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Ok(n) if n > 0 => {}
                _ => self.closed = Some(self.opened.elapsed()),
            }
        }
        self.closed.is_none()
    }
}

/// Keeps the clients going, dribbling once a second, until all are closed or
/// CLIENT_TIMEOUT + SLACK passed; returns how long each stayed open (None: still open).
fn until_cut_off(clients: &mut [SlowClient]) -> Vec<Option<Duration>> {
    let deadline = Instant::now() + CLIENT_TIMEOUT + SLACK;
    let mut next_byte = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && clients.iter_mut().any(SlowClient::is_open) {
        if Instant::now() >= next_byte {
            clients.iter_mut().for_each(SlowClient::dribble);
            next_byte += Duration::from_secs(1);
        }
        thread::sleep(Duration::from_millis(20));
    }
    clients.iter().map(|c| c.closed).collect()
}

/// Asserts every client was cut off by the timeout: not at once, not much after it.
#[track_caller]
fn assert_timed_out(what: &str, open_for: &[Option<Duration>], nginx: &Nginx) {
    let window = CLIENT_TIMEOUT - Duration::from_millis(300)..CLIENT_TIMEOUT + SLACK;
    for (i, open) in open_for.iter().enumerate() {
        assert!(
            open.is_some_and(|d| window.contains(&d)),
            "{what} #{i} was open for {open:?} (None: not cut off), expected about \
             {CLIENT_TIMEOUT:?}; nginx:\n{}",
            nginx.logs()
        );
    }
}

/// A GET through nginx that must get the function's answer, with the invocation id the
/// gateway logged for it; returns how long it took.
#[track_caller]
fn get_through(nginx: &Nginx, server: &Server, path: &str) -> Duration {
    let response = send_through(nginx, Request::get(path));
    assert_eq!(response.status, 200, "GET {path}: {}", response.text());
    assert_eq!(response.text(), "hello world\n");
    let id = response
        .header("x-invocation-id")
        .expect("no X-Invocation-Id");
    let line = format!("GET {path} status=200 function=hello invocation={id} ");
    assert!(
        server.wait_for_log(&line, Duration::from_secs(5)),
        "the gateway did not log {line:?}:\n{}",
        server.logs_tail(4000)
    );
    response.total
}

#[track_caller]
fn send_through(nginx: &Nginx, request: Request) -> crate::support::Response {
    crate::support::http::send(nginx.addr, &request).unwrap_or_else(|e| {
        let (method, path) = (&request.method, &request.path);
        panic!(
            "{method} {path} through nginx failed: {e}\n{}",
            nginx.logs()
        )
    })
}

/// Sends GET `path` through nginx until `done` holds for the answer (nginx counts a
/// connection once it has read its headers, which it does a moment after we sent them).
#[track_caller]
fn send_wait(
    nginx: &Nginx,
    path: &str,
    done: impl Fn(&crate::support::Response) -> bool,
) -> crate::support::Response {
    let deadline = Instant::now() + SLACK;
    loop {
        let response = send_through(nginx, Request::get(path));
        if done(&response) || Instant::now() >= deadline {
            return response;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the gateway wrote no access line for any of these paths. A last request
/// through nginx goes first: its line comes after any the others could have caused.
#[track_caller]
fn assert_never_reached(nginx: &Nginx, server: &Server, paths: &[String]) {
    get_through(nginx, server, "/functions/hello/last");
    let logs = server.logs();
    for path in paths {
        assert!(
            !logs.contains(&format!(" {path} status=")),
            "{path} reached the gateway:\n{logs}"
        );
    }
}

#[test]
fn nginx_forwards_normal_requests_and_answers_bad_framing_and_oversized_ones_itself() {
    if !nginx_present() {
        return;
    }
    let (server, nginx) = start();
    let mut refused = Vec::new();

    // A normal request, and a 12 KiB cookie (within the limits), reach the function.
    get_through(&nginx, &server, "/functions/hello/normal");
    let cookie = Request::get("/functions/hello/cookie").header("Cookie", &"c".repeat(12 << 10));
    assert_eq!(send_through(&nginx, cookie).status, 200);

    // Ambiguous framing: refused by nginx (1.21.1 and later), so tiny_http, which would
    // frame these its own way and keep the connection, never sees them.
    let framing = [
        (
            "cl-and-te",
            "Content-Length: 5\r\nTransfer-Encoding: chunked",
            400,
        ),
        ("two-lengths", "Content-Length: 0\r\nContent-Length: 5", 400),
        ("signed-length", "Content-Length: +5", 400),
        ("gzip-coding", "Transfer-Encoding: gzip, chunked", 501),
        ("folded-te", "X-Fold: a\r\n Transfer-Encoding: chunked", 400),
    ];
    for (name, headers, status) in framing {
        let path = format!("/functions/hello/{name}");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\nConnection: close\r\n\r\n0\r\n\r\n"
        );
        let (got, answer) = exchange(connect(nginx.addr), request.as_bytes());
        assert_eq!(got, status, "{name}: {answer}");
        refused.push(path);
    }

    // Headers: one 64 KiB line, or five 15 KiB lines (over 64 KiB in all).
    let long_line = format!("X-Big: {}", "b".repeat(64 << 10));
    let five_lines: Vec<_> = (0..5)
        .map(|i| format!("X-Part-{i}: {}", "p".repeat(15 << 10)))
        .collect();
    for (name, headers) in [
        ("long-line", long_line),
        ("five-lines", five_lines.join("\r\n")),
    ] {
        let path = format!("/functions/hello/{name}");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\nConnection: close\r\n\r\n");
        let (status, answer) = exchange(connect(nginx.addr), request.as_bytes());
        assert!([400, 431, 494].contains(&status), "{name}: {answer}");
        refused.push(path);
    }

    // A declared body over client_max_body_size: nginx's 413, in the gateway's shape.
    let path = "/functions/hello/too-large".to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        (16 << 20) + 1
    );
    let (status, answer) = exchange(connect(nginx.addr), head.as_bytes());
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    refused.push(path);

    // /metrics answers this machine only: 403 to another address, even on loopback.
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let other = connect_from(Ipv4Addr::new(127, 0, 0, 2), nginx.addr)
        .expect("failed to connect from 127.0.0.2");
    assert_eq!(exchange(other, request).0, 403);
    let (status, answer) = exchange(connect(nginx.addr), request);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("# TYPE"), "{answer}");
    assert!(server.wait_for_log("GET /metrics status=200", Duration::from_secs(5)));
    assert_eq!(server.logs().matches("GET /metrics status=").count(), 1);

    // Nothing but /functions/, /health and /metrics is passed on.
    let path = "/elsewhere".to_string();
    let response = send_through(&nginx, Request::get(&path));
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error"]["code"], "not_found");
    refused.push(path);

    assert_never_reached(&nginx, &server, &refused);

    // With the server gone, nginx answers 502 itself, in the gateway's shape.
    drop(server);
    let down = send_through(&nginx, Request::get("/functions/hello"));
    assert_eq!(down.status, 502, "{}", down.text());
    assert_eq!(down.json()["error"]["code"], "gateway_unavailable");
}

#[test]
fn slow_and_stalled_clients_are_cut_off_by_nginx_while_others_are_served() {
    if !nginx_present() {
        return;
    }
    let (server, nginx) = start();
    get_through(&nginx, &server, "/functions/hello/warm");

    // A slow-header client and a client that stalls its body after 10 of 1000 bytes.
    let slow = "GET /functions/hello/slow-header HTTP/1.1\r\nHost: x\r\n";
    let stalled = "POST /functions/hello/stalled-body HTTP/1.1\r\nHost: x\r\n\
        Content-Length: 1000\r\n\r\n0123456789";
    let mut clients = [
        SlowClient::open(nginx.addr, slow, true),
        SlowClient::open(nginx.addr, stalled, false),
    ];

    // Meanwhile a normal request is served, before either is cut off.
    let took = get_through(&nginx, &server, "/functions/hello/during");
    assert!(clients.iter_mut().all(SlowClient::is_open), "took {took:?}");

    // Both are cut off by nginx's timeouts; neither ever reached the gateway.
    let open_for = until_cut_off(&mut clients);
    assert_timed_out("slow-header client", &open_for[..1], &nginx);
    assert_timed_out("stalled-body client", &open_for[1..], &nginx);
    eprintln!(
        "slow header cut after {:?}, stalled body after {:?}",
        open_for[0], open_for[1]
    );
    // nginx logs both as 408, though it sends nothing before it resets them.
    for request in [
        "GET /functions/hello/slow-header HTTP/1.1\" 408",
        "POST /functions/hello/stalled-body HTTP/1.1\" 408",
    ] {
        assert!(
            nginx.wait_for_line("access.log", &[request]),
            "nginx did not log {request}:\n{}",
            nginx.logs()
        );
    }

    // Fifty slowloris connections do not slow normal requests down.
    let mut clients: Vec<_> = (0..50)
        .map(|i| {
            let head = format!("GET /functions/hello/slowloris-{i} HTTP/1.1\r\nHost: x\r\n");
            SlowClient::open(nginx.addr, &head, true)
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        slowest = slowest.max(get_through(
            &nginx,
            &server,
            &format!("/functions/hello/beside-{i}"),
        ));
    }
    assert!(
        clients.iter_mut().all(SlowClient::is_open),
        "slowest took {slowest:?}"
    );
    let open_for = until_cut_off(&mut clients);
    assert_timed_out("slowloris client", &open_for, &nginx);
    let last = open_for.iter().flatten().max();
    eprintln!(
        "50 slowloris clients cut after at most {last:?}; normal requests took at most {slowest:?}"
    );

    // A request counts against limit_conn once nginx has read its head: with 32 bodies
    // stalled, the next request from the same address gets nginx's 429.
    let mut clients: Vec<_> = (0..32)
        .map(|i| {
            let head = format!(
                "POST /functions/hello/held-{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
            );
            SlowClient::open(nginx.addr, &head, false)
        })
        .collect();
    // Probes until nginx has read all 32 heads; the JSON code shows nginx answered.
    let busy = send_wait(&nginx, "/functions/hello/probe", |r| r.status == 429);
    assert_eq!(busy.status, 429, "{}", busy.text());
    assert_eq!(busy.json()["error"]["code"], "too_many_connections");
    assert_eq!(busy.header("retry-after").as_deref(), Some("1"));
    assert_timed_out("held-body client", &until_cut_off(&mut clients), &nginx);

    let mut paths = vec![
        "/functions/hello/slow-header".to_string(),
        "/functions/hello/stalled-body".to_string(),
    ];
    paths.extend((0..50).map(|i| format!("/functions/hello/slowloris-{i}")));
    paths.extend((0..32).map(|i| format!("/functions/hello/held-{i}")));
    assert_never_reached(&nginx, &server, &paths);
    assert_stops_cleanly(nginx);
}

/// Stops nginx and asserts none of its processes is left.
fn assert_stops_cleanly(mut nginx: Nginx) {
    let workers = procs::descendants_of(nginx.child.id());
    assert!(!workers.is_empty(), "no nginx worker found");
    nginx.stop();
    let left: Vec<_> = workers
        .into_iter()
        .filter(|&p| procs::is_alive(p))
        .collect();
    assert!(left.is_empty(), "nginx workers left running: {left:?}");
}
