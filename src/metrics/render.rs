//! The Prometheus text format (version 0.0.4), written by hand: a few dozen
//! lines instead of a client library and its dependencies.
//!
//! Rules followed (prometheus.io, "Exposition formats"): lines end with `\n`,
//! the last one too; `# HELP` and `# TYPE` come once per metric, before its
//! samples; label values escape `\`, `"` and line feed; help text escapes `\`
//! and line feed; every label value a counter can have is written from the
//! start, at 0, so that `rate()` sees the first increment.

use std::fmt::Write;

use super::process::Process;
use super::{
    Closed, Command, Counters, DatagramRefused, ProxyHeader, Refusal, Reload, Transport,
    REPLY_PROTOCOLS,
};

/// Everything one scrape shows, as plain numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// `jamd_build_info{version}`.
    pub version: String,
    /// `jamd_build_info{revision}`: the commit built, or `unknown`.
    pub revision: String,
    /// The counters, summed over the workers.
    pub counters: Counters,
    /// Clients connected now.
    pub open: u64,
    /// Sources in the per-source table now.
    pub tracked_sources: u64,
    /// Sources forgotten so far because the table was full (a counter kept
    /// by the table).
    pub evicted_sources: u64,
    /// Log lines lost so far (a counter kept by the logger).
    pub log_lines_dropped: u64,
    /// Whether the last reload (or the start) put its file in effect.
    pub last_reload_successful: bool,
    /// When the configuration in effect was loaded, in Unix seconds.
    pub last_reload_success_timestamp: f64,
    /// The `process_*` metrics; what could not be read is left out.
    pub process: Process,
}

/// A metric's kind, as `# TYPE` says it.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

struct Out<'a>(&'a mut String);

impl Out<'_> {
    fn head(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn value(&mut self, name: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name} {value}");
    }

    fn labelled(&mut self, name: &str, label: &str, label_value: &str, value: u64) {
        let _ = writeln!(
            self.0,
            "{name}{{{label}=\"{}\"}} {value}",
            escape_label_value(label_value)
        );
    }

    /// A metric with one sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl std::fmt::Display) {
        self.head(name, kind, help);
        self.value(name, value);
    }

    /// A metric with one sample, left out (`# HELP` and `# TYPE` too) when
    /// its value could not be read.
    fn known(&mut self, name: &str, kind: Kind, help: &str, value: Option<impl std::fmt::Display>) {
        if let Some(value) = value {
            self.single(name, kind, help, value);
        }
    }

    /// A counter with one label, every value of it written: each of `all`,
    /// named by `label_of`, with its count in `counts` (indexed alike).
    fn counter_by<T: Copy>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        all: &[T],
        label_of: fn(T) -> &'static str,
        counts: &[u64],
    ) {
        self.head(name, Kind::Counter, help);
        for (&k, &n) in all.iter().zip(counts) {
            self.labelled(name, label, label_of(k), n);
        }
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the whole exposition for `s` to `out`.
pub fn render(s: &Sample, out: &mut String) {
    let c = &s.counters;
    let mut o = Out(out);
    o.head(
        "jamd_build_info",
        Kind::Gauge,
        "Always 1; the version and revision (commit) labels say which jamd is running.",
    );
    let _ = writeln!(
        o.0,
        "jamd_build_info{{version=\"{}\",revision=\"{}\"}} 1",
        escape_label_value(&s.version),
        escape_label_value(&s.revision)
    );
    o.single(
        "jamd_connections_open",
        Kind::Gauge,
        "Clients connected now.",
        s.open,
    );
    o.single(
        "jamd_connections_accepted_total",
        Kind::Counter,
        "Clients admitted (served).",
        c.accepted,
    );
    o.counter_by(
        "jamd_connections_refused_total",
        "Clients refused, by reason.",
        "reason",
        &Refusal::ALL,
        Refusal::as_str,
        &c.refused,
    );
    o.counter_by(
        "jamd_connections_closed_total",
        "Admitted connections that ended, by the reason= of the closed log line.",
        "reason",
        &Closed::ALL,
        Closed::as_str,
        &c.closed,
    );
    o.counter_by(
        "jamd_requests_total",
        "Request lines answered, by command.",
        "command",
        &Command::ALL,
        Command::as_str,
        &c.requests,
    );
    o.single(
        "jamd_tracked_sources",
        Kind::Gauge,
        "Sources in the per-source table now.",
        s.tracked_sources,
    );
    o.single(
        "jamd_tracked_sources_evicted_total",
        Kind::Counter,
        "Sources forgotten because the per-source table was full.",
        s.evicted_sources,
    );
    o.single(
        "jamd_log_lines_dropped_total",
        Kind::Counter,
        "Log lines lost to a full or missing log target.",
        s.log_lines_dropped,
    );
    o.counter_by(
        "jamd_reloads_total",
        "Configuration reloads (SIGHUP), by result.",
        "result",
        &Reload::ALL,
        Reload::as_str,
        &c.reloads,
    );
    o.single(
        "jamd_config_last_reload_successful",
        Kind::Gauge,
        "1 when the last reload (or the start) put its file in effect, 0 when it was refused and the previous configuration is running.",
        u8::from(s.last_reload_successful),
    );
    o.single(
        "jamd_config_last_reload_success_timestamp_seconds",
        Kind::Gauge,
        "When the configuration in effect was loaded (at start or by a reload), in seconds since the Unix epoch.",
        s.last_reload_success_timestamp,
    );
    o.counter_by(
        "jamd_proxy_headers_total",
        "PROXY protocol headers from trusted balancers, by result.",
        "result",
        &ProxyHeader::ALL,
        ProxyHeader::as_str,
        &c.proxy,
    );
    o.head(
        "jamd_replies_total",
        Kind::Counter,
        "Daytime (RFC 867) and Time (RFC 868) replies sent, by protocol and transport.",
    );
    for protocol in REPLY_PROTOCOLS {
        for transport in [Transport::Tcp, Transport::Udp] {
            let _ = writeln!(
                o.0,
                "jamd_replies_total{{protocol=\"{protocol}\",transport=\"{transport}\"}} {}",
                c.replies[protocol as usize][transport as usize]
            );
        }
    }
    o.head(
        "jamd_datagrams_received_total",
        Kind::Counter,
        "Datagrams received on the UDP listeners, by protocol.",
    );
    for protocol in REPLY_PROTOCOLS {
        o.labelled(
            "jamd_datagrams_received_total",
            "protocol",
            protocol.as_str(),
            c.datagrams[protocol as usize],
        );
    }
    o.counter_by(
        "jamd_datagrams_refused_total",
        "Datagrams not answered, by reason.",
        "reason",
        &DatagramRefused::ALL,
        DatagramRefused::as_str,
        &c.datagrams_refused,
    );
    let p = &s.process;
    o.known(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds,
    );
    o.known(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds,
    );
    o.known(
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes.",
        p.resident_memory_bytes,
    );
    o.known(
        "process_open_fds",
        Kind::Gauge,
        "Number of open file descriptors.",
        p.open_fds,
    );
    o.known(
        "process_max_fds",
        Kind::Gauge,
        "Maximum number of open file descriptors.",
        p.max_fds,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample {
            version: "1.2.3".into(),
            revision: "1a2b3c4d5e".into(),
            counters: Counters {
                accepted: 7,
                refused: [1, 2, 3, 4, 5],
                closed: [1, 1, 1, 1, 1, 0, 2],
                requests: [10, 2],
                reloads: [3, 1],
                proxy: [4, 3, 2, 1],
                replies: [[0, 0], [11, 12], [13, 14]],
                datagrams: [0, 15, 16],
                datagrams_refused: [17, 18, 19, 20],
            },
            open: 2,
            tracked_sources: 6,
            evicted_sources: 9,
            log_lines_dropped: 8,
            last_reload_successful: false,
            last_reload_success_timestamp: 1_700_000_100.5,
            process: Process {
                start_time_seconds: Some(1_700_000_000.25),
                cpu_seconds: Some(0.5),
                resident_memory_bytes: Some(4096),
                open_fds: Some(12),
                max_fds: Some(1024),
            },
        }
    }

    fn rendered(s: &Sample) -> String {
        let mut out = String::new();
        render(s, &mut out);
        out
    }

    /// The samples as `name{labels} value` → value.
    fn values(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn value_of(text: &str, key: &str) -> String {
        values(text)
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no sample {key} in:\n{text}"))
            .1
    }

    /// Asserts the value of each `(label value, value)` sample of `name`.
    fn samples_by(text: &str, name: &str, label: &str, want: &[(&str, &str)]) {
        for (label_value, v) in want {
            let key = format!("{name}{{{label}=\"{label_value}\"}}");
            assert_eq!(value_of(text, &key), *v, "{key}");
        }
    }

    #[test]
    fn every_metric_of_the_contract_is_there_with_help_and_type() {
        let text = rendered(&sample());
        let contract = [
            ("jamd_build_info", "gauge"),
            ("jamd_connections_open", "gauge"),
            ("jamd_connections_accepted_total", "counter"),
            ("jamd_connections_refused_total", "counter"),
            ("jamd_connections_closed_total", "counter"),
            ("jamd_requests_total", "counter"),
            ("jamd_tracked_sources", "gauge"),
            ("jamd_tracked_sources_evicted_total", "counter"),
            ("jamd_log_lines_dropped_total", "counter"),
            ("jamd_reloads_total", "counter"),
            ("jamd_config_last_reload_successful", "gauge"),
            ("jamd_config_last_reload_success_timestamp_seconds", "gauge"),
            ("jamd_proxy_headers_total", "counter"),
            ("jamd_replies_total", "counter"),
            ("jamd_datagrams_received_total", "counter"),
            ("jamd_datagrams_refused_total", "counter"),
            ("process_start_time_seconds", "gauge"),
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
        ];
        for (name, kind) in contract {
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}: one HELP"
            );
            assert!(
                text.contains(&format!("\n# TYPE {name} {kind}\n")),
                "{name}: TYPE {kind}"
            );
            // HELP, then TYPE, then the samples, with no other metric between.
            let help = text.find(&format!("# HELP {name} ")).unwrap();
            let after: Vec<&str> = text[help..].lines().skip(2).take(1).collect();
            assert!(after[0].starts_with(name), "{name}: samples follow TYPE");
        }
        assert!(text.ends_with('\n'));
        assert!(!text.contains("\n\n"));
    }

    #[test]
    fn values_and_labels_are_written_as_named_in_the_contract() {
        let text = rendered(&sample());
        for (key, want) in [
            (
                "jamd_build_info{version=\"1.2.3\",revision=\"1a2b3c4d5e\"}",
                "1",
            ),
            ("jamd_config_last_reload_successful", "0"),
            (
                "jamd_config_last_reload_success_timestamp_seconds",
                "1700000100.5",
            ),
            ("jamd_connections_open", "2"),
            ("jamd_connections_accepted_total", "7"),
            ("jamd_tracked_sources", "6"),
            ("jamd_tracked_sources_evicted_total", "9"),
            ("jamd_log_lines_dropped_total", "8"),
            ("process_start_time_seconds", "1700000000.25"),
            ("process_cpu_seconds_total", "0.5"),
            ("process_resident_memory_bytes", "4096"),
            ("process_open_fds", "12"),
            ("process_max_fds", "1024"),
        ] {
            assert_eq!(value_of(&text, key), want, "{key}");
        }
        samples_by(
            &text,
            "jamd_connections_refused_total",
            "reason",
            &[
                ("busy", "1"),
                ("source_busy", "2"),
                ("rate_limited", "3"),
                ("access_denied", "4"),
                ("bad_proxy_header", "5"),
            ],
        );
        samples_by(
            &text,
            "jamd_connections_closed_total",
            "reason",
            &[
                ("quit", "1"),
                ("eof", "1"),
                ("idle", "1"),
                ("too_long", "1"),
                ("error", "1"),
                ("shutdown", "0"),
                ("sent", "2"),
            ],
        );
        samples_by(
            &text,
            "jamd_requests_total",
            "command",
            &[("time", "10"), ("unknown", "2")],
        );
        for (key, want) in [
            (
                "jamd_replies_total{protocol=\"daytime\",transport=\"tcp\"}",
                "11",
            ),
            (
                "jamd_replies_total{protocol=\"daytime\",transport=\"udp\"}",
                "12",
            ),
            (
                "jamd_replies_total{protocol=\"rfc868\",transport=\"tcp\"}",
                "13",
            ),
            (
                "jamd_replies_total{protocol=\"rfc868\",transport=\"udp\"}",
                "14",
            ),
        ] {
            assert_eq!(value_of(&text, key), want, "{key}");
        }
        samples_by(
            &text,
            "jamd_datagrams_received_total",
            "protocol",
            &[("daytime", "15"), ("rfc868", "16")],
        );
        samples_by(
            &text,
            "jamd_datagrams_refused_total",
            "reason",
            &[
                ("access_denied", "17"),
                ("rate_limited", "18"),
                ("bad_source", "19"),
                ("send_failed", "20"),
            ],
        );
        samples_by(
            &text,
            "jamd_reloads_total",
            "result",
            &[("ok", "3"), ("failed", "1")],
        );
        samples_by(
            &text,
            "jamd_proxy_headers_total",
            "result",
            &[
                ("proxy", "4"),
                ("local", "3"),
                ("invalid", "2"),
                ("timeout", "1"),
            ],
        );
    }

    #[test]
    fn a_fresh_process_shows_every_label_value_at_zero() {
        let text = rendered(&Sample {
            version: "0.1.0".into(),
            ..Sample::default()
        });
        let samples = values(&text);
        // 1 build_info + open + accepted + 5 refused + 7 closed + 2 requests
        // + tracked + evicted + dropped + 2 reloads + 2 last reload + 4 proxy
        // + 4 replies + 2 datagrams received + 4 datagrams refused.
        assert_eq!(samples.len(), 38, "{text}");
        for (k, v) in samples {
            if k.starts_with("jamd_build_info") {
                assert_eq!(v, "1");
            } else {
                assert_eq!(v, "0", "{k}");
            }
        }
        // Unreadable process metrics are left out entirely, HELP and TYPE too.
        assert!(!text.contains("process_"));
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("a\\b\"c\nd"), "a\\\\b\"c\\nd");
        let text = rendered(&Sample {
            version: "1.0\"\n".into(),
            revision: "a\\b".into(),
            ..Sample::default()
        });
        assert!(text.contains("jamd_build_info{version=\"1.0\\\"\\n\",revision=\"a\\\\b\"} 1\n"));
    }

    #[test]
    fn names_are_valid_and_counters_end_in_total() {
        let text = rendered(&sample());
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split(' ').skip(2);
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
        }
    }
}
