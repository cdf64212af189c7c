//! Fuzz target for the protocol core: one input is a byte stream plus the
//! points where the network split it. It checks what jamd(8), The JAM
//! protocol, promises of `jamd::protocol::Session`:
//!
//! - feeding the stream in pieces gives the same actions as feeding it whole,
//!   and the same as one byte at a time;
//! - a session never holds more than `max_line_bytes` bytes of a line (one
//!   more only for a CR that may start a CR LF);
//! - after QUIT or a too-long line it takes no more input and holds nothing;
//! - nothing panics.
//!
//! Input layout: byte 0 picks `max_line_bytes` (1..=256), byte 1 the number
//! of cuts (0..=15), then two bytes per cut, then the stream, of which the
//! first [`MAX_STREAM`] bytes count: a line is at most 256 bytes here, so
//! that holds sixteen of the longest and hundreds of short ones. The fuzzer
//! had grown inputs of 60 KB, which only made each run slower (about 1,000
//! runs a second instead of 11,000) without reaching anything new.

use jamd::protocol::{Action, Session};

/// The bytes of the stream an input is checked on.
const MAX_STREAM: usize = 4096;

fn run(max: usize, chunks: &[&[u8]]) -> Vec<Action> {
    let mut s = Session::new(max);
    let mut out = Vec::new();
    let mut last_taken = None;
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            let before = input.len();
            let action = s.next_action(&mut input);
            assert!(input.len() <= before, "input grew");
            if input.len() < before {
                last_taken = Some(chunk[chunk.len() - input.len() - 1]);
            }
            let held = s.buffered();
            assert!(
                held <= max || (held == max + 1 && last_taken == Some(b'\r')),
                "holds {held} bytes with max_line_bytes {max}"
            );
            match action {
                Some(a) => {
                    assert_eq!(a.closes(), s.is_ended(), "{a:?} and is_ended disagree");
                    out.push(a);
                }
                None => break,
            }
        }
        if s.is_ended() {
            assert_eq!(s.buffered(), 0);
            let mut more = *chunk;
            assert_eq!(s.next_action(&mut more), None);
            assert_eq!(more.len(), chunk.len(), "an ended session took input");
        }
    }
    out
}

/// Checks one fuzz input; panics (which the fuzzer records) on a violation.
pub fn check(data: &[u8]) {
    let Some((&max_byte, rest)) = data.split_first() else {
        return;
    };
    let max = max_byte as usize + 1;
    let Some((cuts, stream)) = jamd_fuzz::cuts_and_stream(rest) else {
        return;
    };
    let stream = &stream[..stream.len().min(MAX_STREAM)];
    let mut chunks = Vec::new();
    let mut from = 0;
    for c in cuts.into_iter().map(|c| c.min(stream.len())) {
        chunks.push(&stream[from..c]);
        from = c;
    }
    chunks.push(&stream[from..]);

    let whole = run(max, &[stream]);
    assert_eq!(run(max, &chunks), whole, "split changed the actions");
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        run(max, &bytes),
        whole,
        "byte-at-a-time changed the actions"
    );
    // At most one TooLong or Quit, and only as the last action.
    if let Some(pos) = whole.iter().position(|a| a.closes()) {
        assert_eq!(pos, whole.len() - 1);
    }
}

jamd_fuzz::main!(check);
