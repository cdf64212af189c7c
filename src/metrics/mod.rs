//! Metrics: counters kept by the workers, rendered on demand in the
//! Prometheus text format and served over HTTP on a socket of their own.
//!
//! - [`Metrics`]: the counters, one shard per worker, summed at scrape.
//! - [`render`](mod@render): a [`Sample`] (numbers only) → the text format.
//! - [`process`]: the `process_*` metrics, read from `/proc/self`.
//! - [`http`]: the `/metrics` endpoint, on its own thread.
//!
//! Why shards: a counter bumped for every request by every worker would be one
//! cache line bouncing between the CPUs on the hot path. Each worker writes
//! only its own shard (a relaxed add to a line no other CPU touches), and the
//! rare scrape pays for the sum. A shard is never reset, so counters only grow
//! and survive reloads (the `Metrics` value lives as long as the process).

pub mod http;
pub(crate) mod process;
pub(crate) mod render;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::labels::labels;
pub use crate::listener::{Protocol, Transport};

pub use render::{render, Sample};

/// Why a connection was refused: the `reason` label of
/// `jamd_connections_refused_total` is the name admission gives it.
pub use crate::outcome::Refusal;

/// Why an admitted connection ended: the `reason` label of
/// `jamd_connections_closed_total` is the `reason=` of the `closed` log line.
pub use crate::outcome::CloseReason as Closed;

labels! {
    /// A request line that was answered: the `command` label of
    /// `jamd_requests_total`.
    pub enum Command {
        /// `TIME`.
        Time = "time",
        /// Anything else that got `ERROR unknown command`.
        Unknown = "unknown",
    }
}

labels! {
    /// How a SIGHUP ended: the `result` label of `jamd_reloads_total`.
    pub enum Reload {
        /// The new configuration is in effect.
        Ok = "ok",
        /// The file was unreadable or invalid; the old configuration stays.
        Failed = "failed",
    }
}

labels! {
    /// What a trusted balancer's PROXY header turned out to be: the `result`
    /// label of `jamd_proxy_headers_total`.
    pub enum ProxyHeader {
        /// A header carrying the client's address.
        Proxy = "proxy",
        /// A `LOCAL` / `PROXY UNKNOWN` header (a health check).
        Local = "local",
        /// A malformed or oversized header.
        Invalid = "invalid",
        /// No complete header within `header_timeout`.
        Timeout = "timeout",
    }
}

labels! {
    /// Why a datagram got no answer: the `reason` label of
    /// `jamd_datagrams_refused_total`.
    pub enum DatagramRefused {
        /// `[access]` denies its source.
        AccessDenied = "access_denied",
        /// Its source's rate bucket (shared with its connections) is empty.
        RateLimited = "rate_limited",
        /// From port 0, a port below 1024, or an unspecified, multicast or
        /// broadcast address: answering could start a loop between two
        /// services, or aim jamd at a whole network.
        BadSource = "bad_source",
        /// The socket's send buffer was full (or the send failed): the reply
        /// was dropped rather than waited for.
        SendFailed = "send_failed",
    }
}

impl DatagramRefused {
    /// The words of the `refused ADDR: …` log line.
    pub fn words(self) -> &'static str {
        match self {
            DatagramRefused::AccessDenied => "access denied",
            DatagramRefused::RateLimited => "rate limited",
            DatagramRefused::BadSource => "bad source",
            DatagramRefused::SendFailed => "send failed",
        }
    }
}

/// The protocols whose replies `jamd_replies_total` counts (JAM's are
/// `jamd_requests_total`).
pub const REPLY_PROTOCOLS: [Protocol; 2] = [Protocol::Daytime, Protocol::Rfc868];

/// One writer's counters. Aligned to two cache lines so that two shards never
/// share one (adjacent-line prefetching pairs lines on x86).
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Shard {
    accepted: AtomicU64,
    refused: [AtomicU64; Refusal::COUNT],
    closed: [AtomicU64; Closed::COUNT],
    requests: [AtomicU64; Command::COUNT],
    reloads: [AtomicU64; Reload::COUNT],
    proxy: [AtomicU64; ProxyHeader::COUNT],
    /// By protocol and transport (indexed by their place in their lists).
    replies: [[AtomicU64; Transport::COUNT]; Protocol::COUNT],
    datagrams: [AtomicU64; Protocol::COUNT],
    datagrams_refused: [AtomicU64; DatagramRefused::COUNT],
}

/// Adds one. Relaxed: each counter is independent, and a scrape that sees
/// one a little before another is still true a moment later.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Shard {
    /// A client was admitted.
    pub fn accepted(&self) {
        bump(&self.accepted);
    }

    /// A client was refused.
    pub fn refused(&self, why: Refusal) {
        bump(&self.refused[why as usize]);
    }

    /// An admitted client's connection ended.
    pub fn closed(&self, why: Closed) {
        bump(&self.closed[why as usize]);
    }

    /// `n` request lines of one kind were answered (one read's worth).
    pub fn requests(&self, command: Command, n: u64) {
        if n > 0 {
            self.requests[command as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A SIGHUP was handled.
    pub fn reload(&self, result: Reload) {
        bump(&self.reloads[result as usize]);
    }

    /// A trusted balancer's connection began (or failed to begin) with a header.
    pub fn proxy_header(&self, result: ProxyHeader) {
        bump(&self.proxy[result as usize]);
    }

    /// `n` replies of `protocol` were sent over `transport`.
    pub fn replies(&self, protocol: Protocol, transport: Transport, n: u64) {
        if n > 0 {
            self.replies[protocol as usize][transport as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `n` datagrams for `protocol` arrived.
    pub fn datagrams(&self, protocol: Protocol, n: u64) {
        if n > 0 {
            self.datagrams[protocol as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `n` datagrams got no answer, for `why`.
    pub fn datagrams_refused(&self, why: DatagramRefused, n: u64) {
        if n > 0 {
            self.datagrams_refused[why as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    fn add_to(&self, c: &mut Counters) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (sums, by_transport) in c.replies.iter_mut().zip(&self.replies) {
            for (sum, a) in sums.iter_mut().zip(by_transport) {
                *sum += get(a);
            }
        }
        for (sum, a) in c.datagrams.iter_mut().zip(&self.datagrams) {
            *sum += get(a);
        }
        for (sum, a) in c.datagrams_refused.iter_mut().zip(&self.datagrams_refused) {
            *sum += get(a);
        }
        c.accepted += get(&self.accepted);
        for (sum, a) in c.refused.iter_mut().zip(&self.refused) {
            *sum += get(a);
        }
        for (sum, a) in c.closed.iter_mut().zip(&self.closed) {
            *sum += get(a);
        }
        for (sum, a) in c.requests.iter_mut().zip(&self.requests) {
            *sum += get(a);
        }
        for (sum, a) in c.reloads.iter_mut().zip(&self.reloads) {
            *sum += get(a);
        }
        for (sum, a) in c.proxy.iter_mut().zip(&self.proxy) {
            *sum += get(a);
        }
    }
}

/// Every counter of the process: one [`Shard`] per worker plus one for the
/// control loop (reloads). Sources tracked and forgotten are counted by the
/// per-source table itself, and log lines lost by the logger: a scrape reads
/// those where they are kept.
#[derive(Debug)]
pub struct Metrics {
    shards: Box<[Shard]>,
    /// Whether the last reload (or the start) put its file in effect:
    /// `jamd_config_last_reload_successful`.
    last_reload_successful: AtomicBool,
    /// When the configuration in effect was loaded, in milliseconds since
    /// the Unix epoch: `jamd_config_last_reload_success_timestamp_seconds`.
    last_success_unix_ms: AtomicU64,
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Metrics {
    /// Counters for `workers` workers (and the control loop), all at 0;
    /// the configuration of the start is the one in effect, loaded now.
    pub fn new(workers: usize) -> Metrics {
        Metrics {
            shards: (0..=workers).map(|_| Shard::default()).collect(),
            last_reload_successful: AtomicBool::new(true),
            last_success_unix_ms: AtomicU64::new(unix_ms_now()),
        }
    }

    /// A SIGHUP was handled: counted by result, and remembered as the last
    /// one (a good one also as the last success, now).
    pub fn reloaded(&self, result: Reload) {
        self.control().reload(result);
        let ok = result == Reload::Ok;
        if ok {
            self.last_success_unix_ms
                .store(unix_ms_now(), Ordering::Relaxed);
        }
        self.last_reload_successful.store(ok, Ordering::Relaxed);
    }

    /// Whether the last reload (or the start) succeeded, and when the last
    /// success was, in seconds since the Unix epoch.
    pub fn last_reload(&self) -> (bool, f64) {
        let ms = self.last_success_unix_ms.load(Ordering::Relaxed);
        (
            self.last_reload_successful.load(Ordering::Relaxed),
            ms as f64 / 1000.0,
        )
    }

    /// The shard worker `id` writes.
    pub fn worker(&self, id: usize) -> &Shard {
        // The last shard is the control loop's; a worker id past the end
        // (none today) shares it rather than panicking.
        &self.shards[id.min(self.shards.len() - 1)]
    }

    /// The shard for everything that is not a worker: the control loop.
    pub fn control(&self) -> &Shard {
        &self.shards[self.shards.len() - 1]
    }

    /// The sum of every shard, now.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::default();
        for shard in self.shards.iter() {
            shard.add_to(&mut c);
        }
        c
    }
}

/// The counters summed over the shards at one moment: plain numbers, indexed
/// like the `ALL` arrays of [`Refusal`], [`Closed`], [`Command`], [`Reload`]
/// and [`ProxyHeader`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Clients admitted.
    pub accepted: u64,
    /// Clients refused, by [`Refusal`].
    pub refused: [u64; Refusal::COUNT],
    /// Admitted connections ended, by [`Closed`].
    pub closed: [u64; Closed::COUNT],
    /// Request lines answered, by [`Command`].
    pub requests: [u64; Command::COUNT],
    /// SIGHUPs handled, by [`Reload`].
    pub reloads: [u64; Reload::COUNT],
    /// PROXY headers from trusted balancers, by [`ProxyHeader`].
    pub proxy: [u64; ProxyHeader::COUNT],
    /// Daytime and Time replies sent, by [`Protocol`] and [`Transport`].
    pub replies: [[u64; Transport::COUNT]; Protocol::COUNT],
    /// Datagrams received, by [`Protocol`].
    pub datagrams: [u64; Protocol::COUNT],
    /// Datagrams not answered, by [`DatagramRefused`].
    pub datagrams_refused: [u64; DatagramRefused::COUNT],
}

impl Counters {
    /// Clients refused for any reason.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// Request lines answered, whatever the command.
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// The SIGUSR1 line (jamd(8), SIGNALS), from the same numbers a scrape shows.
    pub fn status_line(&self, open: u64) -> String {
        format!(
            "status: {open} connection(s) open, accepted={} refused={} requests={}",
            self.accepted,
            self.refused_total(),
            self.requests_total()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_reload_is_remembered_and_a_failure_keeps_the_last_success() {
        let m = Metrics::new(1);
        let (ok, started) = m.last_reload();
        assert!(ok, "the start loaded its file");
        assert!(started > 1.7e9, "{started}");
        m.reloaded(Reload::Failed);
        assert_eq!(m.last_reload(), (false, started));
        std::thread::sleep(std::time::Duration::from_millis(5));
        m.reloaded(Reload::Ok);
        let (ok, at) = m.last_reload();
        assert!(ok && at > started, "{at} {started}");
        assert_eq!(m.counters().reloads, [1, 1]);
    }

    #[test]
    fn shards_are_summed_and_start_at_zero() {
        let m = Metrics::new(2);
        assert_eq!(m.counters(), Counters::default());
        m.worker(0).accepted();
        m.worker(1).accepted();
        m.worker(1).refused(Refusal::RateLimited);
        m.worker(0).closed(Closed::TooLong);
        m.worker(0).requests(Command::Time, 3);
        m.worker(1).requests(Command::Unknown, 1);
        m.control().reload(Reload::Failed);
        m.control().proxy_header(ProxyHeader::Timeout);
        let c = m.counters();
        assert_eq!(c.accepted, 2);
        assert_eq!(c.refused, [0, 0, 1, 0, 0]);
        assert_eq!(c.closed, [0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(c.requests, [3, 1]);
        assert_eq!(c.reloads, [0, 1]);
        assert_eq!(c.proxy, [0, 0, 0, 1]);
        assert_eq!(
            c.status_line(1),
            "status: 1 connection(s) open, accepted=2 refused=1 requests=4"
        );
    }

    #[test]
    fn close_reasons_keep_the_names_of_the_closed_log_line() {
        let labels: Vec<&str> = Closed::ALL.iter().map(|r| r.as_str()).collect();
        let logged: Vec<String> = Closed::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            labels,
            ["quit", "eof", "idle", "too_long", "error", "shutdown", "sent"]
        );
        assert_eq!(labels, logged);
    }

    /// Every variant of every list has a counter of its own: bumping each
    /// once shows a 1 at its place of `ALL` and nowhere else, and its name is
    /// its own.
    #[test]
    fn every_variant_of_every_list_has_its_own_counter_and_name() {
        fn check<T: Copy + std::fmt::Debug>(
            all: &[T],
            count: usize,
            name: fn(T) -> &'static str,
            bump: fn(&Shard, T),
            counts: fn(&Counters) -> Vec<u64>,
        ) {
            assert_eq!(all.len(), count);
            let names: std::collections::BTreeSet<_> = all.iter().map(|v| name(*v)).collect();
            assert_eq!(names.len(), all.len(), "two variants share a name: {all:?}");
            for (i, v) in all.iter().enumerate() {
                let m = Metrics::new(1);
                bump(m.worker(0), *v);
                let mut want = vec![0; count];
                want[i] = 1;
                assert_eq!(counts(&m.counters()), want, "{v:?}");
            }
        }
        check(
            &Refusal::ALL,
            Refusal::COUNT,
            Refusal::as_str,
            Shard::refused,
            |c| c.refused.to_vec(),
        );
        check(
            &Closed::ALL,
            Closed::COUNT,
            Closed::as_str,
            Shard::closed,
            |c| c.closed.to_vec(),
        );
        check(
            &Command::ALL,
            Command::COUNT,
            Command::as_str,
            |s, c| s.requests(c, 1),
            |c| c.requests.to_vec(),
        );
        check(
            &Reload::ALL,
            Reload::COUNT,
            Reload::as_str,
            Shard::reload,
            |c| c.reloads.to_vec(),
        );
        check(
            &ProxyHeader::ALL,
            ProxyHeader::COUNT,
            ProxyHeader::as_str,
            Shard::proxy_header,
            |c| c.proxy.to_vec(),
        );
        check(
            &DatagramRefused::ALL,
            DatagramRefused::COUNT,
            DatagramRefused::as_str,
            |s, why| s.datagrams_refused(why, 1),
            |c| c.datagrams_refused.to_vec(),
        );
        check(
            &Protocol::ALL,
            Protocol::COUNT,
            Protocol::as_str,
            |s, p| s.datagrams(p, 1),
            |c| c.datagrams.to_vec(),
        );
        check(
            &Transport::ALL,
            Transport::COUNT,
            Transport::as_str,
            |s, t| s.replies(Protocol::Rfc868, t, 1),
            |c| c.replies[Protocol::Rfc868 as usize].to_vec(),
        );
    }

    #[test]
    fn shards_do_not_share_a_cache_line() {
        assert!(std::mem::align_of::<Shard>() >= 128);
        let m = Metrics::new(3);
        let a = m.worker(0) as *const Shard as usize;
        let b = m.worker(1) as *const Shard as usize;
        assert!(b - a >= 128);
    }
}
