//! Admission: whether a new client is served, as a value.
//!
//! [`Admission::admit`] makes the whole decision in one place and returns
//! either a [`Ticket`] or a [`Refusal`]. A ticket holds the client's slots
//! (one of `max_connections`, and one of its source's
//! `max_connections_per_source` when that limit is set) and gives them back
//! when it is dropped: whichever way a connection ends, a panicking or
//! exiting worker included, its slots come back.
//!
//! The order of the checks is the contract (SPEC 7, 8):
//! 1. the access lists (a denied client never counts against anything);
//! 2. the global count (`max_connections`);
//! 3. the source's count and, beside it in the same table entry, its rate
//!    bucket.
//!
//! Admission does not depend on the accept loop: it takes the client's
//! address as an argument, and it comes in two steps, so that a connection
//! whose real client is known only later (from a PROXY protocol header,
//! SPEC 10) is admitted from that later state. [`Admission::admit`] is
//! `enter` (the global slot) then [`Ticket::join_source`] (the source's
//! slot). A connection from a trusted balancer takes only the global slot
//! at accept (every open descriptor counts, and the balancer is no source);
//! once its header names the client, the access check and `join_source`
//! run for that client. Either refusal drops the ticket and with it the
//! global slot.
//!
//! Nothing is locked unless a per-source limit is set: the global count is
//! an atomic, and the per-source table's mutex is taken only by clients that
//! it counts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{lock, Runtime};
use crate::protocol::ErrorReply;
use crate::sources::SourceKey;

/// The source a client counts as, under the configuration `rt` (SPEC 8).
///
/// Today a source is the client's exact address (IPv4-mapped IPv6 taken as
/// the IPv4 address): /32 and /128.
fn source_of(_rt: &Runtime, ip: IpAddr) -> SourceKey {
    // SPEC 8: `source_prefix_v4` / `source_prefix_v6` from `rt` go here,
    // and only here.
    SourceKey::new(ip, 32, 128)
}

/// Why a client was not served. The names are stable: log lines and the
/// `jamd_connections_refused_total{reason}` metric use [`Refusal::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` are open.
    Busy,
    /// `max_connections_per_source` are open from the client's source.
    SourceBusy,
    // Coming: AccessDenied (SPEC 7), RateLimited (SPEC 8),
    // BadProxyHeader (SPEC 10, a refusal after accept, with no reply).
}

impl Refusal {
    /// The stable name, as in metrics labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::SourceBusy => "source_busy",
        }
    }

    /// What the client is told before it is closed.
    pub(crate) fn reply(self) -> Option<ErrorReply> {
        match self {
            Refusal::Busy | Refusal::SourceBusy => Some(ErrorReply::ServerBusy),
        }
    }

    /// The words of the `refused ADDR: …` log line.
    pub(crate) fn words(self) -> &'static str {
        match self {
            Refusal::Busy | Refusal::SourceBusy => "server busy",
        }
    }
}

/// The counts admission keeps, shared by every worker.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Clients served right now, over all workers.
    open: AtomicUsize,
    /// Open connections per source, kept while a per-source limit is set.
    /// SPEC 8: `sources::SourceTable` replaces this map (the rate bucket
    /// beside the count, bounded by `max_tracked_sources`); the lock stays
    /// untaken when no per-source rule is set.
    per_source: Mutex<HashMap<SourceKey, usize>>,
}

impl Admission {
    /// No one admitted yet.
    pub(crate) fn new() -> Arc<Admission> {
        Arc::new(Admission::default())
    }

    /// Clients served right now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Decides whether a client at `ip` is served under the configuration
    /// `rt`: a ticket holding its slots, or why not.
    pub(crate) fn admit(self: &Arc<Self>, rt: &Runtime, ip: IpAddr) -> Result<Ticket, Refusal> {
        // SPEC 7: the access list check goes here, first, before anything
        // is counted (and again before `join_source` for a client named by
        // a PROXY header).
        let mut ticket = self.enter(rt)?;
        ticket.join_source(rt, ip)?;
        Ok(ticket)
    }

    /// Takes one of `max_connections`: a ticket that belongs to no source
    /// yet.
    fn enter(self: &Arc<Self>, rt: &Runtime) -> Result<Ticket, Refusal> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        // From here the ticket owns the slot: a refusal gives it back by
        // dropping the ticket.
        let ticket = Ticket {
            admission: Arc::clone(self),
            source: None,
            source_counted: false,
        };
        if open > rt.config.server.max_connections {
            return Err(Refusal::Busy);
        }
        Ok(ticket)
    }

    fn release_source(&self, source: SourceKey) {
        let mut table = lock(&self.per_source);
        if let Some(count) = table.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                table.remove(&source);
            }
        }
    }
}

/// The slots of one served client; dropping it gives them back.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    /// The client's source, once known; kept as it was cut at admission,
    /// so that the slot given back is the one taken even if a reload
    /// changes how sources are cut.
    source: Option<SourceKey>,
    /// Whether the per-source table counts this client.
    source_counted: bool,
}

impl Ticket {
    /// Makes the client at `ip` one of its source's: counted against
    /// `max_connections_per_source` when that is set (nothing is locked
    /// when it is not).
    fn join_source(&mut self, rt: &Runtime, ip: IpAddr) -> Result<(), Refusal> {
        let source = source_of(rt, ip);
        self.source = Some(source);
        let limit = rt.config.server.max_connections_per_source;
        if limit > 0 {
            // SPEC 8: the per-source rate bucket is taken here, under the
            // same lock, when a rate is set (the lock is then taken for it).
            let mut table = lock(&self.admission.per_source);
            let count = table.entry(source).or_insert(0);
            if *count >= limit {
                return Err(Refusal::SourceBusy);
            }
            *count += 1;
            self.source_counted = true;
        }
        Ok(())
    }

    /// Makes the per-source table count this client (with no limit check),
    /// for when a reload sets a per-source limit: the clients already
    /// connected count against it. Returns false if it was counted already
    /// (or belongs to no source yet).
    pub(crate) fn count_source(&mut self) -> bool {
        let Some(source) = self.source else {
            return false;
        };
        if self.source_counted {
            return false;
        }
        *lock(&self.admission.per_source).entry(source).or_insert(0) += 1;
        self.source_counted = true;
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let (true, Some(source)) = (self.source_counted, self.source) {
            self.admission.release_source(source);
        }
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::net::Ipv6Addr;

    fn runtime(max: usize, per_source: usize) -> Arc<Runtime> {
        let mut config = Config::default();
        config.server.max_connections = max;
        config.server.max_connections_per_source = per_source;
        Runtime::new(config)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_global_slot_comes_back_when_the_ticket_is_dropped() {
        let a = Admission::new();
        let rt = runtime(2, 0);
        let t1 = a.admit(&rt, ip("192.0.2.1")).unwrap();
        let _t2 = a.admit(&rt, ip("192.0.2.2")).unwrap();
        assert_eq!(a.admit(&rt, ip("192.0.2.3")).unwrap_err(), Refusal::Busy);
        assert_eq!(a.open(), 2, "a refusal holds no slot");
        drop(t1);
        assert_eq!(a.open(), 1);
        assert!(a.admit(&rt, ip("192.0.2.3")).is_ok());
    }

    #[test]
    fn a_source_is_limited_and_its_slot_comes_back() {
        let a = Admission::new();
        let rt = runtime(10, 1);
        let t = a.admit(&rt, ip("192.0.2.1")).unwrap();
        assert!(t.source_counted);
        assert_eq!(
            a.admit(&rt, ip("192.0.2.1")).unwrap_err(),
            Refusal::SourceBusy
        );
        // The IPv4-mapped form of the same client is the same source.
        assert_eq!(
            a.admit(&rt, ip("::ffff:192.0.2.1")).unwrap_err(),
            Refusal::SourceBusy
        );
        let _other = a.admit(&rt, ip("192.0.2.2")).unwrap();
        assert_eq!(a.open(), 2);
        drop(t);
        assert!(lock(&a.per_source)
            .get(&source_of(&rt, ip("192.0.2.1")))
            .is_none());
        assert!(a.admit(&rt, ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn without_a_source_limit_the_table_stays_empty() {
        let a = Admission::new();
        let rt = runtime(10, 0);
        let mut t = a.admit(&rt, IpAddr::V6(Ipv6Addr::LOCALHOST)).unwrap();
        assert!(!t.source_counted);
        assert!(lock(&a.per_source).is_empty());
        // A reload that sets a limit counts the clients already connected.
        assert!(t.count_source());
        assert!(!t.count_source());
        assert_eq!(
            a.admit(&runtime(10, 1), ip("::1")).unwrap_err(),
            Refusal::SourceBusy
        );
        drop(t);
        assert!(lock(&a.per_source).is_empty());
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn a_panicking_holder_gives_its_slots_back() {
        let a = Admission::new();
        let rt = runtime(10, 1);
        let held = Arc::clone(&a);
        let r = std::thread::spawn(move || {
            let _t = held.admit(&rt, ip("192.0.2.1")).unwrap();
            panic!("worker failure");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(a.open(), 0);
        assert!(lock(&a.per_source).is_empty());
    }

    #[test]
    fn a_ticket_without_a_source_holds_the_global_slot_only() {
        // The state of a connection awaiting a PROXY header (SPEC 10).
        let a = Admission::new();
        let rt = runtime(10, 1);
        let mut t = a.enter(&rt).unwrap();
        assert!(!t.count_source(), "no source to count yet");
        assert!(lock(&a.per_source).is_empty());
        assert_eq!(a.open(), 1);
        let _other = a.admit(&rt, ip("192.0.2.1")).unwrap();
        assert_eq!(
            t.join_source(&rt, ip("192.0.2.1")).unwrap_err(),
            Refusal::SourceBusy
        );
        drop(t);
        assert_eq!(a.open(), 1);
        assert_eq!(lock(&a.per_source).values().sum::<usize>(), 1);
    }

    #[test]
    fn refusal_names_are_stable() {
        assert_eq!(Refusal::Busy.as_str(), "busy");
        assert_eq!(Refusal::SourceBusy.as_str(), "source_busy");
        assert_eq!(Refusal::SourceBusy.reply(), Some(ErrorReply::ServerBusy));
    }
}
