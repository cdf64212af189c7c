//! How refusals are logged: at most one line a second over every reason and
//! every worker, and the lines left out are never lost but summed up as
//! `refused N more connection(s): N1 REASON, N2 REASON` within a minute (see
//! jamd(8), LOGGING).
//!
//! A flood of refused clients must not become a flood of log lines (OpenSSH
//! logs throttling as a begin / summary / end for the same reason), yet an
//! operator counting refusals in the log must get the right total. Plain data
//! and no clock of its own: the server holds it under a lock and passes
//! `now`, and wakes up at [`RefusalLog::deadline`] to [`RefusalLog::tick`].
//! A line the log could not take gives its [`Tally`] back to the logger,
//! which says it later (see `Logger::refused`).

use std::time::{Duration, Instant};

use crate::outcome::{Refusal, Tally};

/// Lines are at most this often, over all reasons.
const EVERY: Duration = Duration::from_secs(1);
/// A summary comes this long after the first refusal left out, at the
/// latest, while refusals keep coming (well within the minute promised).
const SUMMARY_WITHIN: Duration = Duration::from_secs(10);
/// Or this long after the last refusal, once they stop.
const QUIET: Duration = Duration::from_secs(1);

/// What to log for a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Say {
    /// Log this refusal's own line.
    This,
    /// Log `refused N more connection(s): …` (this refusal is one of the N).
    More(Tally),
    /// Log nothing now; it is counted for a later summary.
    Nothing,
}

/// The state of refusal logging.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    last_line: Option<Instant>,
    /// Refusals not logged yet.
    left_out: Tally,
    /// When the first of them came.
    since: Option<Instant>,
    last_refusal: Option<Instant>,
}

impl RefusalLog {
    /// Nothing refused yet.
    pub(crate) fn new() -> RefusalLog {
        RefusalLog::default()
    }

    fn slot_free(&self, now: Instant) -> bool {
        self.last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= EVERY)
    }

    /// A client was refused at `now`: what to log.
    pub(crate) fn refused(&mut self, why: Refusal, now: Instant) -> Say {
        self.last_refusal = Some(now);
        if !self.slot_free(now) {
            self.left_out.add(why, 1);
            self.since.get_or_insert(now);
            return Say::Nothing;
        }
        self.last_line = Some(now);
        let summary_due = self
            .since
            .is_some_and(|s| now.saturating_duration_since(s) >= SUMMARY_WITHIN);
        if summary_due {
            // This slot goes to the summary, which counts this one too.
            let mut all = std::mem::take(&mut self.left_out);
            all.add(why, 1);
            self.since = None;
            Say::More(all)
        } else {
            Say::This
        }
    }

    /// A refusal that no reason of [`Refusal`] names (a datagram from a bad
    /// source) at `now`: whether its own line may be logged, within the
    /// same one line a second; when not, it is left to its counter.
    pub(crate) fn line_allowed(&mut self, now: Instant) -> bool {
        if !self.slot_free(now) {
            return false;
        }
        self.last_line = Some(now);
        true
    }

    /// When [`RefusalLog::tick`] has something to say; `None`: nothing left out.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let since = self.since?;
        let quiet = self.last_refusal.map_or(since, |t| t + QUIET);
        let due = (since + SUMMARY_WITHIN).min(quiet);
        Some(self.last_line.map_or(due, |t| due.max(t + EVERY)))
    }

    /// The summary to log now, if one is due: `refused N more connection(s)`.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<Tally> {
        if self.deadline().is_some_and(|d| now >= d) {
            self.last_line = Some(now);
            self.take()
        } else {
            None
        }
    }

    /// Everything left out, whatever the time (at shutdown).
    pub(crate) fn take(&mut self) -> Option<Tally> {
        self.since = None;
        Some(std::mem::take(&mut self.left_out)).filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    const WHY: Refusal = Refusal::AccessDenied;

    fn n(t: Option<Tally>) -> Option<u64> {
        t.map(|t| t.total())
    }

    #[test]
    fn a_summary_names_its_reasons_most_frequent_first() {
        let mut t = Tally::default();
        t.add(Refusal::SourceBusy, 3);
        t.add(Refusal::RateLimited, 8);
        assert_eq!(
            t.to_string(),
            "refused 11 more connection(s): 8 rate limited, 3 source busy"
        );
        t.merge(&Tally::of(Refusal::Busy, 3));
        assert_eq!(
            t.to_string(),
            "refused 14 more connection(s): 8 rate limited, 3 server busy, 3 source busy"
        );
    }

    #[test]
    fn a_summary_counts_each_refusal_under_its_own_reason() {
        let t0 = Instant::now();
        let mut r = RefusalLog::new();
        assert_eq!(r.refused(Refusal::SourceBusy, t0), Say::This);
        assert_eq!(r.refused(Refusal::SourceBusy, ms(t0, 100)), Say::Nothing);
        assert_eq!(r.refused(Refusal::RateLimited, ms(t0, 200)), Say::Nothing);
        assert_eq!(r.refused(Refusal::SourceBusy, ms(t0, 300)), Say::Nothing);
        let mut want = Tally::of(Refusal::SourceBusy, 2);
        want.add(Refusal::RateLimited, 1);
        assert_eq!(r.tick(ms(t0, 1300)), Some(want));
    }

    #[test]
    fn one_line_a_second_and_a_summary_once_quiet() {
        let t0 = Instant::now();
        let mut r = RefusalLog::new();
        assert_eq!(r.refused(WHY, t0), Say::This);
        assert_eq!(r.deadline(), None);
        for i in 1..=5 {
            assert_eq!(r.refused(WHY, ms(t0, i * 100)), Say::Nothing);
        }
        assert_eq!(r.deadline(), Some(ms(t0, 1500)));
        assert_eq!(r.tick(ms(t0, 1499)), None);
        assert_eq!(n(r.tick(ms(t0, 1500))), Some(5));
        assert_eq!(r.deadline(), None);
        // The summary took the slot.
        assert_eq!(r.refused(WHY, ms(t0, 2000)), Say::Nothing);
        assert_eq!(n(r.tick(ms(t0, 3000))), Some(1));
    }

    #[test]
    fn a_steady_flood_gets_a_summary_within_ten_seconds() {
        let t0 = Instant::now();
        let mut r = RefusalLog::new();
        let mut lines = 0;
        let mut summed = 0;
        for i in 0..30_000u64 {
            match r.refused(WHY, ms(t0, i)) {
                Say::This => lines += 1,
                Say::More(t) => summed += t.total(),
                Say::Nothing => {}
            }
            if i == 11_000 {
                assert!(
                    summed > 0,
                    "a summary by 11 s (the first left out came at 1 ms)"
                );
            }
        }
        summed += n(r.tick(ms(t0, 40_000))).unwrap_or(0);
        assert_eq!(lines + summed, 30_000);
        assert!(lines <= 30);
    }

    proptest! {
        #[test]
        fn counts_add_up_and_lines_are_a_second_apart(
            gaps in proptest::collection::vec(0u64..3000, 1..300),
            ticks in proptest::collection::vec(any::<bool>(), 300),
        ) {
            let t0 = Instant::now();
            let mut r = RefusalLog::new();
            let mut now = t0;
            let mut total = 0;
            let mut lines: Vec<Instant> = Vec::new();
            for (gap, tick) in gaps.iter().zip(ticks) {
                now += Duration::from_millis(*gap);
                match r.refused(WHY, now) {
                    Say::This => { total += 1; lines.push(now); }
                    Say::More(t) => { total += t.total(); lines.push(now); }
                    Say::Nothing => {}
                }
                if tick {
                    if let Some(d) = r.deadline() {
                        prop_assert!(d <= r.since.unwrap() + Duration::from_secs(60));
                        if let Some(t) = r.tick(d.max(now)) {
                            total += t.total();
                            lines.push(d.max(now));
                            now = d.max(now);
                        }
                    }
                }
            }
            for w in lines.windows(2) {
                prop_assert!(w[1].duration_since(w[0]) >= EVERY);
            }
            total += n(r.take()).unwrap_or(0);
            prop_assert_eq!(total, gaps.len() as u64);
        }
    }
}
