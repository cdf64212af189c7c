//! `--check`: one server's clock judged against thresholds, reported the
//! monitoring-plugins way (status word, exit code, one line with perfdata).

use std::time::Instant;

use super::cli::{CheckSettings, Settings};
use super::error::{ClientError, ClientErrorKind};
use super::net::{resolve, Reply};
use super::query::{query, Flow};

/// Monitoring-plugin states, with their exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
}

/// Offset thresholds in seconds: |offset| above one of them raises the state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// |offset| above this is WARNING.
    pub warning: f64,
    /// |offset| above this is CRITICAL.
    pub critical: f64,
}

impl Thresholds {
    /// The state for an offset in seconds.
    pub fn judge(&self, offset_secs: f64) -> Status {
        let abs = offset_secs.abs();
        if abs > self.critical {
            Status::Critical
        } else if abs > self.warning {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

/// The one line a check prints, e.g.
/// `JAM OK - offset +0.4 s from localhost:45000 | offset=0.400s;2;10 time=0.002s`.
pub fn status_line(
    status: Status,
    offset_secs: f64,
    server: &str,
    rtt_secs: f64,
    t: &Thresholds,
) -> String {
    format!(
        "JAM {} - offset {:+.1} s from {} | offset={:.3}s;{};{} time={:.6}s",
        status.word(),
        shown(offset_secs, 1),
        server,
        shown(offset_secs, 3),
        t.warning,
        t.critical,
        rtt_secs
    )
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

/// The line for a check that got no usable reading.
pub fn failure_line(status: Status, what: &str) -> String {
    format!("JAM {} - {}", status.word(), what)
}

/// Checks the server: one query, the offset judged against the thresholds;
/// returns the state and its line.
///
/// With `-n N` the reply with the shortest round trip is used, as it pins the
/// server's reading most tightly (see [`super::reading`] for the precision).
pub fn run(settings: &Settings, check: &CheckSettings) -> (Status, String) {
    let server = settings.target.to_string();
    let started = Instant::now();
    let mut best: Option<Reply> = None;
    let result = resolve(
        &settings.target,
        settings.family,
        started + settings.timeout,
    )
    .and_then(|addrs| {
        let mut keep = |reply: &Reply| {
            let better = match &best {
                Some(b) => reply.rtt < b.rtt,
                None => true,
            };
            if reply.jam_time().is_some() && better {
                best = Some(reply.clone());
            }
            Flow::Continue
        };
        query(settings, &addrs, started, &mut keep)
    });
    let reading = result.and_then(|()| {
        let reply = best.ok_or_else(|| ClientError::new(&server, ClientErrorKind::ClosedEarly))?;
        let time = reply.jam_time().unwrap_or_default();
        let server_time = check
            .format
            .read(time)
            .map_err(|e| ClientError::new(&server, ClientErrorKind::Time { why: e.to_string() }))?;
        let offset = server_time.offset_from(reply.mid, &check.zone);
        Ok((offset, reply.rtt))
    });
    match reading {
        Ok((offset, rtt)) => {
            let offset_secs = offset
                .num_nanoseconds()
                .map_or_else(|| offset.num_seconds() as f64, |n| n as f64 / 1e9);
            let status = check.thresholds.judge(offset_secs);
            let line = status_line(
                status,
                offset_secs,
                &server,
                rtt.as_secs_f64(),
                &check.thresholds,
            );
            (status, line)
        }
        Err(e) => {
            let status = e.status();
            (status, failure_line(status, &e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_lines() {
        let t = Thresholds {
            warning: 2.0,
            critical: 10.0,
        };
        assert_eq!(t.judge(0.4), Status::Ok);
        assert_eq!(t.judge(-2.0), Status::Ok);
        assert_eq!(t.judge(-5.5), Status::Warning);
        assert_eq!(t.judge(60.5), Status::Critical);
        assert_eq!(
            status_line(Status::Ok, 0.4, "localhost:45000", 0.002, &t),
            "JAM OK - offset +0.4 s from localhost:45000 | offset=0.400s;2;10 time=0.002000s"
        );
        // A tiny negative offset is no "-0.0".
        assert_eq!(
            status_line(Status::Ok, -0.0001, "h:1", 0.000_123, &t),
            "JAM OK - offset +0.0 s from h:1 | offset=0.000s;2;10 time=0.000123s"
        );
    }
}
