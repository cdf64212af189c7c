//! `--warning` / `--critical` (and check_jam's `-w` / `-c`): offset
//! thresholds in the monitoring-plugins range syntax, applied to |offset|.
//!
//! A range is `[@]START:END` (development guidelines, "Threshold and ranges"):
//! `10` means 0 to 10, `10:` 10 and up, `~:10` anything up to 10, `5:10` 5
//! to 10; a value outside the range raises the state, or inside it with `@`.
//! So the plain `--warning 2` warns when the offset's absolute value is more
//! than 2 s, as check_ntp_time does. What a judgement gives is a
//! [`Status`], the monitoring plugins' state and exit code.

use std::fmt;

/// Monitoring-plugin states, with their exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0: all is well.
    Ok = 0,
    /// 1: the offset is over `--warning`.
    Warning = 1,
    /// 2: the offset is over `--critical`, or the server cannot be reached or misbehaves.
    Critical = 2,
    /// 3: bad arguments, or a reply that cannot be read as a time.
    Unknown = 3,
}

impl Status {
    /// The word used in the status line.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// How bad, for picking the worst of several: CRITICAL, WARNING, UNKNOWN,
    /// OK (the monitoring plugins' `max_state_alt`): a server known to be
    /// wrong outranks one that could not be judged.
    pub(crate) fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Unknown => 1,
            Status::Warning => 2,
            Status::Critical => 3,
        }
    }
}

/// One threshold range.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// As written, for the perfdata.
    text: String,
    start: f64,
    end: f64,
    /// `@`: alert inside the range instead of outside.
    inside: bool,
}

impl Range {
    /// Reads `10`, `10:`, `~:10`, `5:10`, `@5:10`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Range, String> {
        let text = text.trim();
        let (inside, body) = match text.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let number = |s: &str| -> Result<f64, String> {
            let n: f64 = s
                .parse()
                .map_err(|_| format!("{text:?} is not a number of seconds or a range like 5:10"))?;
            if !n.is_finite() || n.abs() > 86_400.0 {
                return Err(format!("{text:?}: {s} is not a usable number of seconds"));
            }
            Ok(n)
        };
        let (start, end) = match body.split_once(':') {
            None => {
                let end = number(body)?;
                if end < 0.0 {
                    return Err(format!("{text:?}: a threshold is not negative"));
                }
                (0.0, end)
            }
            Some((start, end)) => {
                let start = match start {
                    "~" => f64::NEG_INFINITY,
                    "" => 0.0,
                    s => number(s)?,
                };
                let end = match end {
                    "" => f64::INFINITY,
                    e => number(e)?,
                };
                (start, end)
            }
        };
        if start > end {
            return Err(format!(
                "{text:?}: the start of the range is more than its end"
            ));
        }
        Ok(Range {
            text: text.to_string(),
            start,
            end,
            inside,
        })
    }

    /// True when `value` raises the state.
    pub fn alerts(&self, value: f64) -> bool {
        let within = value >= self.start && value <= self.end;
        within == self.inside
    }

    /// The plain upper bound (`--warning 2`), if this is one.
    fn plain_bound(&self) -> Option<f64> {
        (!self.inside && self.start == 0.0).then_some(self.end)
    }
}

impl fmt::Display for Range {
    /// As written: `2`, `~:10`, `@5:10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The two thresholds, judged against the offset's absolute value.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Raises WARNING.
    pub warning: Range,
    /// Raises CRITICAL.
    pub critical: Range,
}

impl Thresholds {
    /// Checks that the two go together; `names` are the flags, for the message.
    pub fn new(warning: Range, critical: Range, names: (&str, &str)) -> Result<Thresholds, String> {
        if let (Some(w), Some(c)) = (warning.plain_bound(), critical.plain_bound()) {
            // As the monitoring plugins do: a WARNING band that CRITICAL
            // swallows is a mistake on the command line, not a choice.
            if w > c {
                return Err(format!(
                    "{} {warning} is more than {} {critical}: the warning threshold must not exceed the critical one",
                    names.0, names.1
                ));
            }
        }
        Ok(Thresholds { warning, critical })
    }

    /// The state for an offset in seconds.
    pub fn judge(&self, offset_secs: f64) -> Status {
        let abs = offset_secs.abs();
        if self.critical.alerts(abs) {
            Status::Critical
        } else if self.warning.alerts(abs) {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(w: &str, c: &str) -> Result<Thresholds, String> {
        Thresholds::new(Range::parse(w)?, Range::parse(c)?, ("-w", "-c"))
    }

    #[test]
    fn ranges_follow_the_guidelines() {
        let r = |s| Range::parse(s).unwrap();
        assert!(!r("10").alerts(10.0) && r("10").alerts(10.1) && r("10").alerts(-0.1));
        assert!(r("10:").alerts(9.9) && !r("10:").alerts(1e9));
        assert!(!r("~:10").alerts(-1e9) && r("~:10").alerts(11.0));
        assert!(r("5:10").alerts(4.0) && !r("5:10").alerts(7.0) && r("5:10").alerts(11.0));
        assert!(!r("@5:10").alerts(4.0) && r("@5:10").alerts(7.0));
        assert_eq!(r(" 0.5 ").to_string(), "0.5");
        for bad in ["", "x", "10:5", "-1", "1:x", "nan", "inf", "@", "1e9"] {
            assert!(Range::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_borders_of_a_range_are_inside_it() {
        let r = |s| Range::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        // A day is the largest threshold; a hair more is refused.
        assert!(!r("86400").alerts(86_400.0) && r("86400").alerts(86_400.5));
        assert!(!r("-86400:").alerts(0.0));
        for bad in ["86400.001", "-86400.001:", "@0:86401"] {
            let e = Range::parse(bad).unwrap_err();
            assert!(
                e.contains("is not a usable number of seconds"),
                "{bad}: {e}"
            );
        }
        // The plain 0: any offset but none at all alerts.
        assert!(!r("0").alerts(0.0) && r("0").alerts(1e-9));
        assert!(!r("-0").alerts(0.0));
        let e = Range::parse("-0.5").unwrap_err();
        assert_eq!(e, "\"-0.5\": a threshold is not negative");
        // A range whose start is its end holds that one value.
        assert!(!r("5:5").alerts(5.0) && r("5:5").alerts(4.9) && r("5:5").alerts(5.1));
        assert!(r("@5:5").alerts(5.0) && !r("@5:5").alerts(4.9));
        let e = Range::parse("5:4.9").unwrap_err();
        assert_eq!(e, "\"5:4.9\": the start of the range is more than its end");
        // Both ends are in the range.
        assert!(!r("10").alerts(0.0) && !r("10").alerts(10.0));
        assert!(!r("2:3").alerts(2.0) && !r("2:3").alerts(3.0));
        assert!(r("@2:3").alerts(2.0) && r("@2:3").alerts(3.0) && !r("@2:3").alerts(3.1));
        assert!(!r("10:").alerts(10.0) && !r(":7").alerts(0.0) && r(":7").alerts(7.5));
    }

    #[test]
    fn only_two_plain_bounds_are_compared() {
        // A warning range that is not a plain bound is never held against
        // a plain critical one, whatever its numbers.
        for w in ["5:10", "@0:3", "@3", "1:", "~:9", "@1:3"] {
            assert!(t(w, "2").is_ok(), "-w {w} -c 2");
        }
        // Two plain bounds: warning ≤ critical, both ways round.
        assert!(t("0", "0").is_ok());
        assert!(t("2", "2.5").is_ok());
        let e = t("2.5", "2").unwrap_err();
        assert!(e.starts_with("-w 2.5 is more than -c 2"), "{e}");
        // `:N` is a plain bound too (it starts at 0).
        assert!(t(":3", "2").is_err());
        // The judgement: critical first, then warning.
        let th = t("5:10", "2").unwrap();
        assert_eq!(th.judge(1.0), Status::Warning);
        assert_eq!(th.judge(-7.0), Status::Critical);
        let th = t("@0:3", "20").unwrap();
        assert_eq!(th.judge(0.0), Status::Warning);
        assert_eq!(th.judge(3.5), Status::Ok);
        assert_eq!(th.judge(-20.5), Status::Critical);
    }

    #[test]
    fn thresholds_judge_the_absolute_offset() {
        let th = t("2", "10").unwrap();
        assert_eq!(th.judge(0.4), Status::Ok);
        assert_eq!(th.judge(-2.0), Status::Ok);
        assert_eq!(th.judge(-5.5), Status::Warning);
        assert_eq!(th.judge(60.5), Status::Critical);
        let th = t("~:0.5", "~:1").unwrap();
        assert_eq!(th.judge(-0.7), Status::Warning);
    }

    #[test]
    fn a_warning_above_the_critical_threshold_is_refused() {
        let e = t("5", "2").unwrap_err();
        assert!(e.starts_with("-w 5 is more than -c 2"), "{e}");
        assert!(t("2", "2").is_ok());
        // Ranges of another shape are the user's own business.
        assert!(t("@1:3", "2").is_ok());
    }
}
