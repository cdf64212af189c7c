//! Where jamc writes: stdout and stderr shared by the client threads, and how
//! each reply is printed in plain, `--raw` and `--json` modes.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::cli::{Mode, Settings};
use super::net::Reply;
use super::query::Flow;

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

    /// Prints one reply of client `client` as the mode says.
    pub fn reply(&self, settings: &Settings, client: u32, reply: &Reply) -> Flow {
        let prefix = match settings.parallel {
            Some(_) => format!("[{client}] "),
            None => String::new(),
        };
        match settings.mode {
            Mode::Raw => {
                let mut bytes = prefix.into_bytes();
                bytes.extend_from_slice(&reply.line);
                bytes.push(b'\n');
                self.out(&bytes)
            }
            Mode::Json => {
                let line = String::from_utf8_lossy(&reply.line);
                let obj = JsonReply {
                    client,
                    server: &settings.target.to_string(),
                    reply: &line,
                    time: reply.jam_time(),
                    rtt_ms: (reply.rtt.as_secs_f64() * 1_000_000.0).round() / 1000.0,
                };
                match serde_json::to_string(&obj) {
                    Ok(text) => self.out(format!("{text}\n").as_bytes()),
                    Err(_) => Flow::Continue,
                }
            }
            Mode::Plain => match reply.jam_time() {
                Some(time) => self.out(format!("{prefix}{time}\n").as_bytes()),
                None => Flow::Continue,
            },
            Mode::Check(_) => Flow::Continue,
        }
    }
}
