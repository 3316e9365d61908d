//! The integration tests: one binary that starts the real `functions` server in temporary
//! directories and talks HTTP to it. `support` holds the shared helper, `serve` the
//! behaviour tests of the server, and `cases` runs every shared real-world case of
//! `tests/cases/` through the gateway.

mod cases;
mod serve;
mod support;
mod watch;
