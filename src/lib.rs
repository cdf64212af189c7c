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
//! - [`clock`]: "what time is it, rendered how": format + zone → string, cached.
//! - [`config`]: the TOML schema, defaults, validation, `FILE:LINE:COLUMN` errors.
//! - [`listen`]: listening sockets: socket2 bind, socket activation, inetd stdin.
//! - [`server`]: the event-loop workers: accept, connections, limits, timers, shutdown.
//! - [`control`]: signals and service-manager notification.
//! - [`log`]: syslog / stderr logging that never blocks a worker.
//! - [`metrics`]: counters and the Prometheus `/metrics` endpoint.
//! - [`client`]: what jamc does (query, parallel, check).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod control;
pub mod listen;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod proxy;
pub mod server;
pub mod sources;
pub mod sys;
