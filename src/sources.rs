//! How much each source may take (jamd.toml(5), the per-source keys of
//! `[server]`), without I/O: the source a client
//! counts as, a token bucket of new connections per source, and the table
//! that keeps both in bounded memory.
//!
//! One table serves every worker (behind the server's lock), so it is plain
//! data: no clock of its own (the caller passes `now`), no threads, no
//! timers. A source needs state only while it has open connections or a
//! bucket that is not full; everything else is dropped as soon as it is
//! seen, and when the table is full the source seen longest ago is forgotten
//! (counted), never one with open connections. Hand-written rather than
//! `governor`: its keyed store grows until `retain_recent()` is called and
//! brings dashmap, quanta and parking_lot for locking we already do.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use crate::access::Prefix;

/// The unit of a bucket's level: a billionth of a token, so that refilling
/// `rate` tokens a second over a number of nanoseconds is exact integer
/// arithmetic (no rounding ever grants a token early).
const NANO: u64 = 1_000_000_000;

/// A client address cut to the source prefix: the unit every per-source
/// rule counts in. `127.0.0.2` with /32, `2001:db8:1:2::/64` with /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey(Prefix);

impl SourceKey {
    /// The source of `ip` (IPv4-mapped is IPv4), cut to `v4` or `v6` bits.
    /// Lengths past the address width are taken as the whole address.
    pub fn new(ip: IpAddr, v4: u8, v6: u8) -> SourceKey {
        let ip = ip.to_canonical();
        let len = match ip {
            IpAddr::V4(_) => v4.min(32),
            IpAddr::V6(_) => v6.min(128),
        };
        SourceKey(Prefix::new(ip, len).unwrap_or_else(|| Prefix::host(ip)))
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A connection rate: `per_second` new connections a second on average,
/// `burst` at once. `per_second == 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens gained a second; 0: no limit.
    pub per_second: u32,
    /// Most tokens the bucket holds.
    pub burst: u32,
}

impl Rate {
    fn is_limited(&self) -> bool {
        self.per_second > 0
    }

    fn capacity(&self) -> u64 {
        u64::from(self.burst) * NANO
    }
}

/// A token bucket: holds at most `burst` tokens, gains `per_second` a
/// second, and each new connection takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// The level at `at`, in billionths of a token.
    level: u64,
    at: Instant,
}

impl Bucket {
    /// A full bucket: what a source that needs no state has.
    pub fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            level: rate.capacity(),
            at: now,
        }
    }

    /// The level at `now`, in billionths of a token.
    fn level_at(&self, rate: Rate, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        let gained = elapsed.saturating_mul(u128::from(rate.per_second));
        let level = u128::from(self.level).saturating_add(gained);
        // Never above capacity, which is a u64.
        let capacity = rate.capacity();
        u64::try_from(level).map_or(capacity, |level| level.min(capacity))
    }

    /// Takes one token if there is one. Without a limit it always grants.
    pub fn take(&mut self, rate: Rate, now: Instant) -> bool {
        if !rate.is_limited() {
            return true;
        }
        let level = self.level_at(rate, now);
        // Times from several threads may arrive slightly out of order:
        // never move the reference point back.
        self.at = self.at.max(now);
        if level >= NANO {
            self.level = level - NANO;
            true
        } else {
            self.level = level;
            false
        }
    }

    /// Whether the bucket is full at `now` (then it needs no state).
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        !rate.is_limited() || self.level_at(rate, now) >= rate.capacity()
    }
}

/// The per-source limits, from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// `connection_rate_per_source` and `connection_burst_per_source`.
    pub rate: Rate,
    /// `max_connections_per_source`; 0: no limit.
    pub max_open: usize,
    /// `max_tracked_sources`: most sources kept in memory.
    pub max_tracked: usize,
}

impl SourceLimits {
    /// Whether any per-source rule is set (else a full table refuses no one).
    fn any(&self) -> bool {
        self.rate.is_limited() || self.max_open > 0
    }
}

/// Why a source may not open another connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its bucket is empty: `ERROR rate limited`.
    RateLimited,
    /// It has `max_connections_per_source` open already: `ERROR server busy`.
    SourceBusy,
    /// Every tracked source has open connections, so there is no room to
    /// keep this one: `ERROR server busy`.
    TableFull,
}

/// A connection admitted by [`SourceTable::admit`]; give it back with
/// [`SourceTable::release`] when the connection ends. Not `Clone`, so it
/// cannot be given back twice.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a ticket not released keeps its source counted for ever"]
pub struct Ticket {
    key: SourceKey,
    /// False only when no per-source rule was set and the table had no room:
    /// the connection was served without being counted.
    counted: bool,
}

impl Ticket {
    /// The source the connection counts against.
    pub fn key(&self) -> SourceKey {
        self.key
    }
}

#[derive(Debug)]
struct Slot {
    open: usize,
    bucket: Bucket,
    /// When it was last seen, as a sequence number; the key of its entry in
    /// `idle` while it has no open connection.
    seen: u64,
}

/// Per-source state for at most `max_tracked` sources.
#[derive(Debug)]
pub struct SourceTable {
    limits: SourceLimits,
    slots: HashMap<SourceKey, Slot>,
    /// Sources with no open connection, oldest first: the ones that may be
    /// forgotten.
    idle: BTreeMap<u64, SourceKey>,
    next_seen: u64,
    evicted: u64,
}

impl SourceTable {
    /// An empty table.
    pub fn new(limits: SourceLimits) -> SourceTable {
        SourceTable {
            limits,
            slots: HashMap::new(),
            idle: BTreeMap::new(),
            next_seen: 0,
            evicted: 0,
        }
    }

    /// Applies reloaded limits; connections already counted stay counted.
    /// A smaller bound forgets idle sources (counted) until it is met.
    pub fn set_limits(&mut self, limits: SourceLimits, now: Instant) {
        self.limits = limits;
        self.sweep(now);
        while self.slots.len() > self.limits.max_tracked {
            if !self.forget_oldest(now) {
                break;
            }
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> SourceLimits {
        self.limits
    }

    /// Sources in the table now (`jamd_tracked_sources`).
    pub fn tracked(&self) -> usize {
        self.slots.len()
    }

    /// Sources forgotten because the table was full
    /// (`jamd_tracked_sources_evicted_total`).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Connections counted as open from `key`.
    pub fn open(&self, key: SourceKey) -> usize {
        self.slots.get(&key).map_or(0, |s| s.open)
    }

    fn stamp(&mut self) -> u64 {
        self.next_seen += 1;
        self.next_seen
    }

    /// Drops up to `at_most` of the oldest idle sources whose bucket is full
    /// again: they need no state, so this is not an eviction.
    fn prune(&mut self, now: Instant, at_most: usize) {
        for _ in 0..at_most {
            let Some((&seen, &key)) = self.idle.first_key_value() else {
                return;
            };
            let full = self
                .slots
                .get(&key)
                .is_none_or(|s| s.bucket.is_full(self.limits.rate, now));
            if !full {
                return;
            }
            self.idle.remove(&seen);
            self.slots.remove(&key);
        }
    }

    /// Drops every idle source whose bucket is full again: they need no
    /// state, so this is not an eviction. Returns how many went.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let rate = self.limits.rate;
        let slots = &mut self.slots;
        let before = self.idle.len();
        self.idle.retain(|_, key| {
            let full = slots.get(key).is_none_or(|s| s.bucket.is_full(rate, now));
            if full {
                slots.remove(key);
            }
            !full
        });
        before - self.idle.len()
    }

    /// Sources with no open connection (kept for their rate bucket).
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    /// Forgets the idle source seen longest ago; false when every source
    /// has open connections.
    fn forget_oldest(&mut self, now: Instant) -> bool {
        let Some((_, key)) = self.idle.pop_first() else {
            return false;
        };
        if let Some(slot) = self.slots.remove(&key) {
            if !slot.bucket.is_full(self.limits.rate, now) {
                self.evicted += 1;
            }
        }
        true
    }

    /// A new connection from `key`: takes a token, then counts it against
    /// the per-source limit. A refused connection is not counted (a token it
    /// took stays taken: it was a connection attempt).
    pub fn admit(&mut self, key: SourceKey, now: Instant) -> Result<Ticket, Refusal> {
        // A little housekeeping on every call keeps stale full buckets from
        // lingering until the table fills.
        self.prune(now, 2);
        let seen = self.stamp();
        let limits = self.limits;
        if !self.slots.contains_key(&key) {
            if self.slots.len() >= limits.max_tracked && !self.forget_oldest(now) {
                return if limits.any() {
                    Err(Refusal::TableFull)
                } else {
                    Ok(Ticket {
                        key,
                        counted: false,
                    })
                };
            }
            self.slots.insert(
                key,
                Slot {
                    open: 0,
                    bucket: Bucket::full(limits.rate, now),
                    seen,
                },
            );
        } else if let Some(slot) = self.slots.get(&key) {
            if slot.open == 0 {
                self.idle.remove(&slot.seen);
            }
        }
        let Some(slot) = self.slots.get_mut(&key) else {
            unreachable!("inserted above");
        };
        slot.seen = seen;
        let refusal = if !slot.bucket.take(limits.rate, now) {
            Some(Refusal::RateLimited)
        } else if limits.max_open > 0 && slot.open >= limits.max_open {
            Some(Refusal::SourceBusy)
        } else {
            slot.open += 1;
            None
        };
        match refusal {
            None => Ok(Ticket { key, counted: true }),
            Some(why) => {
                self.settle(key, now);
                Err(why)
            }
        }
    }

    /// A datagram from `key`: takes a token from its bucket, and counts
    /// nothing (a datagram holds no connection). False when the bucket is
    /// empty, or when the table is full of sources with open connections
    /// and so cannot keep this one's bucket.
    pub fn take_token(&mut self, key: SourceKey, now: Instant) -> bool {
        match self.admit(key, now) {
            Ok(ticket) => {
                self.release(ticket, now);
                true
            }
            // The token was taken before the count was looked at.
            Err(Refusal::SourceBusy) => true,
            Err(Refusal::RateLimited | Refusal::TableFull) => false,
        }
    }

    /// Counts a connection that is already open without any check (no
    /// token, no limit): for the clients connected when a reload sets a
    /// per-source rule. It is never refused, so the table may go over its
    /// bound by sources with open connections until they leave.
    pub fn count(&mut self, key: SourceKey, now: Instant) -> Ticket {
        let seen = self.stamp();
        if !self.slots.contains_key(&key) {
            if self.slots.len() >= self.limits.max_tracked {
                self.forget_oldest(now);
            }
            self.slots.insert(
                key,
                Slot {
                    open: 0,
                    bucket: Bucket::full(self.limits.rate, now),
                    seen,
                },
            );
        } else if let Some(slot) = self.slots.get(&key) {
            if slot.open == 0 {
                self.idle.remove(&slot.seen);
            }
        }
        if let Some(slot) = self.slots.get_mut(&key) {
            slot.open += 1;
            slot.seen = seen;
        }
        Ticket { key, counted: true }
    }

    /// A connection admitted earlier has ended.
    pub fn release(&mut self, ticket: Ticket, now: Instant) {
        if !ticket.counted {
            return;
        }
        let seen = self.stamp();
        if let Some(slot) = self.slots.get_mut(&ticket.key) {
            slot.open = slot.open.saturating_sub(1);
            if slot.open == 0 {
                slot.seen = seen;
                self.settle(ticket.key, now);
            }
        }
    }

    /// A source with no open connection: dropped if its bucket is full,
    /// else kept in the idle order under its `seen` stamp.
    fn settle(&mut self, key: SourceKey, now: Instant) {
        let Some(slot) = self.slots.get(&key) else {
            return;
        };
        if slot.open > 0 {
            return;
        }
        if slot.bucket.is_full(self.limits.rate, now) {
            self.slots.remove(&key);
        } else {
            self.idle.insert(slot.seen, key);
            // Over the bound only after a reload lowered it below the
            // sources then connected: shrink as they leave.
            while self.slots.len() > self.limits.max_tracked && self.forget_oldest(now) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(s: &str) -> SourceKey {
        SourceKey::new(s.parse().unwrap(), 32, 64)
    }

    fn limits(per_second: u32, burst: u32, max_open: usize, max_tracked: usize) -> SourceLimits {
        SourceLimits {
            rate: Rate { per_second, burst },
            max_open,
            max_tracked,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// A table with `limits`, and the instant its tests start at.
    fn table(limits: SourceLimits) -> (SourceTable, Instant) {
        (SourceTable::new(limits), Instant::now())
    }

    /// A connection that comes and goes at `at`: admitted, then released.
    fn visit(t: &mut SourceTable, k: SourceKey, at: Instant) {
        let tk = t.admit(k, at).unwrap();
        t.release(tk, at);
    }

    #[test]
    fn a_datagram_takes_a_token_shared_with_connections_and_counts_nothing() {
        let (mut t, t0) = table(limits(1, 3, 1, 16));
        let k = key("192.0.2.7");
        let conn = t.admit(k, t0).unwrap();
        // The source is at its connection limit: datagrams still get their
        // tokens, and leave no count behind.
        assert!(t.take_token(k, t0));
        assert!(t.take_token(k, t0));
        assert!(!t.take_token(k, t0), "the burst of 3 is spent");
        assert_eq!(t.open(k), 1);
        t.release(conn, t0);
        assert_eq!(t.open(k), 0);
        assert!(
            t.admit(k, ms(t0, 500)).is_err(),
            "no token for a connection either"
        );
        assert!(t.take_token(k, ms(t0, 1000)), "the rate refills it");
    }

    #[test]
    fn keys_cut_to_the_source_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            SourceKey::new(ip("10.1.2.3"), 24, 64).to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(
            SourceKey::new(ip("10.1.2.3"), 32, 64).to_string(),
            "10.1.2.3"
        );
        assert_eq!(
            SourceKey::new(ip("::ffff:10.1.2.3"), 24, 64),
            SourceKey::new(ip("10.1.2.99"), 24, 64)
        );
        assert_eq!(
            SourceKey::new(ip("2001:db8:1:2:aaaa::1"), 32, 64).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(SourceKey::new(ip("::1"), 32, 128).to_string(), "::1");
        assert_eq!(
            SourceKey::new(ip("10.1.2.3"), 0, 0).to_string(),
            "0.0.0.0/0"
        );
    }

    #[test]
    fn bucket_grants_the_burst_then_the_rate() {
        let rate = Rate {
            per_second: 2,
            burst: 3,
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        assert!(b.take(rate, t0) && b.take(rate, t0) && b.take(rate, t0));
        assert!(!b.take(rate, t0));
        assert!(!b.take(rate, ms(t0, 499)));
        assert!(b.take(rate, ms(t0, 500)));
        assert!(!b.take(rate, ms(t0, 500)));
        assert!(!b.is_full(rate, ms(t0, 1999)));
        assert!(b.is_full(rate, ms(t0, 2000)));
    }

    #[test]
    fn no_rate_means_no_limit_and_no_state() {
        let (mut t, t0) = table(limits(0, 0, 0, 4));
        let k = key("127.0.0.2");
        let tickets: Vec<Ticket> = (0..100).map(|_| t.admit(k, t0).unwrap()).collect();
        assert_eq!(t.open(k), 100);
        assert_eq!(t.tracked(), 1);
        for tk in tickets {
            t.release(tk, t0);
        }
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn rate_limited_is_not_counted_as_open() {
        let (mut t, t0) = table(limits(1, 2, 0, 16));
        let k = key("127.0.0.2");
        let a = t.admit(k, t0).unwrap();
        let b = t.admit(k, t0).unwrap();
        assert_eq!(t.admit(k, t0), Err(Refusal::RateLimited));
        assert_eq!(t.open(k), 2);
        t.release(a, t0);
        t.release(b, t0);
        // The bucket is not full yet: the source is still tracked.
        assert_eq!(t.tracked(), 1);
        // Once it has refilled, the next look drops it.
        let _ = t
            .admit(key("127.0.0.3"), ms(t0, 2000))
            .map(|tk| t.release(tk, ms(t0, 2000)));
        assert_eq!(t.open(k), 0);
        assert_eq!(t.tracked(), 1, "only 127.0.0.3 (its token taken) is left");
    }

    #[test]
    fn per_source_limit_counts_sources_not_addresses() {
        let (mut t, t0) = table(limits(0, 0, 2, 16));
        let k = |s: &str| SourceKey::new(s.parse().unwrap(), 24, 64);
        let a = t.admit(k("10.0.0.1"), t0).unwrap();
        let _b = t.admit(k("10.0.0.2"), t0).unwrap();
        assert_eq!(t.admit(k("10.0.0.3"), t0), Err(Refusal::SourceBusy));
        assert!(t.admit(k("10.0.1.1"), t0).is_ok());
        t.release(a, t0);
        assert!(t.admit(k("10.0.0.3"), t0).is_ok());
    }

    #[test]
    fn full_table_forgets_the_idle_source_seen_longest_ago() {
        let (mut t, t0) = table(limits(1, 1, 0, 2));
        let (a, b, c) = (key("127.0.0.2"), key("127.0.0.3"), key("127.0.0.4"));
        visit(&mut t, a, t0);
        visit(&mut t, b, t0);
        let _ = t.admit(a, t0); // a seen again (rate limited): b is now oldest
        let tc = t.admit(c, t0).unwrap();
        assert_eq!(t.tracked(), 2);
        assert_eq!(t.evicted(), 1);
        // b was forgotten: its bucket is full again.
        assert!(t.admit(b, t0).is_ok(), "b forgotten, so it starts full");
        assert_eq!(t.evicted(), 2, "a went to make room");
        t.release(tc, t0);
    }

    #[test]
    fn sources_with_open_connections_are_never_forgotten() {
        let (mut t, t0) = table(limits(1, 5, 0, 2));
        let _a = t.admit(key("127.0.0.2"), t0).unwrap();
        let _b = t.admit(key("127.0.0.3"), t0).unwrap();
        assert_eq!(t.admit(key("127.0.0.4"), t0), Err(Refusal::TableFull));
        assert_eq!(t.evicted(), 0);
        assert_eq!(t.open(key("127.0.0.2")), 1);
        // With no per-source rule, a full table serves the client uncounted.
        let mut t = SourceTable::new(limits(0, 0, 0, 1));
        let a = t.admit(key("127.0.0.2"), t0).unwrap();
        let b = t.admit(key("127.0.0.3"), t0).unwrap();
        assert_eq!(t.tracked(), 1);
        t.release(b, t0);
        assert_eq!(t.open(key("127.0.0.2")), 1);
        t.release(a, t0);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn a_per_source_count_alone_makes_a_full_table_refuse() {
        // No rate, only max_connections_per_source: a source the table has
        // no room for could not be counted, so it is refused, not let in
        // unchecked.
        let (mut t, t0) = table(limits(0, 0, 2, 1));
        let a = t.admit(key("127.0.0.2"), t0).unwrap();
        assert_eq!(t.admit(key("127.0.0.3"), t0), Err(Refusal::TableFull));
        assert_eq!(t.tracked(), 1);
        assert_eq!(t.open(key("127.0.0.3")), 0);
        t.release(a, t0);
        assert!(t.admit(key("127.0.0.3"), t0).is_ok());
        // A rate alone does the same.
        let (mut t, t0) = table(limits(1, 1, 0, 1));
        let _a = t.admit(key("127.0.0.2"), t0).unwrap();
        assert_eq!(t.admit(key("127.0.0.3"), t0), Err(Refusal::TableFull));
    }

    #[test]
    fn count_takes_a_connection_in_without_any_check() {
        // A rate and a per-source limit, and a bucket already empty: count
        // still counts (these connections were open before the reload).
        let (mut t, t0) = table(limits(1, 1, 1, 2));
        let a = key("127.0.0.2");
        let idle = key("127.0.0.3");
        visit(&mut t, idle, t0); // tracked, idle, its token taken
        let first = t.count(a, t0);
        assert_eq!(t.open(a), 1);
        assert_eq!((t.tracked(), t.evicted()), (2, 0), "there was room");
        let second = t.count(a, t0);
        assert_eq!(t.open(a), 2, "over max_connections_per_source: counted");
        // The idle source is counted too and leaves the idle order: a full
        // table forgets no source with open connections.
        let back = t.count(idle, t0);
        assert_eq!(t.open(idle), 1);
        assert_eq!(t.admit(key("127.0.0.4"), t0), Err(Refusal::TableFull));
        assert_eq!((t.open(a), t.open(idle)), (2, 1));
        // Released: a (its bucket full) is dropped, the idle source stays.
        for tk in [first, second, back] {
            t.release(tk, t0);
        }
        assert_eq!((t.tracked(), t.evicted()), (1, 0));
        // A new source with no room: the idle one seen longest ago goes.
        let (c, d) = (key("127.0.0.5"), key("127.0.0.6"));
        let _c = t.count(c, ms(t0, 1));
        let _d = t.count(d, ms(t0, 1));
        assert_eq!((t.open(c), t.open(d)), (1, 1));
        assert_eq!((t.tracked(), t.evicted()), (2, 1));
    }

    #[test]
    fn a_refused_connection_leaves_the_open_ones_counted() {
        let (mut t, t0) = table(limits(0, 0, 1, 4));
        let a = key("127.0.0.2");
        let open = t.admit(a, t0).unwrap();
        assert_eq!(t.admit(a, t0), Err(Refusal::SourceBusy));
        assert_eq!(t.open(a), 1);
        assert_eq!(t.tracked(), 1);
        assert_eq!(t.admit(a, t0), Err(Refusal::SourceBusy));
        t.release(open, t0);
        assert_eq!((t.open(a), t.tracked()), (0, 0));
    }

    #[test]
    fn reload_keeps_counts_and_shrinks_to_the_new_bound() {
        let (mut t, t0) = table(limits(1, 1, 0, 8));
        let open = t.admit(key("127.0.0.9"), t0).unwrap();
        for i in 2..8 {
            visit(&mut t, key(&format!("127.0.0.{i}")), t0);
        }
        assert_eq!(t.tracked(), 7);
        t.set_limits(limits(1, 1, 1, 3), t0);
        assert_eq!(t.tracked(), 3);
        assert_eq!(t.evicted(), 4);
        assert_eq!(t.open(key("127.0.0.9")), 1);
        assert_eq!(
            t.admit(key("127.0.0.9"), ms(t0, 5000)),
            Err(Refusal::SourceBusy)
        );
        t.release(open, t0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Admit { src: u8, after_ms: u16 },
            Release { which: u8, after_ms: u16 },
            Reload { max_open: u8, max_tracked: u8 },
            Count { src: u8 },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0u8..24, 0u16..400).prop_map(|(src, after_ms)| Op::Admit { src, after_ms }),
                3 => (any::<u8>(), 0u16..400).prop_map(|(which, after_ms)| Op::Release { which, after_ms }),
                1 => (0u8..4, 1u8..12).prop_map(|(max_open, max_tracked)| Op::Reload { max_open, max_tracked }),
                1 => (0u8..24).prop_map(|src| Op::Count { src }),
            ]
        }

        proptest! {
            #[test]
            fn counts_bounds_and_open_sources_hold(
                per_second in 0u32..5,
                burst in 1u32..5,
                max_tracked in 1usize..12,
                ops in proptest::collection::vec(op(), 1..200),
            ) {
                let t0 = Instant::now();
                let mut now = t0;
                let mut lim = limits(per_second, burst, 0, max_tracked);
                let mut t = SourceTable::new(lim);
                let mut held: Vec<Ticket> = Vec::new();
                for op in ops {
                    match op {
                        Op::Admit { src, after_ms } => {
                            now += Duration::from_millis(u64::from(after_ms));
                            let k = key(&format!("127.0.1.{src}"));
                            if let Ok(tk) = t.admit(k, now) {
                                held.push(tk);
                            }
                        }
                        Op::Release { which, after_ms } => {
                            now += Duration::from_millis(u64::from(after_ms));
                            if !held.is_empty() {
                                let tk = held.swap_remove(usize::from(which) % held.len());
                                t.release(tk, now);
                            }
                        }
                        Op::Count { src } => {
                            held.push(t.count(key(&format!("127.0.1.{src}")), now));
                        }
                        Op::Reload { max_open, max_tracked } => {
                            lim.max_open = usize::from(max_open);
                            lim.max_tracked = usize::from(max_tracked);
                            t.set_limits(lim, now);
                        }
                    }
                    // Every counted ticket is counted once, by its source.
                    let mut want: HashMap<SourceKey, usize> = HashMap::new();
                    for tk in held.iter().filter(|tk| tk.counted) {
                        *want.entry(tk.key).or_default() += 1;
                    }
                    for (k, n) in &want {
                        prop_assert_eq!(t.open(*k), *n, "source {} open", k);
                    }
                    let total: usize = t.slots.values().map(|s| s.open).sum();
                    prop_assert_eq!(total, want.values().sum::<usize>());
                    // The bound holds unless open sources alone exceed it
                    // (a reload below what is connected: never drop anyone).
                    prop_assert!(t.tracked() <= t.limits.max_tracked.max(want.len()));
                    // Idle order and slots agree.
                    for (seen, k) in &t.idle {
                        let s = &t.slots[k];
                        prop_assert_eq!(s.open, 0);
                        prop_assert_eq!(s.seen, *seen);
                    }
                    prop_assert_eq!(
                        t.idle.len(),
                        t.slots.values().filter(|s| s.open == 0).count()
                    );
                }
                for tk in held.drain(..) {
                    t.release(tk, now);
                }
                prop_assert!(t.slots.values().all(|s| s.open == 0));
                // Long after, every bucket is full: nothing needs state.
                let later = now + Duration::from_secs(10);
                t.set_limits(lim, later);
                prop_assert_eq!(t.tracked(), 0);
            }

            #[test]
            fn bucket_never_grants_more_than_burst_plus_rate_times_t(
                per_second in 1u32..1000,
                burst in 1u32..50,
                gaps in proptest::collection::vec(0u64..50_000_000, 1..300),
            ) {
                let rate = Rate { per_second, burst };
                let t0 = Instant::now();
                let mut b = Bucket::full(rate, t0);
                let mut granted = 0u128;
                let mut elapsed_ns = 0u128;
                for gap in gaps {
                    elapsed_ns += u128::from(gap);
                    if b.take(rate, t0 + Duration::from_nanos(u64::try_from(elapsed_ns).unwrap())) {
                        granted += 1;
                    }
                    // granted ≤ burst + rate × t, in exact integers.
                    prop_assert!(
                        granted * 1_000_000_000
                            <= u128::from(burst) * 1_000_000_000 + u128::from(per_second) * elapsed_ns
                    );
                }
            }

            #[test]
            fn table_rate_holds_while_the_source_is_remembered(
                per_second in 1u32..20,
                burst in 1u32..5,
                gaps in proptest::collection::vec(0u64..200, 1..200),
            ) {
                let t0 = Instant::now();
                let mut t = SourceTable::new(limits(per_second, burst, 0, 4));
                let k = key("127.0.0.2");
                let mut granted = 0u128;
                let mut elapsed_ms = 0u64;
                for gap in gaps {
                    elapsed_ms += gap;
                    // Dropped when full again, which is the same as remembered.
                    if let Ok(tk) = t.admit(k, ms(t0, elapsed_ms)) {
                        granted += 1;
                        t.release(tk, ms(t0, elapsed_ms));
                    }
                    prop_assert!(
                        granted * 1000 <= u128::from(burst) * 1000
                            + u128::from(per_second) * u128::from(elapsed_ms)
                    );
                }
            }
        }
    }
}
