//! The JAM protocol, version 1, without any I/O.
//!
//! A [`Session`] is fed the bytes a client sent, in whatever pieces the network
//! delivered them, and hands back one [`Action`] per complete request line.
//! The action says everything the caller (the server's connection) must do,
//! in the manner of ntpd-rs's `ntp-proto`: which [`Reply`] to send
//! ([`Action::reply`]) and whether to close afterwards, and why
//! ([`Action::close`]). The lines a client is told when the server ends its
//! connection (idle, shutdown) or refuses it are [`ErrorReply`]s too. The
//! caller only moves bytes. Nothing here knows about sockets or clocks, which is what
//! lets the rules be tested to the byte and fuzzed.
//!
//! Memory is bounded: a session never holds more than `max_line_bytes` bytes of
//! an unfinished line, and holds nothing at all between lines.

use std::fmt;

/// What the server must do in answer to one request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `TIME`: reply `JAM <time>`.
    Time,
    /// `QUIT`: close the connection without a reply.
    Quit,
    /// Any other non-empty line: reply `ERROR unknown command`, keep the connection.
    Unknown,
    /// More than `max_line_bytes` arrived without a line end: reply
    /// `ERROR line too long`, then close.
    TooLong,
    /// A line that is empty once spaces and tabs are removed: no reply, but it
    /// is a complete line (it resets the idle timer).
    Empty,
}

impl Action {
    /// Whether the connection ends after this action.
    pub fn closes(self) -> bool {
        self.close().is_some()
    }

    /// What to send in answer, if anything.
    pub(crate) fn reply(self) -> Option<Reply> {
        match self {
            Action::Time => Some(Reply::Time),
            Action::Unknown => Some(Reply::Error(ErrorReply::UnknownCommand)),
            Action::TooLong => Some(Reply::Error(ErrorReply::LineTooLong)),
            Action::Quit | Action::Empty => None,
        }
    }

    /// Whether to close the connection once the reply is sent, and why.
    pub(crate) fn close(self) -> Option<End> {
        match self {
            Action::Quit => Some(End::Quit),
            Action::TooLong => Some(End::TooLong),
            Action::Time | Action::Unknown | Action::Empty => None,
        }
    }
}

/// A reply line to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `JAM <time>`, the time rendered as the request is answered (see
    /// [`write_time_reply`]).
    Time,
    /// An `ERROR …` line.
    Error(ErrorReply),
}

/// Why a JAM session ends the connection by its own rules (the server's
/// connection adds the reasons of the transport: the client closed, an
/// error, idle, shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client sent QUIT.
    Quit,
    /// A line longer than max_line_bytes.
    TooLong,
}

/// An error reply the server can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorReply {
    /// The line was not a known command.
    UnknownCommand,
    /// The line exceeded `max_line_bytes`.
    LineTooLong,
    /// No complete line within `idle_timeout`.
    IdleTimeout,
    /// Too many clients (in all, or from this source).
    ServerBusy,
    /// `[access]` denies the client.
    AccessDenied,
    /// The client's source opens connections faster than its rate.
    RateLimited,
    /// The shutdown grace period ended.
    ShuttingDown,
}

impl ErrorReply {
    /// The whole reply line, CR LF included.
    pub(crate) fn line(self) -> &'static [u8] {
        match self {
            ErrorReply::UnknownCommand => b"ERROR unknown command\r\n",
            ErrorReply::LineTooLong => b"ERROR line too long\r\n",
            ErrorReply::IdleTimeout => b"ERROR idle timeout\r\n",
            ErrorReply::ServerBusy => b"ERROR server busy\r\n",
            ErrorReply::AccessDenied => b"ERROR access denied\r\n",
            ErrorReply::RateLimited => b"ERROR rate limited\r\n",
            ErrorReply::ShuttingDown => b"ERROR server shutting down\r\n",
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.line();
        // The lines are ASCII constants; strip the CR LF for display.
        f.write_str(std::str::from_utf8(&line[..line.len() - 2]).unwrap_or("ERROR"))
    }
}

/// Appends the reply to `TIME` for an already rendered time to `out`.
pub fn write_time_reply(out: &mut Vec<u8>, rendered_time: &str) {
    out.extend_from_slice(b"JAM ");
    out.extend_from_slice(rendered_time.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Classifies one request line (its terminator already removed).
///
/// A trailing CR (of a CR LF terminator) is ignored.
pub fn parse_line(line: &[u8]) -> Action {
    parse_body(line.strip_suffix(b"\r").unwrap_or(line))
}

/// Classifies a line whose terminator (LF or CR LF) is already gone: a CR
/// left inside it is a character of the line, not a blank (`TIME\r\r\n`
/// is not TIME).
fn parse_body(line: &[u8]) -> Action {
    let word = trim_blanks(line);
    if word.is_empty() {
        Action::Empty
    } else if word.eq_ignore_ascii_case(b"TIME") {
        Action::Time
    } else if word.eq_ignore_ascii_case(b"QUIT") {
        Action::Quit
    } else {
        Action::Unknown
    }
}

fn trim_blanks(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The per-connection protocol state: the unfinished part of the current line.
///
/// The buffer is allocated only while a line is split across reads, so an idle
/// connection costs no heap memory here.
#[derive(Debug)]
pub struct Session {
    partial: Vec<u8>,
    max_line: usize,
    ended: bool,
}

impl Session {
    /// A new session accepting lines of at most `max_line_bytes` (terminator not counted).
    pub fn new(max_line_bytes: usize) -> Self {
        Session {
            partial: Vec::new(),
            max_line: max_line_bytes,
            ended: false,
        }
    }

    /// Changes the line limit (after a reload); applies from the next line.
    pub(crate) fn set_max_line_bytes(&mut self, max_line_bytes: usize) {
        self.max_line = max_line_bytes;
    }

    /// The number of bytes of an unfinished line held right now.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Whether the session has ended (after `QUIT` or a too-long line).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Takes bytes from the front of `input` until one request line is complete,
    /// and returns what to do about it.
    ///
    /// Returns `None` when `input` is used up without completing a line (the
    /// unfinished part is kept for the next call). After
    /// an action that [closes](Action::closes) the connection, the session has
    /// ended and every later call returns `None` without taking bytes.
    pub fn next_action(&mut self, input: &mut &[u8]) -> Option<Action> {
        while !self.ended && !input.is_empty() {
            // The terminator counts as the end of the line, not part of it; a CR
            // right before LF is part of the terminator. Allow one byte over the
            // limit for that CR, and check the real length once the line is whole.
            let room = self.max_line + 1 - self.partial.len().min(self.max_line + 1);
            let window = &input[..input.len().min(room + 1)];
            match memchr_lf(window) {
                Some(i) => {
                    let (line_part, rest) = input.split_at(i);
                    *input = &rest[1..];
                    let action = if self.partial.is_empty() {
                        classify(line_part, self.max_line)
                    } else {
                        self.partial.extend_from_slice(line_part);
                        let line = std::mem::take(&mut self.partial);
                        classify(&line, self.max_line)
                    };
                    if action.closes() {
                        self.end();
                    }
                    return Some(action);
                }
                None if window.len() > room => {
                    // More than max_line (+ a possible CR) bytes without a line end.
                    self.end();
                    return Some(Action::TooLong);
                }
                None => {
                    if self.partial.len() + window.len() > self.max_line {
                        // Exactly one byte over: only fine if it is the CR of a CR LF
                        // still to come. Anything else is too long.
                        let last = window[window.len() - 1];
                        if last != b'\r' || self.partial.len() + window.len() > self.max_line + 1 {
                            self.end();
                            return Some(Action::TooLong);
                        }
                    }
                    if self.partial.capacity() == 0 {
                        self.partial
                            .reserve_exact(window.len().max(16).min(self.max_line + 1));
                    }
                    self.partial.extend_from_slice(window);
                    *input = &input[window.len()..];
                }
            }
        }
        None
    }

    fn end(&mut self) {
        self.ended = true;
        self.partial = Vec::new();
    }
}

/// Classifies a complete line, enforcing the length limit (terminator not counted).
fn classify(line: &[u8], max_line: usize) -> Action {
    let body = line.strip_suffix(b"\r").unwrap_or(line);
    if body.len() > max_line {
        return Action::TooLong;
    }
    parse_body(body)
}

fn memchr_lf(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: usize, chunks: &[&[u8]]) -> Vec<Action> {
        let mut s = Session::new(max);
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut input = *chunk;
            while let Some(a) = s.next_action(&mut input) {
                if a != Empty {
                    out.push(a);
                }
            }
            // The table's cases come through here, so this names the case too.
            assert!(
                s.buffered() <= max + 1,
                "max {max}, sent {:?}: {} bytes held after piece {i}",
                shown(chunks),
                s.buffered()
            );
        }
        out
    }

    /// The pieces sent, printable: with the limit, a case's name in a failure.
    fn shown(chunks: &[&[u8]]) -> Vec<String> {
        chunks
            .iter()
            .map(|c| c.escape_ascii().to_string())
            .collect()
    }

    /// Sends one packet to `s`; the first action it completes, if any.
    fn feed(s: &mut Session, mut packet: &[u8]) -> Option<Action> {
        s.next_action(&mut packet)
    }

    use Action::*;

    #[test]
    fn request_lines_give_their_actions() {
        // (max_line_bytes, the pieces sent, the actions in answer)
        type Case = (usize, &'static [&'static [u8]], &'static [Action]);
        let cases: &[Case] = &[
            // A line ends with CR LF or a bare LF.
            (256, &[b"TIME\r\n"], &[Time]),
            (256, &[b"TIME\n"], &[Time]),
            // Commands are case-insensitive.
            (256, &[b"time\r\ntImE\r\nquit\r\n"], &[Time, Time, Quit]),
            // Spaces and tabs around the command are ignored.
            (256, &[b" \tTIME \t\r\n"], &[Time]),
            (256, &[b"\t quit\t\n"], &[Quit]),
            // Inner spaces make an unknown command.
            (256, &[b"TI ME\r\n"], &[Unknown]),
            (256, &[b"TIME NOW\r\n"], &[Unknown]),
            // Empty and blank lines are ignored.
            (256, &[b"\r\n\n  \t \r\nTIME\r\n"], &[Time]),
            // Invalid UTF-8 is an unknown command.
            (256, &[b"\xff\xfeTIME\r\n"], &[Unknown]),
            (256, &[b"T\xc3\x28\r\n"], &[Unknown]),
            // NUL and control bytes are an unknown command.
            (256, &[b"TIME\0\r\n"], &[Unknown]),
            (256, &[b"\rTIME\r\n"], &[Unknown]),
            (256, &[b"TIME\r\r\n"], &[Unknown]),
            // Pipelined requests are answered in order, up to QUIT.
            (
                256,
                &[b"TIME\r\nBOGUS\r\nTIME\nQUIT\r\nTIME\r\n"],
                &[Time, Unknown, Time, Quit],
            ),
            // A request split over packets is reassembled.
            (256, &[b"TI", b"M", b"E\r", b"\n"], &[Time]),
            (256, &[b"T", b"IME\r\nQU", b"IT\r\n"], &[Time, Quit]),
            // A line of exactly the limit ("TIME" and four spaces) is accepted...
            (8, &[b"TIME    \r\n"], &[Time]),
            (8, &[b"TIME    \n"], &[Time]),
            (8, &[b"TIME    \r", b"\n"], &[Time]),
            (8, &[b"TIME", b"    ", b"\r", b"\n"], &[Time]),
            // ...and one a byte longer is too long.
            (8, &[b"TIME     \r\n"], &[TooLong]),
            (8, &[b"TIME     \n"], &[TooLong]),
            (8, &[b"TIME", b"     \n"], &[TooLong]),
            // Too long ends the session.
            (4, &[b"TIME\r\nTIMETIME\r\nTIME\r\n"], &[Time, TooLong]),
        ];
        for (max, chunks, want) in cases {
            let sent = shown(chunks);
            assert_eq!(run(*max, chunks), *want, "max {max}, sent {sent:?}");
        }
    }

    #[test]
    fn a_blank_line_is_an_empty_action_neither_answered_nor_closing() {
        let mut s = Session::new(256);
        let mut input: &[u8] = b" \t\r\n";
        assert_eq!(s.next_action(&mut input), Some(Empty));
        assert!(Empty.reply().is_none() && !Empty.closes());
    }

    #[test]
    fn unknown_command_keeps_the_session() {
        let mut s = Session::new(256);
        let mut input: &[u8] = b"HELLO\r\nTIME\r\n";
        assert_eq!(s.next_action(&mut input), Some(Unknown));
        assert!(!s.is_ended());
        assert_eq!(s.next_action(&mut input), Some(Time));
    }

    #[test]
    fn every_split_point_gives_the_same_actions() {
        let input: &[u8] = b"TIME\r\n  time \r\nfoo\n\r\nQUIT\r\n";
        let whole = run(8, &[input]);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                assert_eq!(run(8, &[&input[..i], &input[i..j], &input[j..]]), whole);
            }
        }
    }

    #[test]
    fn quit_ends_the_session_and_later_bytes_are_left() {
        let mut s = Session::new(256);
        let mut input: &[u8] = b"QUIT\r\nTIME\r\n";
        assert_eq!(s.next_action(&mut input), Some(Quit));
        assert!(s.is_ended());
        assert_eq!(s.next_action(&mut input), None);
    }

    #[test]
    fn too_long_without_any_terminator_is_detected_at_once() {
        let mut s = Session::new(8);
        assert_eq!(feed(&mut s, b"123456789"), Some(TooLong));
        assert!(s.is_ended());
    }

    #[test]
    fn too_long_split_without_terminator_is_detected_when_the_limit_passes() {
        let mut s = Session::new(8);
        assert_eq!(feed(&mut s, b"12345678"), None);
        assert_eq!(s.buffered(), 8);
        assert_eq!(feed(&mut s, b"9"), Some(TooLong));
    }

    #[test]
    fn a_cr_at_the_limit_waits_for_its_lf() {
        let mut s = Session::new(8);
        assert_eq!(feed(&mut s, b"12345678\r"), None);
        assert_eq!(feed(&mut s, b"x"), Some(TooLong));
    }

    #[test]
    fn a_cr_at_the_limit_after_an_earlier_piece_waits_for_its_lf() {
        // The line so far and the new piece together reach the limit + 1
        // with a CR: it may be the CR of a CR LF.
        for split in 1..8 {
            let line = b"TIME    \r";
            let mut s = Session::new(8);
            assert_eq!(feed(&mut s, &line[..split]), None, "split at {split}");
            assert_eq!(feed(&mut s, &line[split..]), None, "split at {split}");
            assert_eq!(s.buffered(), 9);
            assert_eq!(feed(&mut s, b"\n"), Some(Time), "split at {split}");
            assert!(!s.is_ended());
        }
        // Anything else one byte over the limit is too long at once.
        let mut s = Session::new(8);
        assert_eq!(feed(&mut s, b"TIME"), None);
        assert_eq!(feed(&mut s, b"     "), Some(TooLong));
        assert!(s.is_ended());
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn a_too_long_line_is_refused_without_reading_on_to_its_end() {
        // However long the packet, the session looks at no more of a line
        // than the limit and two bytes (a CR, and the byte that shows the
        // line goes on): the rest of a too-long line is left unread.
        // (max_line_bytes, what came before, the packet that makes it too long)
        let cases: &[(usize, &[u8], &[u8])] = &[
            (8, b"", b"123456789x\nTIME\r\n"),
            (8, b"TIME", b"     x\nTIME\r\n"),
            (8, b"TIME    ", b"xy\nTIME\r\n"),
            (8, b"TIME    \r", b"x\nTIME\r\n"),
            (8, b"TIME    \r", b"\rx\n"),
            (1, b"a\r", b"x\n"),
        ];
        for &(max, before, packet) in cases {
            let mut s = Session::new(max);
            assert_eq!(feed(&mut s, before), None, "max {max}, before {before:?}");
            let mut input = packet;
            assert_eq!(s.next_action(&mut input), Some(TooLong), "{packet:?}");
            assert_eq!(
                input, packet,
                "max {max}, before {before:?}: took some of {packet:?}"
            );
            assert_eq!(s.buffered(), 0);
        }
    }

    #[test]
    fn a_new_line_limit_applies_to_the_next_line() {
        let mut s = Session::new(4);
        s.set_max_line_bytes(8);
        assert_eq!(feed(&mut s, b"TIME    \r\n"), Some(Time));
        assert_eq!(feed(&mut s, b"TIME    "), None);
        assert_eq!(feed(&mut s, b"\n"), Some(Time));
        s.set_max_line_bytes(4);
        assert_eq!(feed(&mut s, b"TIME \r\n"), Some(TooLong));
        let mut s = Session::new(256);
        s.set_max_line_bytes(3);
        assert_eq!(feed(&mut s, b"TIME"), Some(TooLong));
    }

    #[test]
    fn the_session_never_holds_more_than_the_limit() {
        let mut s = Session::new(16);
        for _ in 0..100 {
            let _ = feed(&mut s, b"ab");
            assert!(s.buffered() <= 17);
        }
        assert!(s.is_ended());
    }

    #[test]
    fn an_idle_session_holds_no_heap_memory() {
        let mut s = Session::new(256);
        assert_eq!(feed(&mut s, b"TIME\r\n"), Some(Time));
        assert_eq!(s.partial.capacity(), 0);
        assert_eq!(feed(&mut s, b"TI"), None);
        assert_eq!(feed(&mut s, b"ME\r\n"), Some(Time));
        assert_eq!(s.partial.capacity(), 0);
    }

    #[test]
    fn a_split_line_reserves_room_for_the_line_once() {
        // The buffer is sized when a line is first split: what arrived, at
        // least 16 bytes, at most the limit and a CR; a line that fits the
        // limit never makes it grow.
        let mut s = Session::new(256);
        assert_eq!(feed(&mut s, b"TI"), None);
        assert_eq!(s.partial.capacity(), 16);
        let mut s = Session::new(256);
        assert_eq!(feed(&mut s, &[b' '; 40]), None);
        assert_eq!(s.partial.capacity(), 40);
        let mut s = Session::new(8);
        for piece in [&b"TI"[..], b"ME", b"    ", b"\r"] {
            assert_eq!(feed(&mut s, piece), None);
            assert_eq!(s.partial.capacity(), 9, "after {piece:?}");
        }
        assert_eq!(feed(&mut s, b"\n"), Some(Time));
        assert_eq!(s.partial.capacity(), 0);
    }

    #[test]
    fn reply_lines_end_with_crlf() {
        let mut out = Vec::new();
        write_time_reply(&mut out, "14:03:27");
        assert_eq!(out, b"JAM 14:03:27\r\n");
        for e in [
            ErrorReply::UnknownCommand,
            ErrorReply::LineTooLong,
            ErrorReply::IdleTimeout,
            ErrorReply::ServerBusy,
            ErrorReply::AccessDenied,
            ErrorReply::RateLimited,
            ErrorReply::ShuttingDown,
        ] {
            assert!(e.line().ends_with(b"\r\n"));
            assert!(e.line().starts_with(b"ERROR "));
        }
        assert_eq!(ErrorReply::ServerBusy.to_string(), "ERROR server busy");
    }

    #[test]
    fn each_action_says_what_to_send_and_whether_to_close() {
        assert_eq!(Time.reply(), Some(Reply::Time));
        assert_eq!(
            Unknown.reply(),
            Some(Reply::Error(ErrorReply::UnknownCommand))
        );
        assert_eq!(TooLong.reply(), Some(Reply::Error(ErrorReply::LineTooLong)));
        assert_eq!(Quit.reply(), None);
        assert_eq!(Empty.reply(), None);
        assert_eq!(Quit.close(), Some(End::Quit));
        assert_eq!(TooLong.close(), Some(End::TooLong));
        for a in [Time, Unknown, Empty] {
            assert_eq!(a.close(), None);
        }
    }
}
