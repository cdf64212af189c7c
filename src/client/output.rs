//! Where jamc writes: stdout and stderr shared by the client threads, and how
//! each reply is printed in plain, `--raw` and `--json` modes.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::answer::{rfc868_instant, rfc868_text, rfc868_value, Protocol};
use super::cli::{Mode, Settings, Target};
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

/// Server text made safe to print: a server must not forge a status line or
/// perfdata, or drive the terminal (jamc(1), SECURITY).
///
/// Control characters become `\x1b` (or `\u{85}` above ASCII), bytes that are
/// not UTF-8 `\xff`, `|` (the perfdata bar) `\|`, and `\` itself `\\`, so the
/// escaping cannot be mistaken for text. Bidirectional overrides, which can
/// make a terminal show text in another order than it is, become `\u{202e}`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '|' => out.push_str("\\|"),
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() || is_bidi_control(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn server_text_is_escaped() {
        assert_eq!(escape(b"JAM 14:03:27"), "JAM 14:03:27");
        assert_eq!(escape(b"\x1b[2J"), "\\x1b[2J");
        assert_eq!(escape(b"a\rJAM OK"), "a\\x0dJAM OK");
        assert_eq!(escape(b"x | offset=0.000s"), "x \\| offset=0.000s");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape(b"\xff\xfe!"), "\\xff\\xfe!");
        assert_eq!(escape("\u{85}\u{202e}é".as_bytes()), "\\u{85}\\u{202e}é");
        assert_eq!(escape(b"\x7f\t"), "\\x7f\\x09");
    }
}
