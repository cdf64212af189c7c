//! The client half of the protocols jamc speaks: one reader for what a server
//! sends (a line, a fixed number of bytes, or everything up to the close),
//! every wait bounded by a deadline, and what a wait that ended early had
//! received so far. Plain mode, `--check` and `--conformance` read through it.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Instant;

/// How a wait for the server's words ended without them; each holds what had
/// arrived (a partial reply, e.g. `JAM 04:50:54` without its line end).
#[derive(Debug)]
pub enum End {
    /// The deadline came first.
    TimedOut(Vec<u8>),
    /// The server closed the connection.
    Closed(Vec<u8>),
    /// The server reset the connection.
    Reset(Vec<u8>),
    /// More than the longest reply allowed, without a line end.
    TooLong(Vec<u8>),
    /// Another I/O error, in the system's words.
    Failed(io::Error),
}

/// How long a line may be; a longer one is [`End::TooLong`], which holds
/// this many of its first bytes.
#[derive(Debug, Clone, Copy)]
enum LineLimit {
    /// At most this many bytes before the line end (LF, or CR LF).
    Text(usize),
    /// At most this many bytes, the line end included.
    Whole(usize),
}

/// Reads from one TCP stream within deadlines, keeping what was received and
/// not yet returned.
#[derive(Debug)]
pub struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Longest line returned.
    limit: LineLimit,
}

impl Reader {
    /// Reads `stream`; a line longer than `max_line` bytes (its end not counted) is [`End::TooLong`].
    pub fn new(stream: TcpStream, max_line: usize) -> Reader {
        Reader {
            stream,
            buf: Vec::new(),
            limit: LineLimit::Text(max_line),
        }
    }

    /// Reads `stream`; a line longer than `max_line` bytes, its end included,
    /// is [`End::TooLong`] (what `--conformance` allows a reply line).
    pub fn counting_line_ends(stream: TcpStream, max_line: usize) -> Reader {
        Reader {
            stream,
            buf: Vec::new(),
            limit: LineLimit::Whole(max_line),
        }
    }

    /// The stream, to write requests to.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// True when bytes were received and not yet returned.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Reads once more into the buffer: `Ok(false)` at the end of the stream.
    fn fill(&mut self, deadline: Instant) -> Result<bool, End> {
        let mut chunk = [0u8; 4096];
        match read_by(&mut self.stream, &mut chunk, deadline) {
            Ok(Some(0)) => Ok(false),
            Ok(Some(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Ok(None) => Err(End::TimedOut(self.buf.clone())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                Err(End::Reset(std::mem::take(&mut self.buf)))
            }
            Err(e) => Err(End::Failed(e)),
        }
    }

    /// The next line, its line end (LF, or CR LF) included, by the deadline.
    pub fn line(&mut self, deadline: Instant) -> Result<Vec<u8>, End> {
        let (max, room) = match self.limit {
            // Room for the longest line plus CR: more without LF is too long.
            LineLimit::Text(max) => (max, max + 1),
            // Room for the longest line but its LF.
            LineLimit::Whole(max) => (max, max.saturating_sub(1)),
        };
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let len = match self.limit {
                    LineLimit::Text(_) => end - usize::from(end > 0 && self.buf[end - 1] == b'\r'),
                    LineLimit::Whole(_) => end + 1,
                };
                if len > max {
                    return Err(End::TooLong(self.buf[..max].to_vec()));
                }
                return Ok(self.buf.drain(..=end).collect());
            }
            if self.buf.len() > room {
                return Err(End::TooLong(self.buf[..max].to_vec()));
            }
            if !self.fill(deadline)? {
                return Err(End::Closed(std::mem::take(&mut self.buf)));
            }
        }
    }

    /// Exactly `n` bytes, by the deadline.
    pub fn exactly(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, End> {
        while self.buf.len() < n {
            if !self.fill(deadline)? {
                return Err(End::Closed(std::mem::take(&mut self.buf)));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Waits for the server to close (end of stream or reset) by the
    /// deadline, keeping at most `keep` bytes of what comes first.
    pub fn closes(&mut self, keep: usize, deadline: Instant) -> Result<(), End> {
        loop {
            self.buf.truncate(keep);
            match self.fill(deadline) {
                Ok(false) | Err(End::Reset(_)) => return Ok(()),
                Ok(true) => {}
                Err(end) => return Err(end),
            }
        }
    }

    /// Everything received and not yet returned.
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads once from `stream` into `chunk`, waiting no later than `deadline`
/// (and reading again after a signal): `Ok(None)` when the deadline came first.
fn read_by(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    deadline: Instant,
) -> io::Result<Option<usize>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(chunk) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A reader of what `send` writes on the other end (then closes, if `close`).
    fn reading(send: &'static [u8], close: bool) -> (Reader, Option<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(send).unwrap();
        let keep = if close { None } else { Some(server) };
        (Reader::new(client, 16), keep)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(300)
    }

    #[test]
    fn lines_come_whole_with_their_ends() {
        let (mut r, _keep) = reading(b"JAM 04:50:54\r\nJAM 04:50:55\nrest", false);
        assert_eq!(r.line(soon()).unwrap(), b"JAM 04:50:54\r\n");
        assert_eq!(r.line(soon()).unwrap(), b"JAM 04:50:55\n");
        match r.line(soon()) {
            Err(End::TimedOut(got)) => assert_eq!(got, b"rest"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_partial_reply_is_kept_when_the_server_closes_or_stalls() {
        let (mut r, _) = reading(b"JAM 04:50:54", true);
        match r.line(soon()) {
            Err(End::Closed(got)) => assert_eq!(got, b"JAM 04:50:54"),
            other => panic!("{other:?}"),
        }
        let (mut r, _keep) = reading(b"JAM 04:50:54", false);
        let end = r.line(soon()).unwrap_err();
        assert!(matches!(end, End::TimedOut(_)), "{end:?}");
        assert!(matches!(end, End::TimedOut(ref got) if got == b"JAM 04:50:54"));
    }

    #[test]
    fn long_lines_and_fixed_lengths() {
        let (mut r, _keep) = reading(b"0123456789abcdefXY\r\n", false);
        assert!(matches!(r.line(soon()), Err(End::TooLong(_))));
        let (mut r, _keep) = reading(b"0123456789abcdef\r\n", false);
        assert_eq!(r.line(soon()).unwrap().len(), 18);
        let (mut r, _) = reading(b"\xea\xc1\xd2\xf6", true);
        assert_eq!(r.exactly(4, soon()).unwrap(), b"\xea\xc1\xd2\xf6");
        let (mut r, _) = reading(b"\xea\xc1", true);
        assert!(matches!(r.exactly(4, soon()), Err(End::Closed(got)) if got == b"\xea\xc1"));
    }

    /// A reader counting line ends, with a limit of 16 bytes.
    fn reading_whole(send: &'static [u8]) -> (Reader, TcpStream) {
        let (r, keep) = reading(send, false);
        (Reader::counting_line_ends(r.stream, 16), keep.unwrap())
    }

    #[test]
    fn counting_line_ends_the_end_is_part_of_the_limit() {
        // 16 bytes with CR LF, and with LF alone: both fit.
        let (mut r, _keep) = reading_whole(b"0123456789abcd\r\n");
        assert_eq!(r.line(soon()).unwrap().len(), 16);
        let (mut r, _keep) = reading_whole(b"0123456789abcde\n");
        assert_eq!(r.line(soon()).unwrap().len(), 16);
        // 17 bytes: too long, with its first 16 bytes kept.
        let (mut r, _keep) = reading_whole(b"0123456789abcde\r\n");
        assert!(matches!(r.line(soon()), Err(End::TooLong(got)) if got == b"0123456789abcde\r"));
        // 16 bytes and no LF yet: too long without waiting for more.
        let (mut r, _keep) = reading_whole(b"0123456789abcdef");
        assert!(matches!(r.line(soon()), Err(End::TooLong(got)) if got.len() == 16));
    }
}
