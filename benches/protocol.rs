//! Micro-benchmarks of the protocol core, per request: what a worker does
//! between a `read` and a `write`, without the sockets.
//!
//! Run with `cargo bench --bench protocol`; CI only compiles them
//! (`cargo bench --no-run`). Numbers are per request (criterion's
//! `Throughput::Elements` counts requests), so they can be set beside the
//! whole-server figures of `scripts/bench`: at 100,000 requests a second a
//! worker has 10 µs per request, of which the protocol core should take a
//! tiny part.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use jamd::clock::{Clock, ClockCache, TimeFormat, Zone};
use jamd::protocol::{write_time_reply, Action, Session};

const MAX_LINE: usize = 256;

fn clock(format: &str, zone: &str) -> Arc<Clock> {
    Arc::new(Clock {
        format: TimeFormat::parse(format).expect("a valid format"),
        zone: Zone::parse(zone).expect("a valid zone"),
    })
}

/// Feeds `chunks` to `session` as separate reads; returns the TIME count.
fn feed(session: &mut Session, chunks: &[&[u8]]) -> usize {
    let mut times = 0;
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(action) = session.next_action(&mut input) {
            times += usize::from(action == Action::Time);
        }
    }
    times
}

fn session(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");

    g.throughput(Throughput::Elements(1));
    g.bench_function("time_crlf", |b| {
        let mut s = Session::new(MAX_LINE);
        b.iter(|| feed(&mut s, black_box(&[b"TIME\r\n"])))
    });
    g.bench_function("time_lowercase_blanks", |b| {
        let mut s = Session::new(MAX_LINE);
        b.iter(|| feed(&mut s, black_box(&[b" \ttime \r\n"])))
    });
    g.bench_function("unknown_command", |b| {
        let mut s = Session::new(MAX_LINE);
        b.iter(|| feed(&mut s, black_box(&[b"HELLO\r\n"])))
    });
    // The line arrives in two reads: the first part is kept in the session.
    g.bench_function("split_2_reads", |b| {
        let mut s = Session::new(MAX_LINE);
        b.iter(|| feed(&mut s, black_box(&[b"TI", b"ME\r\n"])))
    });
    // One byte per read: the worst a slow client can do.
    g.bench_function("split_1_byte_reads", |b| {
        let mut s = Session::new(MAX_LINE);
        b.iter(|| feed(&mut s, black_box(&[b"T", b"I", b"M", b"E", b"\r", b"\n"])))
    });
    // A new connection's session, its one request and QUIT.
    g.bench_function("new_session_time_quit", |b| {
        b.iter(|| {
            let mut s = Session::new(MAX_LINE);
            feed(&mut s, black_box(&[b"TIME\r\nQUIT\r\n"]))
        })
    });
    // The longest line accepted, in one read.
    let long = {
        let mut l = vec![b'x'; MAX_LINE];
        l.extend_from_slice(b"\r\n");
        l
    };
    g.bench_function("max_line_unknown", |b| {
        let mut s = Session::new(MAX_LINE);
        b.iter(|| feed(&mut s, black_box(&[&long[..]])))
    });

    for n in [10usize, 100] {
        let batch = b"TIME\r\n".repeat(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("pipelined_{n}"), |b| {
            let mut s = Session::new(MAX_LINE);
            b.iter(|| feed(&mut s, black_box(&[&batch[..]])))
        });
    }
    g.finish();
}

fn clock_cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock");
    g.throughput(Throughput::Elements(1));
    for (name, format, zone) in [
        ("cache_now_local", "%H:%M:%S", "local"),
        ("cache_now_utc", "%H:%M:%S", "UTC"),
        ("cache_now_millis", "%H:%M:%S%.3f", "UTC"),
    ] {
        let clk = clock(format, zone);
        g.bench_function(name, |b| {
            let mut cache = ClockCache::new();
            b.iter(|| cache.now(black_box(&clk)).len())
        });
    }
    // What a cache miss costs (once a second with the default format).
    let clk = clock("%H:%M:%S", "local");
    g.bench_function("render_uncached_local", |b| {
        let mut out = String::new();
        let mut secs = 1_795_615_407i64;
        b.iter(|| {
            secs += 1;
            clk.render_at(black_box(secs), 0, &mut out);
            out.len()
        })
    });
    g.finish();
}

fn request(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    let clk = clock("%H:%M:%S", "local");
    // The whole per-request path a worker runs between read and write:
    // parse the line, read the (cached) clock, append the reply.
    for n in [1usize, 10] {
        let batch = b"TIME\r\n".repeat(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("time_reply_{n}"), |b| {
            let mut s = Session::new(MAX_LINE);
            let mut cache = ClockCache::new();
            let mut out = Vec::with_capacity(4096);
            b.iter(|| {
                out.clear();
                let mut input = black_box(&batch[..]);
                while let Some(action) = s.next_action(&mut input) {
                    if action == Action::Time {
                        write_time_reply(&mut out, cache.now(&clk));
                    }
                }
                out.len()
            })
        });
    }
    // A connection's lifetime in the core: new session, TIME, QUIT, with the
    // reply buffer allocated per connection (the worker lends one instead).
    g.throughput(Throughput::Elements(1));
    g.bench_function("connection_alloc_out", |b| {
        let mut cache = ClockCache::new();
        b.iter_batched(
            || Session::new(MAX_LINE),
            |mut s| {
                let mut out = Vec::new();
                let mut input = black_box(&b"TIME\r\nQUIT\r\n"[..]);
                while let Some(action) = s.next_action(&mut input) {
                    if action == Action::Time {
                        write_time_reply(&mut out, cache.now(&clk));
                    }
                }
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, session, clock_cache, request);
criterion_main!(benches);
