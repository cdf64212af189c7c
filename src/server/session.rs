//! What a connection says: one protocol session per connection, picked by
//! the listener it came in on.
//!
//! [`Conn`](super::conn::Conn) is the transport: it moves bytes, holds the
//! client's ticket and ends the connection. What to send and when to stop is
//! the session's: [`Session::on_open`] (a protocol that speaks first),
//! [`Session::on_input`] (bytes the client sent), [`Session::farewell`] (the
//! server ends the connection on its own: idle, shutdown) and
//! [`Protocol::refusal`] (admission said no). Each returns bytes and a
//! [`Then`]; none does I/O.
//!
//! A new protocol is a module of its own with its rules (as `protocol.rs` is
//! JAM's), a [`Protocol`] and a [`Session`] arm here, and its listener's
//! configuration. One that answers once and closes (as daytime and time of
//! RFC 867 and RFC 868 do) writes its reply in `on_open` and returns
//! [`Then::Linger`]: the connection sends it, shuts its sending side, and
//! reads and discards what the client still sends until it closes (at most
//! [`LINGER`](super::conn::LINGER)), so that no reset destroys the reply.

use std::sync::Arc;

use crate::clock::{Clock, ClockCache};
use crate::listener::Transport;
use crate::metrics::{Command, Shard};
use crate::outcome::{CloseReason, Refusal};
use crate::protocol::{self, write_time_reply, Action, End, ErrorReply, Reply};

pub(crate) use crate::listener::Protocol;

impl Protocol {
    /// A new session of this protocol (`max_line_bytes`: the limit in
    /// effect; each input applies the one in effect then).
    pub(crate) fn session(self, max_line_bytes: usize) -> Session {
        match self {
            Protocol::Jam => Session::Jam(protocol::Session::new(max_line_bytes)),
            Protocol::Daytime => Session::Daytime,
            Protocol::Rfc868 => Session::Rfc868,
        }
    }

    /// What a client admission refused is told before it is closed, if
    /// anything.
    pub(crate) fn refusal(self, why: Refusal) -> Option<&'static [u8]> {
        match self {
            Protocol::Jam => jam_refusal(why).map(ErrorReply::line),
            // These protocols have no error reply: a refused client sees
            // the connection close without a byte.
            Protocol::Daytime | Protocol::Rfc868 => None,
        }
    }
}

/// The JAM line for a refusal.
fn jam_refusal(why: Refusal) -> Option<ErrorReply> {
    match why {
        Refusal::AccessDenied => Some(ErrorReply::AccessDenied),
        Refusal::Busy | Refusal::SourceBusy => Some(ErrorReply::ServerBusy),
        Refusal::RateLimited => Some(ErrorReply::RateLimited),
        // A balancer that does not speak the protocol would pass any reply
        // on to a client as if it were the server's answer.
        Refusal::BadProxyHeader => None,
    }
}

/// One connection's protocol state. Kept small: thousands of idle clients
/// each hold one.
#[derive(Debug)]
pub(crate) enum Session {
    /// A JAM session: the unfinished part of the current request line.
    Jam(protocol::Session),
    /// Daytime (RFC 867): the time as a line, sent on open.
    Daytime,
    /// Time (RFC 868): the time in 4 bytes, sent on open.
    Rfc868,
}

/// How the connection goes on once the bytes a session returned are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Serve: read what the client sends next.
    Serve,
    /// Close for this reason once the bytes are written.
    Close(CloseReason),
    /// The reply is complete: shut the sending side, read and discard what
    /// the client still sends until it closes (or the linger time is up),
    /// then close for this reason. (For the protocols that answer once on
    /// open; JAM does not.)
    Linger(CloseReason),
}

/// What a session needs from the worker to answer: the time and the
/// counters, and the limits of the configuration in effect.
pub(crate) struct Cx<'a> {
    /// The worker's cached rendering of the time.
    pub(crate) cache: &'a mut ClockCache,
    /// The clock of the current configuration.
    pub(crate) clock: &'a Arc<Clock>,
    /// The worker's cached rendering of the daytime line.
    pub(crate) daytime_cache: &'a mut ClockCache,
    /// The clock of daytime lines (`[daytime] format` in `[time] timezone`).
    pub(crate) daytime_clock: &'a Arc<Clock>,
    /// The worker's own metrics counters.
    pub(crate) metrics: &'a Shard,
    /// `server.max_line_bytes` in effect.
    pub(crate) max_line_bytes: usize,
}

/// What a session made of some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heard {
    /// How to go on.
    pub(crate) then: Then,
    /// Requests answered (the `requests=N` of the `closed` line).
    pub(crate) requests: u64,
    /// A complete request (or empty) line arrived: the client is not idle.
    pub(crate) active: bool,
}

impl Session {
    /// The protocol it speaks.
    pub(crate) fn protocol(&self) -> Protocol {
        match self {
            Session::Jam(_) => Protocol::Jam,
            Session::Daytime => Protocol::Daytime,
            Session::Rfc868 => Protocol::Rfc868,
        }
    }

    /// The connection is open (and its client admitted): what to send
    /// before the client says anything.
    pub(crate) fn on_open(&mut self, cx: &mut Cx<'_>, out: &mut Vec<u8>) -> Heard {
        let protocol = self.protocol();
        match self {
            // JAM waits for a request.
            Session::Jam(_) => Heard {
                then: Then::Serve,
                requests: 0,
                active: false,
            },
            // The reply, at once; then the client may only close.
            Session::Daytime | Session::Rfc868 => {
                if let Session::Daytime = self {
                    crate::daytime::write_reply(out, cx.daytime_cache, cx.daytime_clock);
                } else {
                    out.extend_from_slice(&crate::rfc868::reply());
                }
                cx.metrics.replies(protocol, Transport::Tcp, 1);
                Heard {
                    then: Then::Linger(CloseReason::Sent),
                    requests: 1,
                    active: true,
                }
            }
        }
    }

    /// The client sent `input`: the replies go to `out`. What the session
    /// does not take (after it decided to close) is left in `input`.
    pub(crate) fn on_input(
        &mut self,
        input: &mut &[u8],
        cx: &mut Cx<'_>,
        out: &mut Vec<u8>,
    ) -> Heard {
        match self {
            Session::Jam(s) => jam_input(s, input, cx, out),
            // What the client sends is read and discarded (RFC 867, 868).
            Session::Daytime | Session::Rfc868 => {
                *input = &[];
                Heard {
                    then: Then::Linger(CloseReason::Sent),
                    requests: 0,
                    active: false,
                }
            }
        }
    }

    /// The server ends the connection on its own for `reason` (idle,
    /// shutdown): the last words the client is told, if any.
    pub(crate) fn farewell(&self, reason: CloseReason) -> Option<&'static [u8]> {
        match self {
            Session::Jam(_) => match reason {
                CloseReason::Idle => Some(ErrorReply::IdleTimeout.line()),
                CloseReason::Shutdown => Some(ErrorReply::ShuttingDown.line()),
                CloseReason::TooLong => Some(ErrorReply::LineTooLong.line()),
                CloseReason::Quit | CloseReason::Eof | CloseReason::Error | CloseReason::Sent => {
                    None
                }
            },
            // Nothing but the reply is ever sent.
            Session::Daytime | Session::Rfc868 => None,
        }
    }
}

/// Runs the JAM protocol over `input`: one reply per request line, the
/// time rendered as it is answered.
fn jam_input(
    session: &mut protocol::Session,
    input: &mut &[u8],
    cx: &mut Cx<'_>,
    out: &mut Vec<u8>,
) -> Heard {
    // The limit in effect now: a reload applies from the next line.
    session.set_max_line_bytes(cx.max_line_bytes);
    let mut heard = Heard {
        then: Then::Serve,
        requests: 0,
        active: false,
    };
    // Counted here and added once per read: pipelined requests cost one
    // atomic add, not one each.
    let (mut times, mut unknown) = (0, 0);
    while let Some(action) = session.next_action(input) {
        heard.active = true;
        match action.reply() {
            Some(Reply::Time) => write_time_reply(out, cx.cache.now(cx.clock)),
            Some(Reply::Error(e)) => out.extend_from_slice(e.line()),
            None => {}
        }
        if let Some(end) = action.close() {
            heard.then = Then::Close(match end {
                End::Quit => CloseReason::Quit,
                End::TooLong => CloseReason::TooLong,
            });
        }
        match action {
            Action::Time => times += 1,
            Action::Unknown => unknown += 1,
            Action::Quit | Action::TooLong | Action::Empty => {}
        }
    }
    heard.requests = times + unknown;
    cx.metrics.requests(Command::Time, times);
    cx.metrics.requests(Command::Unknown, unknown);
    heard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jam_refusal_says_why_except_to_a_balancer() {
        let said = |why| {
            Protocol::Jam
                .refusal(why)
                .map(|l| String::from_utf8_lossy(l).into_owned())
        };
        assert_eq!(
            said(Refusal::AccessDenied).as_deref(),
            Some("ERROR access denied\r\n")
        );
        assert_eq!(
            said(Refusal::Busy).as_deref(),
            Some("ERROR server busy\r\n")
        );
        assert_eq!(
            said(Refusal::SourceBusy).as_deref(),
            Some("ERROR server busy\r\n")
        );
        assert_eq!(
            said(Refusal::RateLimited).as_deref(),
            Some("ERROR rate limited\r\n")
        );
        assert_eq!(said(Refusal::BadProxyHeader), None);
    }

    #[test]
    fn daytime_and_time_answer_on_open_then_linger_and_discard_input() {
        let config = crate::config::Config::default();
        let clock = config.time.clock();
        let daytime_clock = std::sync::Arc::new(Clock {
            format: crate::clock::TimeFormat::parse("%s").unwrap(),
            zone: crate::clock::Zone::utc(),
        });
        let (mut cache, mut daytime_cache) = (ClockCache::new(), ClockCache::new());
        let metrics = crate::metrics::Metrics::new(1);
        let mut cx = Cx {
            cache: &mut cache,
            clock: &clock,
            daytime_cache: &mut daytime_cache,
            daytime_clock: &daytime_clock,
            metrics: metrics.worker(0),
            max_line_bytes: 16,
        };
        let before = crate::clock::unix_now().0;
        let mut out = Vec::new();
        let mut s = Protocol::Daytime.session(16);
        let heard = s.on_open(&mut cx, &mut out);
        let after = crate::clock::unix_now().0;
        assert_eq!(heard.then, Then::Linger(CloseReason::Sent));
        assert_eq!(heard.requests, 1);
        let line = String::from_utf8(out).unwrap();
        let shown: i64 = line.strip_suffix("\r\n").unwrap().parse().unwrap();
        assert!(before <= shown && shown <= after, "{line:?}");
        let mut input = &b"anything at all\r\n"[..];
        let mut out = Vec::new();
        let heard = s.on_input(&mut input, &mut cx, &mut out);
        assert!(input.is_empty() && out.is_empty());
        assert_eq!(
            (heard.then, heard.requests),
            (Then::Linger(CloseReason::Sent), 0)
        );

        let mut s = Protocol::Rfc868.session(16);
        let mut out = Vec::new();
        let heard = s.on_open(&mut cx, &mut out);
        assert_eq!(heard.then, Then::Linger(CloseReason::Sent));
        let secs = u32::from_be_bytes(out.try_into().unwrap());
        let want = crate::rfc868::seconds(crate::clock::unix_now().0);
        assert!(want.wrapping_sub(secs) <= 1, "{secs} vs {want}");
        assert_eq!(
            metrics.counters().replies,
            [[0, 0], [1, 0], [1, 0]],
            "one TCP reply of each"
        );
        for p in [Protocol::Daytime, Protocol::Rfc868] {
            assert_eq!(p.refusal(Refusal::AccessDenied), None, "no error reply");
            assert_eq!(p.session(16).farewell(CloseReason::Shutdown), None);
        }
    }

    #[test]
    fn jam_says_farewell_on_idle_and_shutdown_only() {
        let s = Protocol::Jam.session(16);
        assert_eq!(
            s.farewell(CloseReason::Idle),
            Some(&b"ERROR idle timeout\r\n"[..])
        );
        assert_eq!(
            s.farewell(CloseReason::Shutdown),
            Some(&b"ERROR server shutting down\r\n"[..])
        );
        assert_eq!(s.farewell(CloseReason::Eof), None);
        assert_eq!(s.farewell(CloseReason::Error), None);
    }

    #[test]
    fn jam_answers_lines_counts_them_and_leaves_what_follows_quit() {
        let clock = crate::config::Config::default().time.clock();
        let mut cache = ClockCache::new();
        let metrics = crate::metrics::Metrics::new(1);
        let mut daytime_cache = ClockCache::new();
        let mut cx = Cx {
            cache: &mut cache,
            clock: &clock,
            daytime_cache: &mut daytime_cache,
            daytime_clock: &clock,
            metrics: metrics.worker(0),
            max_line_bytes: 16,
        };
        let mut s = Protocol::Jam.session(16);
        let mut out = Vec::new();
        assert_eq!(s.on_open(&mut cx, &mut out).then, Then::Serve);
        assert!(out.is_empty(), "JAM waits for a request");
        let mut input = &b"TIME\r\nHELLO\r\n\r\nQUIT\r\nTIME\r\n"[..];
        let heard = s.on_input(&mut input, &mut cx, &mut out);
        assert_eq!(heard.then, Then::Close(CloseReason::Quit));
        assert_eq!(heard.requests, 2);
        assert!(heard.active);
        assert_eq!(input, b"TIME\r\n", "what followed QUIT is left unread");
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("JAM "), "{out}");
        assert!(out.ends_with("\r\nERROR unknown command\r\n"), "{out}");
        assert_eq!(metrics.counters().requests, [1, 1]);

        let mut s = Protocol::Jam.session(16);
        let mut input = &b"TIME"[..];
        let mut out = Vec::new();
        let heard = s.on_input(&mut input, &mut cx, &mut out);
        assert_eq!(
            (heard.then, heard.requests, heard.active),
            (Then::Serve, 0, false)
        );
        assert!(out.is_empty(), "half a line is no request");
        let mut input = &b"TIME TIME TIME TIME\r\n"[..];
        let heard = s.on_input(&mut input, &mut cx, &mut out);
        assert_eq!(heard.then, Then::Close(CloseReason::TooLong));
        assert_eq!(out, b"ERROR line too long\r\n");
    }
}
