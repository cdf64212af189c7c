//! What became of a client: why it was refused ([`Refusal`]), why its
//! connection ended ([`CloseReason`]), and refusals counted by reason
//! ([`Tally`]). The server decides them; log lines and metrics name them,
//! in the words and label values given here, so this module sits below all
//! three and knows none of them.

use std::fmt;

use crate::labels::labels;

labels! {
    /// Why a client was not served. The names are stable: log lines and the
    /// `reason` label of `jamd_connections_refused_total` use
    /// [`Refusal::as_str`]. (Admission decides in another order: access
    /// first, see `server::admission`.)
    pub enum Refusal {
        /// `max_connections` are open, or the per-source table has no room
        /// because every source in it has clients connected.
        Busy = "busy",
        /// `max_connections_per_source` are open from the client's source.
        SourceBusy = "source_busy",
        /// The source's connection rate bucket is empty.
        RateLimited = "rate_limited",
        /// `[access]` denies the client.
        AccessDenied = "access_denied",
        /// A trusted balancer sent a malformed or oversized PROXY header, or
        /// none in time: closed without a reply.
        BadProxyHeader = "bad_proxy_header",
    }
}

impl Refusal {
    /// The words of the `refused ADDR: …` log line.
    pub(crate) fn words(self) -> &'static str {
        match self {
            Refusal::AccessDenied => "access denied",
            Refusal::Busy => "server busy",
            Refusal::SourceBusy => "source busy",
            Refusal::RateLimited => "rate limited",
            Refusal::BadProxyHeader => "bad proxy header",
        }
    }
}

labels! {
    /// Why a connection ended. The names are stable: the `closed … reason=`
    /// log line and the `jamd_connections_closed_total{reason}` metric use
    /// [`CloseReason::as_str`].
    pub enum CloseReason {
        /// The client sent QUIT.
        Quit = "quit",
        /// The client closed its side.
        Eof = "eof",
        /// No complete line within the idle timeout.
        Idle = "idle",
        /// A line longer than max_line_bytes.
        TooLong = "too_long",
        /// A socket error (reset, broken pipe, …).
        Error = "error",
        /// The shutdown grace period ended.
        Shutdown = "shutdown",
        /// The whole reply was sent (daytime, rfc868), and the client closed
        /// or the linger time was over.
        Sent = "sent",
    }
}

/// Refusals counted by reason: what a `refused N more connection(s)` line
/// says, in the words of the single lines (`8 rate limited, 3 source busy`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    /// By reason, in the order of [`Refusal::ALL`].
    counts: [u64; Refusal::ALL.len()],
}

impl Tally {
    /// `n` refusals for `why`.
    pub(crate) fn of(why: Refusal, n: u64) -> Tally {
        let mut t = Tally::default();
        t.add(why, n);
        t
    }

    /// Counts `n` more refusals for `why`.
    pub(crate) fn add(&mut self, why: Refusal, n: u64) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.counts[i] = self.counts[i].saturating_add(n);
        }
    }

    /// Adds another tally's counts to this one.
    pub(crate) fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
    }

    /// All refusals counted.
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().fold(0, |a, n| a.saturating_add(*n))
    }

    /// Nothing counted.
    pub(crate) fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// `refused 11 more connection(s): 8 rate limited, 3 source busy`: the
/// reasons by count, the most frequent first.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused {} more connection(s)", self.total())?;
        let mut reasons: Vec<(u64, Refusal)> = Refusal::ALL
            .iter()
            .zip(self.counts)
            .filter(|(_, n)| *n > 0)
            .map(|(why, n)| (n, *why))
            .collect();
        // Stable: equal counts keep the order of Refusal::ALL.
        reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
        for (i, (n, why)) in reasons.iter().enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(f, "{sep}{n} {}", why.words())?;
        }
        Ok(())
    }
}
