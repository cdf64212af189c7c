//! Fuzz target for the PROXY protocol parser: one input is a byte stream
//! plus the points where the network split it. It checks what jamd(8),
//! BEHIND A LOAD BALANCER, and `jamd::proxy` promise:
//!
//! - parsing the buffer as it grows, piece by piece, and stopping at the
//!   first answer that is not `Incomplete`, gives the answer for the whole
//!   stream (and so does one byte at a time);
//! - a header never takes more bytes than were received, nor more than the
//!   protocol allows (v1: 107, v2: 16 + 4096), and the bytes after it change
//!   nothing;
//! - `Incomplete` is only ever said of fewer bytes than the longest header;
//! - nothing panics.
//!
//! Input layout: byte 0 the number of cuts (0..=15), then two bytes per cut,
//! then the stream.

use jamd::proxy::{parse, Parse, MAX_V1, MAX_V2};

fn incremental(stream: &[u8], ends: &[usize]) -> Parse {
    for &end in ends {
        let p = parse(&stream[..end]);
        if p != Parse::Incomplete {
            return p;
        }
    }
    parse(stream)
}

/// Checks one fuzz input; panics (which the fuzzer records) on a violation.
pub fn check(data: &[u8]) {
    let Some((ends, stream)) = jamd_fuzz::cuts_and_stream(data) else {
        return;
    };

    let whole = parse(stream);
    assert_eq!(
        incremental(stream, &ends),
        whole,
        "split changed the answer"
    );
    let every: Vec<usize> = (0..stream.len()).collect();
    assert_eq!(
        incremental(stream, &every),
        whole,
        "byte-at-a-time changed the answer"
    );
    match whole {
        Parse::Incomplete => assert!(stream.len() < MAX_V2, "Incomplete past the limit"),
        Parse::Done { header, consumed } => {
            assert!(consumed <= stream.len(), "consumed more than received");
            assert!(consumed <= MAX_V2);
            if stream[0] == b'P' {
                assert!(consumed <= MAX_V1);
            }
            assert_eq!(
                parse(&stream[..consumed]),
                Parse::Done { header, consumed },
                "the bytes after the header changed it"
            );
        }
        Parse::Invalid(why) => assert!(!why.to_string().is_empty()),
    }
}

jamd_fuzz::main!(check);
