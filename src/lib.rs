//! jamd: a small TCP time service, and jamc, its client.
//!
//! A client connects, sends `TIME`, and gets the server's clock back as
//! `JAM 14:03:27`. The data path is short and one-way:
//!
//! ```text
//! socket bytes → protocol::Session → protocol::Action → clock / reply → socket bytes
//! ```
//!
//! - [`protocol`]: the JAM protocol with no I/O: bytes in, actions out.
//! - [`daytime`], [`rfc868`]: the Daytime (RFC 867) and Time (RFC 868)
//!   replies, without any I/O.
//! - [`clock`]: "what time is it, rendered how": format + zone → string, cached.
//! - [`config`]: the TOML schema, defaults, validation, `FILE:LINE:COLUMN` errors.
//! - [`listener`]: what a listener is (address, transport, protocol).
//! - [`listen`]: listening sockets: socket2 bind, socket activation.
//! - [`server`]: the event-loop workers: accept, connections, limits, timers,
//!   shutdown; steered through [`server::Server`].
//! - [`daemon`]: the jamd process: command line, start-up, the control loop
//!   (signals, reload, service-manager notification), `--inetd` (what
//!   standard input is; one client over a pipe or socketpair), confinement,
//!   exit status.
//! - [`outcome`]: why a client was refused or its connection ended, in the
//!   names log lines and metrics share.
//! - [`log`]: syslog / stderr logging that never blocks a worker.
//! - [`access`]: who may connect: allow/deny lists, longest prefix wins (no I/O).
//! - [`sources`]: what each source may take: source keys, token buckets, the
//!   bounded per-source table (no I/O).
//! - [`proxy`]: the PROXY protocol header (v1, v2), parsed without I/O.
//! - [`metrics`]: counters and the Prometheus `/metrics` endpoint.
//! - [`client`]: what jamc does (query, parallel, check), and its command line.
//! - [`completions`]: shell completions for both programs, from their clap definitions.
//! - `sys` (private): the only `unsafe` code, thin wrappers over system calls
//!   (and reading a file that must be a regular one).
//!
//! `ARCHITECTURE.md` says how they fit: the threads, who owns what, and where
//! a new key, limit, refusal reason or metric goes.

// Every public item of the library has a doc comment. (Set here, not in
// Cargo.toml's [lints]: there it would also ask it of the benchmark's main.)
#![warn(missing_docs)]
// Only what the tests, fuzz targets and benchmarks use is `pub`; the rest is
// `pub(crate)`, so that the compiler sees dead code. These docs are for
// contributors (`cargo doc --document-private-items`), and link to
// crate-private modules on purpose.
#![allow(rustdoc::private_intra_doc_links)]

pub mod access;
pub mod client;
pub mod clock;
pub mod completions;
pub mod config;
pub mod daemon;
pub mod daytime;
mod labels;
pub(crate) mod listen;
pub(crate) mod listener;
pub(crate) mod log;
pub mod metrics;
pub(crate) mod outcome;
pub mod protocol;
pub mod proxy;
pub mod rfc868;
pub(crate) mod server;
pub mod sources;
mod sys;
