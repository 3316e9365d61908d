//! A workaround for a race in tiny_http 0.12 that can leave a new connection unserved.
//!
//! tiny_http reads each connection on a thread of its `TaskPool`
//! (`tiny_http-0.12.0/src/util/task_pool.rs`, `spawn`). When the pool counts an idle
//! thread it queues the connection and wakes one, instead of starting a thread; but a
//! woken thread is counted as idle until it has taken the lock, so in a burst of new
//! connections more are queued than there are threads to take them. A queued connection
//! then waits until some pool thread finishes its own connection, which for a keep-alive
//! client may be never: its requests are not even read.
//!
//! What frees it is any pool thread becoming free. So this thread looks in
//! `/proc/net/tcp` and `tcp6` for connections to the gateway's address with bytes the
//! server has not read (their receive queue): a connection served by a pool thread is
//! read at once, a queued one is not. For each such connection it opens a connection to
//! the gateway and closes it at once. The pool either starts a thread for that one, which
//! after the empty connection takes a queued one, or queues it behind them and wakes a
//! thread that takes the first queued one. tiny_http reads an empty connection as end of
//! input and drops it without a word; our code never sees it.
//!
//! When it looks: a burst of new connections is what leaves one stuck, and such a burst
//! always brings requests from the connections that were not. So a gateway thread that
//! takes a request from a connection not seen before wakes this thread when that is the
//! first new connection for [`BURST`]; it then looks every [`FAST`] while new connections
//! keep coming (at most a tenth of its time reading tables, which cost a few milliseconds
//! each on a host with many sockets), and every [`INTERVAL`] up to [`QUIET`] after the
//! last one. Within [`BURST`] of a new connection one look is enough (a needless nudge
//! costs an empty connection); later a connection must be unread at two looks in a row,
//! since a busy server leaves requests unread for a moment. A steady load over
//! kept-alive connections costs nothing. Measured with wrk opening 50 connections at
//! once: the stuck ones are nudged 20-40 ms after the burst.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Context;

/// How often the tables are read while busy. Reading them costs a few milliseconds of
/// kernel time on a host with many sockets, so not more often.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// How long after the last request from a new connection the tables are read.
pub const QUIET: Duration = Duration::from_secs(2);

/// Within this of a new connection, one look is enough and the next comes after
/// [`FAST`] (or ten times what the last look took, if more).
const BURST: Duration = Duration::from_millis(300);
const FAST: Duration = Duration::from_millis(30);

/// Connections remembered at most; past it, those quiet for a minute are forgotten.
const REMEMBERED: usize = 4096;

/// When the gateway last saw a request from a connection it had not seen before, in
/// milliseconds since `epoch`: a burst of new connections is what can leave one stuck,
/// and such a burst always brings requests from the connections that were not.
pub struct Activity {
    epoch: Instant,
    last_new_ms: AtomicU64,
    /// Peer address of each connection seen, with when it was last seen.
    seen: Mutex<HashMap<SocketAddr, u64>>,
    /// The nudge thread, woken when a burst of new connections begins.
    nudger: Mutex<Option<thread::Thread>>,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_new_ms: AtomicU64::new(0),
            seen: Mutex::new(HashMap::new()),
            nudger: Mutex::new(None),
        }
    }

    /// Called by a gateway thread for every request it takes, with the client's address.
    pub fn touch(&self, peer: Option<SocketAddr>) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let Some(peer) = peer else {
            return;
        };
        let mut seen = self.seen.lock();
        if seen.insert(peer, now).is_none() {
            let before = self.last_new_ms.swap(now, Ordering::Relaxed);
            // The first new connection in a while: look at the tables now, not at the
            // next tick, so a connection stuck in the same burst waits little.
            if now.saturating_sub(before) > BURST.as_millis() as u64 {
                if let Some(nudger) = self.nudger.lock().as_ref() {
                    nudger.unpark();
                }
            }
            if seen.len() > REMEMBERED {
                seen.retain(|_, at| now.saturating_sub(*at) < 60_000);
            }
        }
    }

    /// Whether a new connection brought a request within `quiet` of now.
    fn recent(&self, quiet: Duration) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_new_ms.load(Ordering::Relaxed)) <= quiet.as_millis() as u64
    }
}

/// Where to connect to reach a gateway bound to `addr` (a wildcard means loopback).
fn target(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Most nudges sent in one interval.
const MAX_NUDGES: usize = 256;

/// Nudges while the gateway is busy, until it is closed.
pub fn run(context: Arc<Context>) {
    let to = target(context.local_addr);
    let local = Local::of(context.local_addr);
    let mut before: HashSet<String> = HashSet::new();
    *context.activity.nudger.lock() = Some(thread::current());
    let mut wait = INTERVAL;
    while !context.closed.load(Ordering::Acquire) {
        thread::park_timeout(wait);
        wait = INTERVAL;
        let looking = !before.is_empty() || context.activity.recent(QUIET);
        if context.closed.load(Ordering::Acquire) || !looking {
            continue;
        }
        let bursting = context.activity.recent(BURST);
        let began = Instant::now();
        let now: HashSet<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|table| std::fs::read_to_string(table).ok())
            .flat_map(|text| unread_connections(&text, &local))
            .collect();
        // Right after new connections, one look: a needless nudge costs an empty
        // connection. Otherwise unread at two looks in a row: a busy server leaves
        // requests unread for a moment; a connection stuck in tiny_http's queue stays so.
        let unread = match bursting {
            true => now.len(),
            false => now.intersection(&before).count(),
        };
        if bursting || !now.is_empty() {
            // Look again soon, but spend at most a tenth of the time reading tables (a
            // look can take tens of milliseconds with many TIME_WAIT sockets).
            wait = FAST.max(began.elapsed() * 10);
        }
        before = now;
        if unread > 0 {
            log::debug!("nudging tiny_http for {unread} connections with unread requests");
        }
        for _ in 0..unread.min(MAX_NUDGES) {
            // Connected and dropped at once: the empty connection is all tiny_http needs.
            if let Err(e) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                log::debug!("gateway nudge to {to} failed: {e}");
                break;
            }
        }
    }
}

/// The gateway's local address as `/proc/net/tcp{,6}` writes it: the port, and the
/// address unless the gateway listens on all of them.
struct Local {
    ip: Option<String>,
    port: String,
}

impl Local {
    fn of(addr: SocketAddr) -> Local {
        // The kernel prints each 32-bit word of the address in host byte order.
        let words = |bytes: &[u8]| {
            bytes
                .chunks(4)
                .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
                .collect::<String>()
        };
        let ip = match addr.ip() {
            ip if ip.is_unspecified() => None,
            IpAddr::V4(ip) => Some(words(&ip.octets())),
            IpAddr::V6(ip) => Some(words(&ip.octets())),
        };
        Local {
            ip,
            port: format!("{:04X}", addr.port()),
        }
    }

    fn matches(&self, field: &str) -> bool {
        let Some((ip, port)) = field.split_once(':') else {
            return false;
        };
        port == self.port && self.ip.as_deref().is_none_or(|mine| mine == ip)
    }
}

/// Established connections to the gateway's address with bytes in their receive queue,
/// in the text of `/proc/net/tcp` or `/proc/net/tcp6`, by their peer's address.
fn unread_connections(table: &str, local: &Local) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().take(5).collect();
            let [_, address, peer, state, queues] = fields[..] else {
                return None;
            };
            let rx = queues.split(':').nth(1).unwrap_or("0");
            let unread = state == "01" && !rx.trim_start_matches('0').is_empty();
            (unread && local.matches(address)).then(|| peer.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_reached_on_loopback() {
        let any4: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let any6: SocketAddr = "[::]:8080".parse().unwrap();
        let some: SocketAddr = "192.0.2.7:9".parse().unwrap();
        assert_eq!(target(any4), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target(any6), "[::1]:8080".parse().unwrap());
        assert_eq!(target(some), some);
    }

    #[test]
    fn unread_connections_are_established_ones_to_the_port_with_bytes_queued() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 34 1
   1: 0100007F:1F90 0100007F:AF4C 01 00000000:0000009D 00:00000000 00000000  1000        0 35 1
   2: 0100007F:1F90 0100007F:AF4D 01 00000000:00000000 00:00000000 00000000  1000        0 36 1
   3: 0100007F:AF4E 0100007F:1F90 01 00000000:00000010 00:00000000 00000000  1000        0 37 1
   4: 0100007F:1F90 0100007F:AF4F 08 00000000:00000001 00:00000000 00000000  1000        0 38 1
   5: 0100007F:1F91 0100007F:AF50 01 00000000:00000100 00:00000000 00000000  1000        0 39 1
   6: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C350 01 00000000:00000200 00:00000000 00000000  1000 0 40 1
";
        // Line 1 and the IPv6 line 6: the listener (0A), an empty queue, the client side
        // (3), a closing connection (08) and another port do not count.
        let any = |port: u16| Local::of(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port));
        assert_eq!(unread_connections(table, &any(8080)).len(), 2);
        assert_eq!(unread_connections(table, &any(8081)).len(), 1);
        assert_eq!(unread_connections("", &any(8080)).len(), 0);
        // Bound to one address: only its connections count.
        let loopback = Local::of("127.0.0.1:8080".parse().unwrap());
        assert_eq!(unread_connections(table, &loopback), ["0100007F:AF4C"]);
        let other = Local::of("127.0.0.2:8080".parse().unwrap());
        assert_eq!(unread_connections(table, &other).len(), 0);
        let v6 = Local::of("[::1]:8080".parse().unwrap());
        assert_eq!(unread_connections(table, &v6).len(), 1);
    }

    #[test]
    fn only_a_new_connection_counts_as_recent() {
        let activity = Activity::new();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        activity.touch(Some(peer));
        assert!(activity.recent(QUIET));
        activity.last_new_ms.store(0, Ordering::Relaxed);
        let later = Activity {
            epoch: Instant::now() - Duration::from_secs(10),
            last_new_ms: AtomicU64::new(0),
            seen: Mutex::new(HashMap::new()),
            nudger: Mutex::new(None),
        };
        later.touch(Some(peer));
        assert!(later.recent(QUIET), "a new connection");
        later.last_new_ms.store(0, Ordering::Relaxed);
        later.touch(Some(peer));
        assert!(!later.recent(QUIET), "the same connection again");
    }
}
