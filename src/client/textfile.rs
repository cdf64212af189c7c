//! `--textfile FILE`: the result of `--check` for node_exporter's textfile
//! collector, in the Prometheus text format, replacing FILE atomically (a
//! temporary file in the same directory, then a rename), so the collector
//! never reads half a file. A failed check writes its file too.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::check::Outcome;
use super::thresholds::Thresholds;

/// A label value escaped as the text format says (`\`, `"` and line feeds).
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as the text format writes it.
fn number(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{x}")
    }
}

/// The metrics for `outcomes` (each with how long its check took), as of `now`.
pub fn render(
    outcomes: &[(Outcome, Duration)],
    thresholds: &Thresholds,
    now: SystemTime,
) -> String {
    let mut text = String::new();
    let family = |text: &mut String,
                  name: &str,
                  help: &str,
                  values: &mut dyn Iterator<Item = (String, f64)>| {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        for (server, value) in values {
            let _ = writeln!(
                text,
                "{name}{{server=\"{}\"}} {}",
                label(&server),
                number(value)
            );
        }
    };
    family(
        &mut text,
        "jam_check_up",
        "1 when jamc --check took a reading of the server's time, 0 when it could not.",
        &mut outcomes
            .iter()
            .map(|(o, _)| (o.server.clone(), if o.result.is_ok() { 1.0 } else { 0.0 })),
    );
    family(
        &mut text,
        "jam_check_offset_seconds",
        "The server's clock minus this machine's, in seconds (positive: the server is ahead).",
        &mut outcomes
            .iter()
            .filter_map(|(o, _)| Some((o.server.clone(), o.result.as_ref().ok()?.estimate.offset))),
    );
    family(
        &mut text,
        "jam_check_uncertainty_seconds",
        "How far the true offset may be from jam_check_offset_seconds, in seconds.",
        &mut outcomes.iter().filter_map(|(o, _)| {
            Some((
                o.server.clone(),
                o.result.as_ref().ok()?.estimate.uncertainty,
            ))
        }),
    );
    family(
        &mut text,
        "jam_check_status",
        "The check's state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        &mut outcomes
            .iter()
            .map(|(o, _)| (o.server.clone(), f64::from(o.status(thresholds).code()))),
    );
    family(
        &mut text,
        "jam_check_duration_seconds",
        "How long the check of the server took, in seconds.",
        &mut outcomes
            .iter()
            .map(|(o, took)| (o.server.clone(), took.as_secs_f64())),
    );
    let stamp = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let _ = writeln!(
        text,
        "# HELP jam_check_last_run_timestamp_seconds When jamc --check last ran, in seconds since 1970."
    );
    let _ = writeln!(text, "# TYPE jam_check_last_run_timestamp_seconds gauge");
    let _ = writeln!(
        text,
        "jam_check_last_run_timestamp_seconds {}",
        number((stamp * 1000.0).round() / 1000.0)
    );
    text
}

/// Replaces `path` with `text` atomically: a temporary file in the same
/// directory, written and synced, then renamed over `path`.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    // Not ending in .prom: node_exporter reads only *.prom files.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        // Readable by node_exporter, which runs as its own user.
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::check::Measurement;
    use crate::client::error::{ClientError, ClientErrorKind};
    use crate::client::estimate::Estimate;
    use crate::client::thresholds::Range;

    #[test]
    fn every_metric_with_help_type_and_server_label() {
        let t = Thresholds::new(
            Range::parse("2").unwrap(),
            Range::parse("10").unwrap(),
            ("--warning", "--critical"),
        )
        .unwrap();
        let ok = Outcome {
            server: "a:45000".into(),
            result: Ok(Measurement {
                estimate: Estimate {
                    offset: 0.25,
                    uncertainty: 0.004,
                    consistent: true,
                },
                rtt: Duration::from_millis(1),
                replies: 7,
            }),
        };
        let down = Outcome {
            server: "b\"x:13".into(),
            result: Err(ClientError::new("b:13", ClientErrorKind::ClosedEarly)),
        };
        let now = UNIX_EPOCH + Duration::from_millis(1_796_357_550_250);
        let text = render(
            &[
                (ok, Duration::from_millis(1500)),
                (down, Duration::from_millis(3)),
            ],
            &t,
            now,
        );
        for line in [
            "# TYPE jam_check_up gauge",
            "jam_check_up{server=\"a:45000\"} 1",
            "jam_check_up{server=\"b\\\"x:13\"} 0",
            "jam_check_offset_seconds{server=\"a:45000\"} 0.25",
            "jam_check_uncertainty_seconds{server=\"a:45000\"} 0.004",
            "jam_check_status{server=\"a:45000\"} 0",
            "jam_check_status{server=\"b\\\"x:13\"} 2",
            "jam_check_duration_seconds{server=\"a:45000\"} 1.5",
            "jam_check_last_run_timestamp_seconds 1796357550.25",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("jam_check_offset_seconds{server=\"b"),
            "{text}"
        );
        assert_eq!(text.matches("# HELP").count(), 6);
    }
}
