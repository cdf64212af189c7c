//! Fuzz target for the metrics endpoint's request reader
//! (`jamd::metrics::http`): one input is a byte stream plus the points where
//! the network split it. It checks what the endpoint relies on:
//!
//! - reading the head as the buffer grows, piece by piece, finds its end at
//!   the same place as reading it whole (and one byte at a time), and never
//!   past the bytes received;
//! - the head found is complete on its own: the bytes after it change
//!   neither where it ends nor the request it makes;
//! - every request gets one whole response: a status line in the client's
//!   HTTP version, a `Content-Length` that is the body's length;
//! - nothing panics.
//!
//! Input layout: byte 0 the number of cuts (0..=15), then two bytes per cut,
//! then the stream, of which the first `MAX_HEAD` + 1024 bytes count: the
//! endpoint reads 1024 bytes at a time and closes a connection whose head
//! is not complete within `MAX_HEAD`. The byte-at-a-time check (quadratic)
//! is made on streams of up to 1024 bytes: longer ones made AFL++ time out.

use jamd::metrics::http::{head_end, parse_request, response, Answer, MAX_HEAD};

/// What the endpoint does: look for the end of the head after each piece.
fn incremental(stream: &[u8], ends: &[usize]) -> Option<usize> {
    ends.iter()
        .chain(std::iter::once(&stream.len()))
        .find_map(|&end| head_end(&stream[..end]))
}

/// Checks one fuzz input; panics (which the fuzzer records) on a violation.
pub fn check(data: &[u8]) {
    let Some((ends, stream)) = jamd_fuzz::cuts_and_stream(data) else {
        return;
    };
    let stream = &stream[..stream.len().min(MAX_HEAD + 1024)];
    let ends: Vec<usize> = ends.into_iter().filter(|&e| e <= stream.len()).collect();
    let whole = head_end(stream);
    assert_eq!(incremental(stream, &ends), whole, "split changed the head");
    if stream.len() <= 1024 {
        let every: Vec<usize> = (0..stream.len()).collect();
        assert_eq!(
            incremental(stream, &every),
            whole,
            "byte-at-a-time changed the head"
        );
    }
    // A head or not, the endpoint answers what it has (a full buffer gets
    // 400): parse whatever the head is, or the whole stream.
    let head = &stream[..whole.unwrap_or(stream.len())];
    if let Some(end) = whole {
        assert!(end <= stream.len(), "head ends past the bytes received");
        assert_eq!(
            head_end(head),
            Some(end),
            "the bytes after the head changed it"
        );
    }
    let request = parse_request(head);
    assert!(request.minor <= 1);
    let mut asked = false;
    let out = response(request, &mut |text: &mut String| {
        asked = true;
        text.push_str("jamd_up 1\n");
    });
    assert_eq!(
        asked,
        request.answer == Answer::Metrics,
        "body written for {request:?}"
    );
    let text = std::str::from_utf8(&out).expect("responses are text");
    let (head_out, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(
        head_out.starts_with(&format!("HTTP/1.{} ", request.minor)),
        "{head_out:?}"
    );
    let length = head_out
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length");
    let length: usize = length.trim_end().parse().unwrap();
    if request.head {
        // HEAD: the head a GET gets (its Content-Length too), no body.
        assert!(body.is_empty(), "a body for HEAD: {body:?}");
    } else {
        assert_eq!(length, body.len());
    }
}

jamd_fuzz::main!(check);
