//! Where jamc writes: stdout and stderr shared by the client threads, and how
//! each reply is printed in plain, `--raw` and `--json` modes.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::answer::{rfc868_instant, rfc868_text, rfc868_value, Protocol};
use super::cli::{Mode, Settings, Target};
use super::escape::escape;
use super::net::Reply;

/// Whether a conversation goes on after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Ask again if `-n` says so.
    Continue,
    /// Say QUIT now.
    Stop,
}

/// stdout and stderr, shared by the client threads; a line is written whole.
pub struct Output<'a> {
    out: Mutex<&'a mut (dyn Write + Send)>,
    err: Mutex<&'a mut (dyn Write + Send)>,
    /// Set when stdout is gone (`jamc -n 1000 | head -1`): no point asking further.
    out_closed: AtomicBool,
}

/// One `--json` object.
#[derive(Serialize)]
struct JsonReply<'a> {
    client: u32,
    server: &'a str,
    reply: &'a str,
    time: Option<&'a str>,
    rtt_ms: f64,
    /// Named for daytime and rfc868 only (JAM's objects stay as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
}

impl<'a> Output<'a> {
    /// Writes to `out` and `err`.
    pub fn new(out: &'a mut (dyn Write + Send), err: &'a mut (dyn Write + Send)) -> Output<'a> {
        Output {
            out: Mutex::new(out),
            err: Mutex::new(err),
            out_closed: AtomicBool::new(false),
        }
    }

    /// Writes bytes to stdout; [`Flow::Stop`] once nobody reads it.
    pub fn out(&self, bytes: &[u8]) -> Flow {
        if let Ok(mut w) = self.out.lock() {
            // A closed stdout (jamc | head -1) is not worth a failure of its own,
            // but it does end the run.
            if w.write_all(bytes).and_then(|()| w.flush()).is_err() {
                self.out_closed.store(true, Ordering::Relaxed);
            }
        }
        if self.out_closed.load(Ordering::Relaxed) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Writes text to stderr.
    pub fn err(&self, text: &str) {
        if let Ok(mut w) = self.err.lock() {
            let _ = w.write_all(text.as_bytes()).and_then(|()| w.flush());
        }
    }

    /// Prints one reply from `target` to client `client` as the mode says;
    /// plain and raw lines start with `prefix` (`[3] `, `HOST:PORT `).
    pub fn reply(
        &self,
        settings: &Settings,
        target: &Target,
        client: u32,
        prefix: &str,
        reply: &Reply,
    ) -> Flow {
        // What the reply is as text (RFC 868's four bytes: their value), and
        // the time it shows as plain mode prints it.
        let (text, time): (String, Option<String>) = match settings.protocol {
            Protocol::Jam => (
                String::from_utf8_lossy(&reply.line).into_owned(),
                reply.jam_time().map(str::to_string),
            ),
            Protocol::Daytime => {
                let line = String::from_utf8_lossy(&reply.line).into_owned();
                (line.clone(), Some(line))
            }
            Protocol::Rfc868 => match rfc868_value(&reply.line) {
                Some(value) => (
                    value.to_string(),
                    Some(rfc868_text(rfc868_instant(value, reply.mid))),
                ),
                None => (String::from_utf8_lossy(&reply.line).into_owned(), None),
            },
        };
        match settings.mode {
            // The whole line, ERROR lines included, but escaped like every
            // other server text (jamc(1), OUTPUT): a plain reply reads as it
            // came.
            Mode::Raw => {
                let shown = match settings.protocol {
                    Protocol::Rfc868 => escape(text.as_bytes()),
                    _ => escape(&reply.line),
                };
                self.out(format!("{prefix}{shown}\n").as_bytes())
            }
            Mode::Json => {
                let obj = JsonReply {
                    client,
                    server: &target.to_string(),
                    reply: &text,
                    time: time.as_deref(),
                    rtt_ms: (reply.rtt.as_secs_f64() * 1_000_000.0).round() / 1000.0,
                    protocol: (settings.protocol != Protocol::Jam)
                        .then(|| settings.protocol.name()),
                };
                match serde_json::to_string(&obj) {
                    Ok(text) => self.out(format!("{text}\n").as_bytes()),
                    Err(_) => Flow::Continue,
                }
            }
            Mode::Plain => match time {
                Some(time) => self.out(format!("{prefix}{}\n", escape(time.as_bytes())).as_bytes()),
                None => Flow::Continue,
            },
            Mode::Check(_) | Mode::Conformance { .. } => Flow::Continue,
        }
    }
}
