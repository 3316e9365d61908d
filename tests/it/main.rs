//! The integration tests: one binary that starts the real `functions` server in temporary
//! directories and talks to it over HTTP and its Unix socket. `support` holds the shared
//! helper, `serve` the behaviour tests of the server, `cases` runs every shared real-world
//! case of `tests/cases/` through the gateway, `cli` drives the `functions` commands (and
//! `tests/cli.sh`), `socket` the socket API's frames, `watch` redeploys, `faults` the faults of
//! docs/reliability.md not reached elsewhere, `load` the gateway under concurrent load and
//! `streaming` streamed response bodies.

mod cases;
mod cli;
mod faults;
mod load;
mod logs;
mod metrics;
mod proxy;
mod readme;
mod serve;
mod socket;
mod streaming;
mod support;
mod watch;
