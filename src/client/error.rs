//! What can go wrong asking a server the time, in words ([`ClientError`]).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::answer::MAX_REPLY_BYTES;
use super::escape::escape;
use super::thresholds::Status;

/// Why connecting to one address failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing listens there.
    Refused,
    /// No route to the host or network.
    Unreachable,
    /// No answer within the time left.
    TimedOut,
    /// Anything else, in the system's words.
    Other(String),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Refused => f.write_str("connection refused"),
            ConnectFailure::Unreachable => f.write_str("unreachable"),
            ConnectFailure::TimedOut => f.write_str("timed out"),
            ConnectFailure::Other(why) => f.write_str(why),
        }
    }
}

/// A failure asking one server: which server, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// The server as jamc names it (`localhost:45000`).
    pub server: String,
    /// What went wrong.
    pub kind: ClientErrorKind,
}

/// Everything that can go wrong asking a server the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// The host name did not resolve.
    Resolve {
        host: String,
        /// The resolver's words.
        why: String,
    },
    /// The host has no address of the family asked for.
    NoAddress {
        host: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// No address accepted the connection.
    Connect {
        /// Each address tried and why it failed.
        attempts: Vec<(SocketAddr, ConnectFailure)>,
        /// The timeout, for the message.
        timeout: Duration,
    },
    /// No complete reply within the timeout.
    ReplyTimeout { timeout: Duration },
    /// Part of a reply came, not all of it, within the timeout.
    Incomplete {
        timeout: Duration,
        /// What had arrived (a line without its end, some of RFC 868's four bytes).
        partial: Vec<u8>,
    },
    /// The server answered with an `ERROR` line.
    ServerSaid {
        /// The line, e.g. `ERROR server busy`.
        line: String,
    },
    /// A reply line that is neither `JAM ...` nor `ERROR ...`.
    NotJam {
        /// The line (invalid UTF-8 replaced).
        line: String,
    },
    /// A daytime or RFC 868 reply that holds no time.
    NotTime {
        /// The protocol, by name.
        protocol: &'static str,
        /// The reply (invalid UTF-8 replaced).
        line: String,
    },
    /// A reply longer than [`MAX_REPLY_BYTES`] without a line end.
    TooLong,
    /// The server closed the connection in the middle of a reply line.
    Unterminated {
        /// What had arrived (invalid UTF-8 replaced).
        partial: String,
    },
    /// The server closed the connection before replying.
    ClosedEarly,
    /// The server reset the connection.
    Reset,
    /// Another I/O error.
    Io {
        /// What jamc was doing.
        doing: &'static str,
        /// The system's words.
        why: String,
    },
    /// The reply's time could not be read with `--format` (check mode).
    Time { why: String },
}

impl ClientError {
    /// A failure of `kind` asking `server`.
    pub fn new(server: &str, kind: ClientErrorKind) -> ClientError {
        ClientError {
            server: server.to_string(),
            kind,
        }
    }

    /// The monitoring state this failure means for `--check`.
    pub fn status(&self) -> Status {
        match self.kind {
            // A JAM line whose time does not fit --format: the check's own
            // settings are wrong, so the clock cannot be judged.
            ClientErrorKind::Time { .. } => Status::Unknown,
            // Anything else, a reply that is no JAM or ERROR line at all (an
            // SSH or HTTP banner) included, is the service failing: the
            // monitoring-plugins guidelines keep UNKNOWN for the plugin's
            // own failures.
            _ => Status::Critical,
        }
    }
}

/// What jamd's refusals mean for the person who reads them (jamc(1), OUTPUT).
fn refusal_in_words(line: &str) -> Option<&'static str> {
    Some(match line.strip_prefix("ERROR ")?.trim() {
        "access denied" => "this address is not allowed to use the server",
        "rate limited" => "too many connections from this address lately; try again in a moment",
        "server busy" => "the server has as many clients as it takes; try again later",
        "server shutting down" => "the server is stopping",
        "idle timeout" => "the server gave up waiting for a request",
        _ => return None,
    })
}

fn secs(d: Duration) -> String {
    format!("{}", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = &self.server;
        match &self.kind {
            ClientErrorKind::Resolve { host, why } => write!(f, "cannot resolve {host}: {why}"),
            ClientErrorKind::NoAddress { host, family } => {
                write!(f, "{host} has no {family} address")
            }
            ClientErrorKind::Connect { attempts, timeout } => {
                if attempts
                    .iter()
                    .all(|(_, why)| *why == ConnectFailure::TimedOut)
                {
                    return write!(
                        f,
                        "timed out connecting to {server} after {} s",
                        secs(*timeout)
                    );
                }
                match attempts.as_slice() {
                    [(_, why)] => write!(f, "cannot connect to {server}: {why}"),
                    _ => {
                        write!(f, "cannot connect to {server}: ")?;
                        for (i, (addr, why)) in attempts.iter().enumerate() {
                            let sep = if i == 0 { "" } else { "; " };
                            write!(f, "{sep}{addr} {why}")?;
                        }
                        Ok(())
                    }
                }
            }
            ClientErrorKind::ReplyTimeout { timeout } => write!(
                f,
                "timed out waiting for a reply from {server} after {} s",
                secs(*timeout)
            ),
            ClientErrorKind::Incomplete { timeout, partial } => write!(
                f,
                "timed out waiting for a reply from {server} after {} s: only \"{}\" arrived, without a line end",
                secs(*timeout),
                escape(partial)
            ),
            ClientErrorKind::ServerSaid { line } => {
                write!(f, "{server}: server said {}", escape(line.as_bytes()))?;
                match refusal_in_words(line) {
                    Some(words) => write!(f, " ({words})"),
                    None => Ok(()),
                }
            }
            ClientErrorKind::NotJam { line } => {
                write!(
                    f,
                    "{server}: reply is not a JAM line: \"{}\"",
                    escape(line.as_bytes())
                )
            }
            ClientErrorKind::NotTime { protocol, line } => write!(
                f,
                "{server}: reply is not a {protocol} time: \"{}\"",
                escape(line.as_bytes())
            ),
            ClientErrorKind::TooLong => write!(
                f,
                "{server}: reply longer than {MAX_REPLY_BYTES} bytes without a line end"
            ),
            ClientErrorKind::Unterminated { partial } => write!(
                f,
                "{server}: reply not terminated: server closed the connection after \"{}\"",
                escape(partial.as_bytes())
            ),
            ClientErrorKind::ClosedEarly => {
                write!(f, "{server}: server closed the connection before replying")
            }
            ClientErrorKind::Reset => write!(f, "{server}: server reset the connection"),
            ClientErrorKind::Io { doing, why } => write!(f, "{server}: {doing}: {why}"),
            ClientErrorKind::Time { why } => write!(f, "{server}: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}
