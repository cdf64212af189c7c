//! What the fuzz targets share: reading where an input says the network
//! split its stream, and running a target's check without AFL.

/// Splits `data` into the points where the network cut the stream and the
/// stream itself: byte 0 the number of cuts (its low four bits: 0..=15),
/// then two bytes (little-endian) per cut, then the stream. The cuts are
/// sorted offsets into the stream. `None` when `data` is too short.
pub fn cuts_and_stream(data: &[u8]) -> Option<(Vec<usize>, &[u8])> {
    let (&ncuts, rest) = data.split_first()?;
    let ncuts = usize::from(ncuts & 15);
    if rest.len() < 2 * ncuts {
        return None;
    }
    let (cut_bytes, stream) = rest.split_at(2 * ncuts);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    Some((cuts, stream))
}

/// A format picked by an input and the rest of the input: when `pick` is
/// 255 the input's first line (up to LF) is the format, read with `parse`
/// (`None` when it is not one); any other value picks one of `known`,
/// which must parse.
pub fn pick_format<'a, F, E: std::fmt::Debug>(
    pick: u8,
    rest: &'a [u8],
    known: &[&str],
    parse: impl Fn(&str) -> Result<F, E>,
) -> Option<(F, &'a [u8])> {
    if pick == 255 {
        let lf = rest.iter().position(|&b| b == b'\n')?;
        let text = std::str::from_utf8(&rest[..lf]).ok()?;
        Some((parse(text).ok()?, &rest[lf + 1..]))
    } else {
        let text = known[usize::from(pick) % known.len()];
        Some((parse(text).expect("a valid format"), rest))
    }
}

/// Runs `check` on each file named on the command line, or on standard
/// input when none is, as a plain program (the seed corpus goes through it
/// in `scripts/test`).
pub fn replay(check: fn(&[u8])) {
    use std::io::Read;
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .expect("read standard input");
        check(&data);
    } else {
        for f in &files {
            check(&std::fs::read(f).unwrap_or_else(|e| panic!("{f}: {e}")));
        }
        eprintln!("{} input(s) checked", files.len());
    }
}

/// The `main` of a fuzz target: AFL++'s loop over `check` when built with
/// the `afl` feature (scripts/fuzz), else [`replay`] over the files named on
/// the command line (scripts/test).
#[macro_export]
macro_rules! main {
    ($check:path) => {
        #[cfg(feature = "afl")]
        fn main() {
            afl::fuzz!(|data: &[u8]| {
                $check(data);
            });
        }

        #[cfg(not(feature = "afl"))]
        fn main() {
            $crate::replay($check);
        }
    };
}
