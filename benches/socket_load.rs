//! Load generator for the socket API's INVOKE, run by `benches/compare.sh`:
//!
//!     cargo bench --bench socket_load -- SOCKET NAME CONNECTIONS SECONDS [BODY_BYTES]
//!
//! Each of CONNECTIONS threads holds one connection and sends INVOKE frames back to back
//! for SECONDS (a POST with BODY_BYTES of binary body when given, else a GET), checking
//! each reply's status. Prints one line like wrk's report script does:
//! `RESULT requests req_per_s p50_us p99_us errors`.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use functions::api::codes::{Command, Status};
use functions::client::Client;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 4 {
        eprintln!("usage: socket_load SOCKET NAME CONNECTIONS SECONDS [BODY_BYTES]");
        std::process::exit(2);
    }
    let socket = PathBuf::from(&args[0]);
    let name = args[1].clone();
    let connections: usize = args[2].parse().expect("CONNECTIONS is a number");
    let seconds: u64 = args[3].parse().expect("SECONDS is a number");
    let body_bytes: usize = args.get(4).map_or(0, |b| b.parse().expect("BODY_BYTES"));
    let body: Vec<u8> = (0..body_bytes).map(|i| (i * 7 + 3) as u8).collect();

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (socket, name, body) = (socket.clone(), name.clone(), body.clone());
            thread::spawn(move || run(&socket, &name, &body, until))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mut times, failed) = worker.join().expect("a load thread panicked");
        latencies.append(&mut times);
        errors += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).copied().unwrap_or(0)
    };
    println!(
        "RESULT {} {:.1} {} {} {}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        at(0.50),
        at(0.99),
        errors
    );
}

/// Invokes `name` until `until`; the latency of each success in microseconds, and the
/// number of failures.
fn run(socket: &Path, name: &str, body: &[u8], until: Instant) -> (Vec<u64>, usize) {
    let mut client = Client::connect(socket).expect("cannot reach the socket");
    let method = if body.is_empty() { "GET" } else { "POST" };
    let mut times = Vec::new();
    let mut errors = 0;
    while Instant::now() < until {
        let payload = json!({ "name": name, "method": method });
        let sent = Instant::now();
        match client.call(Command::Invoke, payload, body.to_vec()) {
            Ok(reply) if reply.status == Status::Ok && reply.json["status"] == 200 => {
                times.push(sent.elapsed().as_micros() as u64);
            }
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                client = Client::connect(socket).expect("cannot reach the socket");
            }
        }
    }
    (times, errors)
}
