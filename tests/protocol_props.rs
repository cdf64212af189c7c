//! Property tests of the protocol core (`jamd::protocol::Session`): how the
//! network splits a byte stream must never change what the server does, and
//! no input makes a session hold more than one line's worth of bytes.

use jamd::protocol::{parse_line, Action, Session};
use proptest::prelude::*;

/// Feeds `chunks` to a fresh session; returns every action in order. After
/// each call it checks the memory bound: at most `max` bytes of a line, or
/// `max + 1` when the last byte taken is a CR that may start a CR LF.
fn run(max: usize, chunks: &[&[u8]]) -> Vec<Action> {
    let mut s = Session::new(max);
    let mut out = Vec::new();
    let mut last_taken = None;
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            let before = input.len();
            let action = s.next_action(&mut input);
            let taken = before - input.len();
            if taken > 0 {
                last_taken = Some(chunk[chunk.len() - input.len() - 1]);
            }
            let held = s.buffered();
            assert!(
                held <= max || (held == max + 1 && last_taken == Some(b'\r')),
                "session holds {held} bytes with max_line_bytes = {max}"
            );
            match action {
                Some(a) => out.push(a),
                None => break,
            }
        }
        if s.is_ended() {
            assert_eq!(s.buffered(), 0, "an ended session still holds bytes");
        }
    }
    out
}

/// A plain restatement of jamd(8), The JAM protocol, over the whole stream
/// at once, to compare with.
fn oracle(max: usize, input: &[u8]) -> Vec<Action> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                let body = line.strip_suffix(b"\r").unwrap_or(line);
                // Bytes beyond the limit are seen before the LF arrives.
                let action = if body.len() > max {
                    Action::TooLong
                } else {
                    // parse_line drops the CR of CR LF itself; a second CR
                    // is part of the line (TIME\r\r\n is not TIME).
                    parse_line(line)
                };
                out.push(action);
                if action.closes() {
                    return out;
                }
                rest = &rest[i + 1..];
            }
            None => {
                // An unfinished line: too long once it is over the limit,
                // except for one CR that may still become a CR LF.
                let n = rest.len();
                if n > max + 1 || (n == max + 1 && rest[n - 1] != b'\r') {
                    out.push(Action::TooLong);
                }
                return out;
            }
        }
    }
}

/// Bytes that make interesting request streams: commands, blanks, line
/// ends, and anything else.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => Just(b"TIME".to_vec()),
        1 => Just(b"time".to_vec()),
        1 => Just(b"QUIT".to_vec()),
        3 => Just(b"\r\n".to_vec()),
        2 => Just(b"\n".to_vec()),
        2 => Just(b"\r".to_vec()),
        2 => Just(b" ".to_vec()),
        1 => Just(b"\t".to_vec()),
        3 => prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Cuts `input` at the given points (taken modulo its length).
fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for p in points {
        chunks.push(&input[from..p]);
        from = p;
    }
    chunks.push(&input[from..]);
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_split_gives_the_same_actions_as_unsplit(
        input in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        max in 1usize..24,
    ) {
        let whole = run(max, &[&input]);
        let pieces = run(max, &split(&input, &cuts));
        prop_assert_eq!(&pieces, &whole);
        // One byte at a time, the hardest split of all.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&run(max, &bytes), &whole);
    }

    #[test]
    fn the_session_does_what_the_spec_says(input in stream(), max in 1usize..24) {
        prop_assert_eq!(run(max, &[&input]), oracle(max, &input));
    }

    #[test]
    fn arbitrary_bytes_never_exceed_the_line_limit(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
        max in 1usize..300,
    ) {
        // `run` asserts the bound after every call.
        let pieces = run(max, &split(&input, &cuts));
        prop_assert_eq!(pieces, oracle(max, &input));
    }

    #[test]
    fn a_long_line_without_an_end_is_refused_at_the_limit(
        fill in 1u8..=255,
        len in 0usize..600,
        max in 1usize..300,
    ) {
        prop_assume!(fill != b'\n');
        let input = vec![fill; len];
        let actions = run(max, &[&input]);
        let too_long = len > max + 1 || (len == max + 1 && fill != b'\r');
        prop_assert_eq!(actions == [Action::TooLong], too_long);
        prop_assert_eq!(actions.is_empty(), !too_long);
    }
}

/// A line body over the limit: no LF in it, and not all blanks (so that
/// it would be a command if it were short enough).
fn long_line(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(b"TIME".to_vec()),
            Just(b"QUIT".to_vec()),
            Just(b"x".to_vec())
        ],
        prop::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..64),
        1usize..48,
    )
        .prop_map(move |(word, noise, over)| {
            // The word, then padding up to the limit and `over` bytes more.
            let mut line = word;
            line.extend(noise);
            let want = max + over;
            line.resize(want, b' ');
            line.truncate(want);
            line
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A line over max_line_bytes is never answered as a request (TIME,
    /// QUIT or an unknown command), however it is split or padded: it gets
    /// the too-long error, which ends the session, and nothing after it is
    /// read.
    #[test]
    fn a_line_over_the_limit_gets_no_reply(
        max in 1usize..40,
        before in prop::collection::vec(prop_oneof![Just(&b"TIME\r\n"[..]), Just(&b"\n"[..]), Just(&b"junk\n"[..])], 0..4),
        line in (1usize..40).prop_flat_map(long_line),
        end in prop_oneof![Just(&b"\r\n"[..]), Just(&b"\n"[..]), Just(&b""[..])],
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        // Earlier lines must fit the limit to be answered: keep those that do.
        let before: Vec<&[u8]> = before.into_iter().filter(|l| l.len() <= max + 1).collect();
        let mut input: Vec<u8> = before.concat();
        let line: Vec<u8> = line.into_iter().take(max + 48).collect();
        // A CR that ends the line, with an LF after it, is a CR LF: the
        // line's body is one byte shorter, and may fit the limit.
        let body = match end {
            b"\n" => line.strip_suffix(b"\r").unwrap_or(&line),
            _ => &line[..],
        };
        prop_assume!(body.len() > max);
        input.extend_from_slice(&line);
        input.extend_from_slice(end);
        input.extend_from_slice(b"TIME\r\n");
        let actions = run(max, &split(&input, &cuts));
        let answered: Vec<Action> = before
            .iter()
            .map(|l| parse_line(l.strip_suffix(b"\n").unwrap_or(l)))
            .collect();
        prop_assert_eq!(&actions[..answered.len()], &answered[..]);
        prop_assert_eq!(&actions[answered.len()..], &[Action::TooLong][..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// What a session holds is bounded by the limit (one more for a CR
    /// that may start a CR LF) after every call, for any limit and any
    /// bytes; once ended it holds nothing. (`run` asserts it call by call.)
    #[test]
    fn a_session_never_holds_more_than_the_limit_and_a_cr(
        input in prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'T'), any::<u8>()], 0..1024),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
        max in 1usize..300,
    ) {
        let _ = run(max, &split(&input, &cuts));
    }
}
