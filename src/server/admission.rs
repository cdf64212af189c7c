//! Admission: whether a new client is served, as a value.
//!
//! [`Admission::arrive`] makes the whole decision in one place and returns
//! either a [`Ticket`] or a [`Refusal`]. A ticket holds the client's slots
//! (one of `max_connections`, and its source's count in the per-source
//! table when a per-source rule is set) and gives them back
//! when it is dropped: whichever way a connection ends, a panicking or
//! exiting worker included, its slots come back.
//!
//! The order of the checks is the contract (jamd(8), DESCRIPTION: "The order
//! is: access, then max_connections, then the source's rate, then its count"):
//! 1. the access lists (a denied client never counts against anything);
//! 2. the global count (`max_connections`);
//! 3. the source's rate bucket (a token is taken), then its count
//!    (`max_connections_per_source`), both in one entry of the bounded
//!    per-source table ([`crate::sources`]).
//!
//! Admission does not depend on the accept loop: it takes the client's
//! address as an argument, and it comes in two steps, so that a connection
//! whose real client is known only later (from a PROXY protocol header,
//! see `[proxy]` in jamd.toml(5)) is admitted from that later state. [`Admission::admit`] is
//! `enter` (the global slot) then [`Ticket::join_source`] (the source's
//! slot). A connection from a trusted balancer takes only the global slot
//! at accept (every open descriptor counts, and the balancer is no source);
//! once its header names the client, [`Ticket::name_client`] runs the
//! access check and `join_source` for that client. Either refusal drops the ticket and with it the
//! global slot.
//!
//! Nothing is locked unless a per-source rule (a rate or a count) is set:
//! the access list is read-only, the global count is an atomic, and the
//! per-source table's mutex is taken only by clients that it counts.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{lock, Runtime};
use crate::metrics::DatagramRefused;
use crate::outcome::Refusal;
use crate::sources::{self, SourceTable};

/// The counts admission keeps, shared by every worker.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Slots of `max_connections` taken right now, over all workers.
    open: AtomicUsize,
    /// Of those, the ones a trusted balancer's connection holds before (or
    /// without: a health check) its header names a client.
    unnamed: AtomicUsize,
    /// Per-source counts and rate buckets, used while a
    /// per-source rule is set; bounded by `max_tracked_sources`.
    per_source: Mutex<SourceTable>,
    /// The table's size and evictions, copied out after each change so that
    /// a scrape reads them without taking the lock.
    tracked: AtomicUsize,
    evicted: AtomicU64,
    /// Sources in the table with no open connection, copied out the same
    /// way: while there are any, the workers sweep the table now and then.
    idle: AtomicUsize,
    /// When the next sweep is due, in milliseconds since `born`.
    next_sweep_ms: AtomicU64,
    born: Instant,
}

/// How often the table is swept of sources that need no state any more
/// (full bucket, no open connection) while it holds idle ones: such a
/// source is gone within twice this, even when no client comes.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

impl Admission {
    /// No one admitted yet; the source table starts with `rt`'s limits.
    pub(crate) fn new(rt: &Runtime) -> Arc<Admission> {
        Arc::new(Admission {
            open: AtomicUsize::new(0),
            unnamed: AtomicUsize::new(0),
            per_source: Mutex::new(SourceTable::new(rt.config.server.source_limits())),
            tracked: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            idle: AtomicUsize::new(0),
            next_sweep_ms: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    /// Clients served right now: the slots taken, less those of
    /// connections that are not clients (a balancer's before its header
    /// names one, and its health checks).
    pub(crate) fn open(&self) -> usize {
        let unnamed = self.unnamed.load(Ordering::Relaxed);
        self.open.load(Ordering::Relaxed).saturating_sub(unnamed)
    }

    /// Sources in the per-source table now (`jamd_tracked_sources`).
    pub(crate) fn tracked_sources(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// Sources forgotten because the table was full, since start
    /// (`jamd_tracked_sources_evicted_total`).
    pub(crate) fn evicted_sources(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Copies the table's figures out, for [`Admission::tracked_sources`]
    /// and [`Admission::evicted_sources`].
    fn publish(&self, table: &SourceTable) {
        self.tracked.store(table.tracked(), Ordering::Relaxed);
        self.evicted.store(table.evicted(), Ordering::Relaxed);
        let idle = table.idle();
        if self.idle.swap(idle, Ordering::AcqRel) == 0 && idle > 0 {
            // The first idle source: its bucket was just used, so the first
            // sweep has work only a while later.
            self.next_sweep_ms
                .store(self.ms_at(Instant::now() + SWEEP_EVERY), Ordering::Release);
        }
    }

    fn ms_at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.born).as_millis()).unwrap_or(u64::MAX)
    }

    /// When the table should next be swept ([`Admission::sweep`]); `None`
    /// while it holds no idle source.
    pub(crate) fn sweep_due(&self) -> Option<Instant> {
        if self.idle.load(Ordering::Acquire) == 0 {
            return None;
        }
        let ms = self.next_sweep_ms.load(Ordering::Acquire);
        Some(self.born + Duration::from_millis(ms))
    }

    /// Drops the sources that need no state any more, when a sweep is due;
    /// one worker does it, the others find it done.
    pub(crate) fn sweep(&self, now: Instant) {
        let Some(due) = self.sweep_due() else {
            return;
        };
        let due_ms = self.ms_at(due);
        if now < due
            || self
                .next_sweep_ms
                .compare_exchange(
                    due_ms,
                    self.ms_at(now + SWEEP_EVERY),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
        {
            return;
        }
        let mut table = lock(&self.per_source);
        table.sweep(now);
        self.publish(&table);
    }

    /// The table, with the limits of `rt` applied (a reload changes them).
    fn table(&self, rt: &Runtime, now: Instant) -> MutexGuard<'_, SourceTable> {
        let mut table = lock(&self.per_source);
        let limits = rt.config.server.source_limits();
        if table.limits() != limits {
            table.set_limits(limits, now);
        }
        table
    }

    /// A connection from `ip` arrived: a ticket, or why it is refused. From
    /// a trusted balancer (`[proxy] trusted`), the ticket holds only the
    /// global slot and awaits the client the PROXY header names
    /// ([`Ticket::awaits_client`]); from anyone else, it is the client,
    /// admitted by [`Admission::admit`].
    pub(crate) fn arrive(self: &Arc<Self>, rt: &Runtime, ip: IpAddr) -> Result<Ticket, Refusal> {
        if rt.config.proxy.trusts(ip) {
            self.enter_balancer(rt)
        } else {
            self.admit(rt, ip)
        }
    }

    /// Decides whether a client at `ip` is served under the configuration
    /// `rt`: a ticket holding its slots, or why not.
    pub(crate) fn admit(self: &Arc<Self>, rt: &Runtime, ip: IpAddr) -> Result<Ticket, Refusal> {
        // Access first, before anything is counted.
        access(rt, ip)?;
        let mut ticket = self.enter(rt)?;
        ticket.join_source(rt, ip)?;
        Ok(ticket)
    }

    /// Takes one of `max_connections`: a ticket that belongs to no source
    /// yet. A connection from a trusted balancer holds only this until its
    /// PROXY header names the client ([`Ticket::name_client`]).
    pub(crate) fn enter(self: &Arc<Self>, rt: &Runtime) -> Result<Ticket, Refusal> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        // From here the ticket owns the slot: a refusal gives it back by
        // dropping the ticket.
        let ticket = Ticket {
            admission: Arc::clone(self),
            source: Source::Unnamed,
        };
        if open > rt.config.server.max_connections {
            return Err(Refusal::Busy);
        }
        Ok(ticket)
    }

    /// [`Admission::enter`] for a trusted balancer's connection: its slot
    /// is taken, but it is no client (not in [`Admission::open`]) until
    /// its header names one.
    pub(crate) fn enter_balancer(self: &Arc<Self>, rt: &Runtime) -> Result<Ticket, Refusal> {
        let mut ticket = self.enter(rt)?;
        self.unnamed.fetch_add(1, Ordering::AcqRel);
        ticket.source = Source::Balancer;
        Ok(ticket)
    }
}

impl Admission {
    /// Whether a datagram from `ip` is answered: `[access]`, then a token
    /// from its source's rate bucket, the one its TCP connections take
    /// from. A datagram is no connection: it takes no slot and is not
    /// counted against any connection limit.
    pub(crate) fn datagram(&self, rt: &Runtime, ip: IpAddr) -> Result<(), DatagramRefused> {
        if access(rt, ip).is_err() {
            return Err(DatagramRefused::AccessDenied);
        }
        if rt.config.server.connection_rate_per_source.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let mut table = self.table(rt, now);
        let taken = table.take_token(rt.config.server.source_of(ip), now);
        self.publish(&table);
        if taken {
            Ok(())
        } else {
            Err(DatagramRefused::RateLimited)
        }
    }
}

/// `[access]` for the client at `ip`.
fn access(rt: &Runtime, ip: IpAddr) -> Result<(), Refusal> {
    if rt.access.decide(ip).is_allowed() {
        Ok(())
    } else {
        Err(Refusal::AccessDenied)
    }
}

/// The slots of one served client; dropping it gives them back.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    source: Source,
}

/// Where a ticket's client stands with its source. The counted key is kept,
/// so that the slot given back is the one taken; the client's address is
/// not (its connection has it, and gives it to [`Ticket::count_source`]):
/// thousands of idle clients each hold a ticket.
#[derive(Debug)]
enum Source {
    /// Not known yet (while admission decides).
    Unnamed,
    /// A balancer's connection before its PROXY header names a client (or
    /// for good: a health check); counted in `Admission::unnamed`.
    Balancer,
    /// Known, and not counted: no per-source rule was set when it came.
    Named,
    /// Counted by the per-source table until the ticket is dropped.
    Counted(sources::Ticket),
}

impl Ticket {
    /// Whether it is a trusted balancer's, awaiting (or without, for a
    /// health check) the client a PROXY header names.
    pub(crate) fn awaits_client(&self) -> bool {
        matches!(self.source, Source::Balancer)
    }

    /// For a ticket that holds only the global slot (a connection from a
    /// trusted balancer): the client its PROXY header names at `ip` is
    /// checked against `[access]`, then joins its source.
    pub(crate) fn name_client(&mut self, rt: &Runtime, ip: IpAddr) -> Result<(), Refusal> {
        access(rt, ip)?;
        self.join_source(rt, ip)
    }

    /// Makes the client at `ip` one of its source's: a token from its rate
    /// bucket, then a place under `max_connections_per_source` (nothing is
    /// locked when no per-source rule is set).
    fn join_source(&mut self, rt: &Runtime, ip: IpAddr) -> Result<(), Refusal> {
        let source = rt.config.server.source_of(ip);
        if let Source::Balancer = std::mem::replace(&mut self.source, Source::Named) {
            self.admission.unnamed.fetch_sub(1, Ordering::AcqRel);
        }
        if !rt.per_source {
            return Ok(());
        }
        let now = Instant::now();
        let mut table = self.admission.table(rt, now);
        let admitted = table.admit(source, now);
        self.admission.publish(&table);
        match admitted {
            Ok(t) => {
                self.source = Source::Counted(t);
                Ok(())
            }
            Err(sources::Refusal::RateLimited) => Err(Refusal::RateLimited),
            Err(sources::Refusal::SourceBusy) => Err(Refusal::SourceBusy),
            Err(sources::Refusal::TableFull) => Err(Refusal::Busy),
        }
    }

    /// Makes the per-source table count this client, at `ip`, (with no
    /// check) under its source as `rt` cuts it, for after a reload: when it
    /// sets a per-source rule, or changes `source_prefix_v4`/`_v6`, the
    /// clients already connected count against their sources as new ones
    /// would. Returns false if it was counted so already (or belongs to no
    /// source yet).
    pub(crate) fn count_source(&mut self, rt: &Runtime, ip: IpAddr) -> bool {
        let key = rt.config.server.source_of(ip);
        match &self.source {
            Source::Unnamed | Source::Balancer => return false,
            Source::Counted(t) if t.key() == key => return false,
            Source::Named | Source::Counted(_) => {}
        }
        let now = Instant::now();
        let mut table = self.admission.table(rt, now);
        if let Source::Counted(old) = std::mem::replace(&mut self.source, Source::Unnamed) {
            table.release(old, now);
        }
        self.source = Source::Counted(table.count(key, now));
        self.admission.publish(&table);
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.source, Source::Unnamed) {
            Source::Counted(counted) => {
                let mut table = lock(&self.admission.per_source);
                table.release(counted, Instant::now());
                self.admission.publish(&table);
            }
            Source::Balancer => {
                self.admission.unnamed.fetch_sub(1, Ordering::AcqRel);
            }
            Source::Unnamed | Source::Named => {}
        }
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sources::SourceKey;
    use std::net::Ipv6Addr;
    use std::num::{NonZeroU32, NonZeroUsize};

    fn runtime(max: usize, per_source: usize) -> Arc<Runtime> {
        runtime_with(|config| {
            config.server.max_connections = max;
            config.server.max_connections_per_source = NonZeroUsize::new(per_source);
        })
    }

    /// A runtime with the defaults as `edit` changes them.
    fn runtime_with(edit: impl FnOnce(&mut Config)) -> Arc<Runtime> {
        let mut config = Config::default();
        edit(&mut config);
        Runtime::new(config)
    }

    /// Why `a` refuses a client from `s` (it must refuse).
    fn refusal(a: &Arc<Admission>, rt: &Runtime, s: &str) -> Refusal {
        a.admit(rt, ip(s)).expect_err(s)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn counted(a: &Admission, s: &str) -> usize {
        lock(&a.per_source).open(SourceKey::new(ip(s), 32, 64))
    }

    #[test]
    fn the_global_slot_comes_back_when_the_ticket_is_dropped() {
        let rt = runtime(2, 0);
        let a = Admission::new(&rt);
        let t1 = a.admit(&rt, ip("192.0.2.1")).unwrap();
        let _t2 = a.admit(&rt, ip("192.0.2.2")).unwrap();
        assert_eq!(refusal(&a, &rt, "192.0.2.3"), Refusal::Busy);
        assert_eq!(a.open(), 2, "a refusal holds no slot");
        drop(t1);
        assert_eq!(a.open(), 1);
        assert!(a.admit(&rt, ip("192.0.2.3")).is_ok());
    }

    #[test]
    fn a_source_is_limited_and_its_slot_comes_back() {
        let rt = runtime(10, 1);
        let a = Admission::new(&rt);
        let t = a.admit(&rt, ip("192.0.2.1")).unwrap();
        assert!(matches!(t.source, Source::Counted(..)));
        assert_eq!(refusal(&a, &rt, "192.0.2.1"), Refusal::SourceBusy);
        // The IPv4-mapped form of the same client is the same source.
        assert_eq!(refusal(&a, &rt, "::ffff:192.0.2.1"), Refusal::SourceBusy);
        let _other = a.admit(&rt, ip("192.0.2.2")).unwrap();
        assert_eq!(a.open(), 2);
        drop(t);
        assert_eq!(counted(&a, "192.0.2.1"), 0);
        assert!(a.admit(&rt, ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn sources_are_cut_to_their_prefix() {
        let rt = runtime_with(|config| {
            config.server.max_connections_per_source = NonZeroUsize::new(1);
            config.server.source_prefix_v4 = 24;
            config.server.source_prefix_v6 = 48;
        });
        let a = Admission::new(&rt);
        let _t = a.admit(&rt, ip("192.0.2.1")).unwrap();
        assert_eq!(refusal(&a, &rt, "192.0.2.200"), Refusal::SourceBusy);
        assert!(a.admit(&rt, ip("192.0.3.1")).is_ok());
        let _u = a.admit(&rt, ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(refusal(&a, &rt, "2001:db8:1:ff::9"), Refusal::SourceBusy);
    }

    #[test]
    fn access_is_decided_first_and_counts_nothing() {
        let rt = runtime_with(|config| {
            config.access.deny = vec!["192.0.2.0/24".parse().unwrap()];
            config.server.max_connections = 1;
            config.server.connection_rate_per_source = NonZeroU32::new(1);
            config.server.connection_burst_per_source = 1;
        });
        let a = Admission::new(&rt);
        let _t = a.admit(&rt, ip("198.51.100.1")).unwrap();
        for _ in 0..3 {
            assert_eq!(refusal(&a, &rt, "::ffff:192.0.2.9"), Refusal::AccessDenied);
        }
        assert_eq!(a.open(), 1);
        assert_eq!(a.tracked_sources(), 1);
    }

    #[test]
    fn an_empty_bucket_is_rate_limited_and_not_counted() {
        let rt = runtime_with(|config| {
            config.server.connection_rate_per_source = NonZeroU32::new(1);
            config.server.connection_burst_per_source = 2;
        });
        let a = Admission::new(&rt);
        let t1 = a.admit(&rt, ip("192.0.2.1")).unwrap();
        let t2 = a.admit(&rt, ip("192.0.2.1")).unwrap();
        assert_eq!(refusal(&a, &rt, "192.0.2.1"), Refusal::RateLimited);
        assert_eq!(counted(&a, "192.0.2.1"), 2);
        assert_eq!(a.open(), 2);
        drop((t1, t2));
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn without_a_source_rule_the_table_stays_empty() {
        let rt = runtime(10, 0);
        let a = Admission::new(&rt);
        let mut t = a.admit(&rt, IpAddr::V6(Ipv6Addr::LOCALHOST)).unwrap();
        assert!(matches!(t.source, Source::Named));
        assert_eq!(a.tracked_sources(), 0);
        // A reload that sets a limit counts the clients already connected.
        let limited = runtime(10, 1);
        let client = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(t.count_source(&limited, client));
        assert!(!t.count_source(&limited, client));
        assert_eq!(refusal(&a, &limited, "::1"), Refusal::SourceBusy);
        drop(t);
        assert_eq!(a.tracked_sources(), 0);
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn a_reload_that_cuts_sources_wider_counts_the_clients_again() {
        let per_host = runtime(10, 2);
        let a = Admission::new(&per_host);
        let mut held: Vec<(Ticket, IpAddr)> = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
            .iter()
            .map(|s| (a.admit(&per_host, ip(s)).unwrap(), ip(s)))
            .collect();
        // Now one source per /24: the three clients are one source, over
        // its limit of two, so a fourth is refused.
        let per_24 = runtime_with(|c| {
            c.server.max_connections_per_source = NonZeroUsize::new(2);
            c.server.source_prefix_v4 = 24;
        });
        for (t, client) in &mut held {
            assert!(t.count_source(&per_24, *client));
            assert!(!t.count_source(&per_24, *client), "counted once");
        }
        let wide = |s: &str| lock(&a.per_source).open(SourceKey::new(ip(s), 24, 64));
        assert_eq!(wide("192.0.2.9"), 3);
        assert_eq!(counted(&a, "192.0.2.1"), 0, "no longer counted per host");
        assert_eq!(refusal(&a, &per_24, "192.0.2.4"), Refusal::SourceBusy);
        assert!(a.admit(&per_24, ip("198.51.100.1")).is_ok());
        // Back to one source per host: each counts alone again.
        for (t, client) in &mut held {
            assert!(t.count_source(&per_host, *client));
        }
        assert_eq!(wide("192.0.2.9"), 0);
        assert_eq!(counted(&a, "192.0.2.1"), 1);
        drop(held);
        assert_eq!(counted(&a, "192.0.2.2"), 0);
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn sources_that_need_no_state_are_swept_without_new_clients() {
        let rt = runtime_with(|c| {
            c.server.connection_rate_per_source = NonZeroU32::new(100);
            c.server.connection_burst_per_source = 5;
        });
        let a = Admission::new(&rt);
        assert_eq!(a.sweep_due(), None, "nothing to sweep");
        for s in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            drop(a.admit(&rt, ip(s)).unwrap());
        }
        // Each took a token: kept until its bucket is full again.
        assert_eq!(a.tracked_sources(), 3);
        let due = a.sweep_due().expect("a sweep is due");
        a.sweep(due - Duration::from_millis(1));
        assert_eq!(a.tracked_sources(), 3, "not before it is due");
        a.sweep(due);
        assert_eq!(a.tracked_sources(), 0, "full buckets need no state");
        assert_eq!(a.evicted_sources(), 0, "and are not evictions");
        assert_eq!(a.sweep_due(), None);
    }

    #[test]
    fn a_panicking_holder_gives_its_slots_back() {
        let rt = runtime(10, 1);
        let a = Admission::new(&rt);
        let held = Arc::clone(&a);
        let r = std::thread::spawn(move || {
            let _t = held.admit(&rt, ip("192.0.2.1")).unwrap();
            panic!("worker failure");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(a.open(), 0);
        assert_eq!(a.tracked_sources(), 0);
    }

    #[test]
    fn a_ticket_without_a_source_holds_the_global_slot_only() {
        // The state of a connection awaiting a PROXY header.
        let rt = runtime_with(|config| {
            config.server.max_connections_per_source = NonZeroUsize::new(1);
            config.access.deny = vec!["192.0.2.66".parse().unwrap()];
        });
        let a = Admission::new(&rt);
        let mut t = a.enter(&rt).unwrap();
        assert!(
            !t.count_source(&rt, ip("192.0.2.1")),
            "no source to count yet"
        );
        assert_eq!(a.tracked_sources(), 0);
        assert_eq!(a.open(), 1);
        let _other = a.admit(&rt, ip("192.0.2.1")).unwrap();
        assert_eq!(
            t.name_client(&rt, ip("192.0.2.66")).unwrap_err(),
            Refusal::AccessDenied
        );
        assert_eq!(
            t.name_client(&rt, ip("192.0.2.1")).unwrap_err(),
            Refusal::SourceBusy
        );
        drop(t);
        assert_eq!(a.open(), 1);
        assert_eq!(counted(&a, "192.0.2.1"), 1);
    }

    #[test]
    fn refusal_names_are_stable() {
        assert_eq!(Refusal::Busy.as_str(), "busy");
        assert_eq!(Refusal::SourceBusy.as_str(), "source_busy");
        assert_eq!(Refusal::RateLimited.as_str(), "rate_limited");
        assert_eq!(Refusal::AccessDenied.as_str(), "access_denied");
        assert_eq!(Refusal::RateLimited.words(), "rate limited");
        assert_eq!(Refusal::Busy.words(), "server busy");
        assert_eq!(Refusal::SourceBusy.words(), "source busy");
        assert_eq!(Refusal::AccessDenied.words(), "access denied");
        assert_eq!(Refusal::BadProxyHeader.as_str(), "bad_proxy_header");
        assert_eq!(Refusal::BadProxyHeader.words(), "bad proxy header");
    }

    #[test]
    fn a_balancers_connection_holds_a_slot_but_is_no_client_until_named() {
        let rt = runtime(2, 0);
        let a = Admission::new(&rt);
        let mut balancer = a.enter_balancer(&rt).unwrap();
        let check = a.enter_balancer(&rt).unwrap();
        assert_eq!(a.open(), 0, "no clients yet");
        assert_eq!(
            refusal(&a, &rt, "192.0.2.1"),
            Refusal::Busy,
            "both slots taken"
        );
        balancer.name_client(&rt, ip("192.0.2.2")).unwrap();
        assert_eq!(a.open(), 1, "named: a client");
        drop(check);
        assert_eq!(a.open(), 1);
        drop(balancer);
        assert_eq!(a.open(), 0);
        let client = a.admit(&rt, ip("192.0.2.3")).unwrap();
        assert_eq!(a.open(), 1, "every slot came back");
        drop(client);
    }
}
