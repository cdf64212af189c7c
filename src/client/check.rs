//! `--check`: servers' clocks judged against thresholds and reported the
//! monitoring-plugins way (status word, exit code, one line with perfdata;
//! for several servers the worst first, then one line each).
//!
//! # How the offset is measured
//!
//! `sampling.rs` takes the readings: for a reply in whole seconds a few
//! more, placed to pin where the server's second changes (at most 10, within
//! 3 s, never past `--timeout`); [`super::estimate`] turns them into the
//! offset and its uncertainty; a reply with fractions of a second needs no
//! more, and `--quick` takes the first reply alone (±0.5 s).

use std::time::Duration;

use super::error::ClientError;
use super::estimate::Estimate;
use super::thresholds::{Status, Thresholds};

/// One server's clock as measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Offset (server minus local) and uncertainty, in seconds.
    pub estimate: Estimate,
    /// The round trip of the first request.
    pub rtt: Duration,
    /// Replies used.
    pub replies: usize,
}

/// One server's result: its name, and its measurement or why there is none.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `HOST:PORT`.
    pub server: String,
    /// The measurement, or the failure.
    pub result: Result<Measurement, ClientError>,
}

impl Outcome {
    /// The state this outcome is in: the thresholds are compared with the
    /// offset as printed, so that the state and the figure a reader sees
    /// always agree (at exactly `--critical 3.45`, `offset +3.450 s` is not
    /// CRITICAL, however the unprinted digits fall).
    pub fn status(&self, thresholds: &Thresholds) -> Status {
        match &self.result {
            Ok(m) => thresholds.judge(shown(m.estimate.offset, 3)),
            Err(e) => e.status(),
        }
    }

    /// The text for people: `offset +0.012 s` (`from HOST:PORT` when
    /// `named`), or why there is no offset. An offset of whole hours says
    /// so: `offset +25200.012 s: exactly 7 h — is --timezone right?`.
    fn text(&self, named: bool) -> String {
        match &self.result {
            Ok(m) => {
                let offset = shown(m.estimate.offset, 3);
                match (zone_hint(offset), named) {
                    (None, false) => format!("offset {offset:+.3} s"),
                    (None, true) => format!("offset {offset:+.3} s from {}", self.server),
                    (Some(hint), false) => format!("offset {offset:+.3} s: {hint}"),
                    (Some(hint), true) => {
                        format!("offset {offset:+.3} s: {hint} (from {})", self.server)
                    }
                }
            }
            Err(e) => e.to_string(),
        }
    }

    /// Perfdata: `offset=…s;W;C time=…s uncertainty=…s`, labels prefixed
    /// (`'b:45000_offset'`) when several servers share the line.
    fn perfdata(&self, t: &Thresholds, prefixed: bool) -> Option<String> {
        let m = self.result.as_ref().ok()?;
        let label = |name: &str| {
            if prefixed {
                // Quoted as the guidelines say; a quote inside is doubled.
                format!("'{}_{name}'", self.server.replace('\'', "''"))
            } else {
                name.to_string()
            }
        };
        Some(format!(
            "{}={:.3}s;{};{} {}={:.6}s {}={:.3}s",
            label("offset"),
            shown(m.estimate.offset, 3),
            t.warning,
            t.critical,
            label("time"),
            m.rtt.as_secs_f64(),
            label("uncertainty"),
            rounded_up(m.estimate.uncertainty, 3),
        ))
    }
}

/// How close to a whole number of hours an offset is taken for a zone
/// mismatch rather than a clock that is off.
const ZONE_HINT_WITHIN: f64 = 2.0;

/// `exactly 7 h — is --timezone right?` for an offset within
/// [`ZONE_HINT_WITHIN`] seconds of a whole, non-zero number of hours: what a
/// server that keeps good time in another zone than `--timezone` looks like.
fn zone_hint(offset: f64) -> Option<String> {
    let hours = (offset / 3600.0).round();
    if hours == 0.0 || (offset - hours * 3600.0).abs() > ZONE_HINT_WITHIN {
        return None;
    }
    Some(format!("exactly {hours:.0} h — is --timezone right?"))
}

/// `x` rounded to `decimals` places, with a negative zero made positive, so
/// that a tiny negative offset is not printed as `-0.000`.
fn shown(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let rounded = (x * scale).round() / scale;
    if rounded == 0.0 {
        0.0
    } else {
        rounded
    }
}

/// An uncertainty rounded up, so that the printed figure never understates it.
fn rounded_up(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    // The small allowance keeps 0.003 from becoming 0.004 by float noise.
    ((x * scale) - 1e-6).ceil().max(0.0) / scale
}

/// The report: the worst state, and the lines to print (the status line
/// first; for several servers one more line each). `verbose` adds how each
/// offset was measured.
pub fn report(outcomes: &[Outcome], t: &Thresholds, verbose: bool) -> (Status, Vec<String>) {
    let states: Vec<Status> = outcomes.iter().map(|o| o.status(t)).collect();
    let worst = states
        .iter()
        .copied()
        .max_by_key(|s| s.severity())
        .unwrap_or(Status::Unknown);
    let details = |o: &Outcome| {
        o.result.as_ref().ok().map(|m| {
            format!(
                "{}: {} replies, offset {:+.6} s ± {:.6} s{}, first round trip {:.6} s",
                o.server,
                m.replies,
                shown(m.estimate.offset, 6),
                m.estimate.uncertainty,
                if m.estimate.consistent {
                    ""
                } else {
                    " (replies disagree: the newest alone)"
                },
                m.rtt.as_secs_f64()
            )
        })
    };
    let mut lines = Vec::new();
    if let [one] = outcomes {
        let mut line = format!("JAM {} - {}", worst.word(), one.text(true));
        if let Some(perf) = one.perfdata(t, false) {
            line.push_str(" | ");
            line.push_str(&perf);
        }
        lines.push(line);
        if verbose {
            lines.extend(details(one));
        }
        return (worst, lines);
    }
    // The worst server: of those in the worst state, one that could not be
    // measured, else the one furthest off.
    let rank = |o: &Outcome| match &o.result {
        Ok(m) => m.estimate.offset.abs(),
        Err(_) => f64::INFINITY,
    };
    let in_worst: Vec<&Outcome> = outcomes
        .iter()
        .zip(&states)
        .filter(|(_, s)| **s == worst)
        .map(|(o, _)| o)
        .collect();
    let worst_one = in_worst
        .iter()
        .copied()
        .max_by(|a, b| rank(a).total_cmp(&rank(b)));
    let mut line = format!(
        "JAM {} - {} of {} servers {}",
        worst.word(),
        in_worst.len(),
        outcomes.len(),
        worst.word().to_lowercase()
    );
    if let Some(o) = worst_one {
        match &o.result {
            Ok(m) => {
                let offset = shown(m.estimate.offset, 3);
                line.push_str(&format!(", worst {} offset {offset:+.3} s", o.server));
                if let Some(hint) = zone_hint(offset) {
                    line.push_str(&format!(": {hint}"));
                }
            }
            Err(e) => line.push_str(&format!(", worst {}: {e}", o.server)),
        }
    }
    let perf: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.perfdata(t, true))
        .collect();
    if !perf.is_empty() {
        line.push_str(" | ");
        line.push_str(&perf.join(" "));
    }
    lines.push(line);
    for (o, s) in outcomes.iter().zip(&states) {
        lines.push(format!("{} {} - {}", o.server, s.word(), o.text(false)));
        if verbose {
            lines.extend(details(o));
        }
    }
    (worst, lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::error::ClientErrorKind;
    use crate::client::thresholds::Range;

    fn t() -> Thresholds {
        Thresholds::new(
            Range::parse("2").unwrap(),
            Range::parse("10").unwrap(),
            ("--warning", "--critical"),
        )
        .unwrap()
    }

    fn ok(server: &str, offset: f64, uncertainty: f64) -> Outcome {
        Outcome {
            server: server.into(),
            result: Ok(Measurement {
                estimate: Estimate {
                    offset,
                    uncertainty,
                    consistent: true,
                },
                rtt: Duration::from_micros(210),
                replies: 57,
            }),
        }
    }

    /// The outcome of asking `server` when it failed as `kind` says.
    fn failed(server: &str, kind: ClientErrorKind) -> Outcome {
        Outcome {
            server: server.into(),
            result: Err(ClientError::new(server, kind)),
        }
    }

    #[test]
    fn one_server_one_line() {
        let (status, lines) = report(&[ok("localhost:45000", 0.0121, 0.0025)], &t(), false);
        assert_eq!(status, Status::Ok);
        assert_eq!(
            lines,
            ["JAM OK - offset +0.012 s from localhost:45000 | offset=0.012s;2;10 time=0.000210s uncertainty=0.003s"]
        );
        // A tiny negative offset is no "-0.000".
        let (_, lines) = report(&[ok("h:1", -0.0001, 0.0001)], &t(), false);
        assert_eq!(
            lines[0],
            "JAM OK - offset +0.000 s from h:1 | offset=0.000s;2;10 time=0.000210s uncertainty=0.001s"
        );
    }

    #[test]
    fn a_fleet_reports_the_worst_first_then_each_server() {
        let down = failed(
            "c:45000",
            ClientErrorKind::Connect {
                attempts: vec![(
                    "127.0.0.1:45000".parse().unwrap(),
                    crate::client::error::ConnectFailure::Refused,
                )],
                timeout: Duration::from_secs(5),
            },
        );
        let fleet = [
            ok("a:45000", 0.0121, 0.003),
            ok("b:45000", 12.3, 0.004),
            ok("d:45000", -3.0, 0.004),
        ];
        let (status, lines) = report(&fleet, &t(), false);
        assert_eq!(status, Status::Critical);
        assert_eq!(
            lines[0],
            "JAM CRITICAL - 1 of 3 servers critical, worst b:45000 offset +12.300 s | \
             'a:45000_offset'=0.012s;2;10 'a:45000_time'=0.000210s 'a:45000_uncertainty'=0.003s \
             'b:45000_offset'=12.300s;2;10 'b:45000_time'=0.000210s 'b:45000_uncertainty'=0.004s \
             'd:45000_offset'=-3.000s;2;10 'd:45000_time'=0.000210s 'd:45000_uncertainty'=0.004s"
        );
        assert_eq!(
            &lines[1..],
            [
                "a:45000 OK - offset +0.012 s",
                "b:45000 CRITICAL - offset +12.300 s",
                "d:45000 WARNING - offset -3.000 s",
            ]
        );
        // An unreachable server is CRITICAL, and worst among the critical.
        let (status, lines) = report(&[fleet[1].clone(), down], &t(), false);
        assert_eq!(status, Status::Critical);
        assert!(
            lines[0].starts_with(
                "JAM CRITICAL - 2 of 2 servers critical, worst c:45000: cannot connect to c:45000: connection refused | 'b:45000_offset'"
            ),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn worst_is_critical_then_warning_then_unknown() {
        let unknown = failed(
            "u:1",
            ClientErrorKind::Time {
                why: "cannot read \"tea time\" as a time with format \"%H:%M:%S\"".into(),
            },
        );
        let (status, _) = report(&[unknown.clone(), ok("w:1", 3.0, 0.1)], &t(), false);
        assert_eq!(status, Status::Warning);
        let (status, _) = report(&[unknown, ok("o:1", 0.0, 0.1)], &t(), false);
        assert_eq!(status, Status::Unknown);
    }

    #[test]
    fn a_reply_of_another_protocol_is_critical_an_unreadable_time_unknown() {
        for banner in ["SSH-2.0-OpenSSH_9.6", "HTTP/1.1 400 Bad Request"] {
            let other = failed(
                "s:22",
                ClientErrorKind::NotJam {
                    line: banner.into(),
                },
            );
            let (status, lines) = report(&[other], &t(), false);
            assert_eq!(status, Status::Critical, "{banner}");
            assert!(lines[0].starts_with("JAM CRITICAL - s:22: reply is not a JAM line"));
        }
        let unreadable = failed("u:1", ClientErrorKind::Time { why: "x".into() });
        assert_eq!(report(&[unreadable], &t(), false).0, Status::Unknown);
    }

    #[test]
    fn the_state_follows_the_offset_as_printed() {
        let t = Thresholds::new(
            Range::parse("2").unwrap(),
            Range::parse("3.45").unwrap(),
            ("-w", "-c"),
        )
        .unwrap();
        // 3.4504 and 3.4496 both print as 3.450: at the threshold, not past it.
        for offset in [3.4504, 3.4496, -3.4504] {
            let (status, lines) = report(&[ok("h:1", offset, 0.001)], &t, false);
            assert_eq!(status, Status::Warning, "{offset}: {lines:?}");
            assert!(lines[0].contains("offset=") && lines[0].contains("3.450s;2;3.45"));
        }
        // 3.4505 prints as 3.451: past it.
        let (status, lines) = report(&[ok("h:1", 3.4506, 0.001)], &t, false);
        assert_eq!(status, Status::Critical, "{lines:?}");
        assert!(lines[0].contains("offset +3.451 s"), "{lines:?}");
    }

    #[test]
    fn an_offset_of_whole_hours_hints_at_the_zone() {
        let (status, lines) = report(&[ok("h:1", 25_200.012_3, 0.001)], &t(), false);
        assert_eq!(status, Status::Critical);
        assert!(
            lines[0].starts_with(
                "JAM CRITICAL - offset +25200.012 s: exactly 7 h — is --timezone right? (from h:1) | offset=25200.012s;2;10 "
            ),
            "{lines:?}"
        );
        let fleet = [ok("a:1", -3601.9, 0.001), ok("b:1", 0.1, 0.001)];
        let (_, lines) = report(&fleet, &t(), false);
        assert!(
            lines[0].starts_with(
                "JAM CRITICAL - 1 of 2 servers critical, worst a:1 offset -3601.900 s: exactly -1 h — is --timezone right? | "
            ),
            "{lines:?}"
        );
        assert_eq!(
            lines[1],
            "a:1 CRITICAL - offset -3601.900 s: exactly -1 h — is --timezone right?"
        );
        assert_eq!(lines[2], "b:1 OK - offset +0.100 s");
        // Within 2 s of whole hours only, and never for no hours at all.
        for offset in [0.0, 1.5, -1.9, 3597.9, 3602.1, 1800.0, 43_197.0] {
            assert_eq!(zone_hint(offset), None, "{offset}");
        }
        for (offset, hours) in [(3598.0, "1"), (-7198.5, "-2"), (43_199.0, "12")] {
            let hint = zone_hint(offset).unwrap_or_default();
            assert!(hint.starts_with(&format!("exactly {hours} h ")), "{hint}");
        }
    }

    #[test]
    fn uncertainty_is_rounded_up() {
        assert_eq!(rounded_up(0.0021, 3), 0.003);
        assert_eq!(rounded_up(0.003, 3), 0.003);
        assert_eq!(rounded_up(0.0, 3), 0.0);
    }
}
