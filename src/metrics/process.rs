//! The usual `process_*` metrics, read from `/proc` at each scrape (as the
//! Prometheus client libraries do). Anything that cannot be read, such as on a
//! system without `/proc`, is left out of the scrape rather than shown as 0.

use std::fs;

/// The process metrics of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    /// `process_start_time_seconds`: since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// `process_cpu_seconds_total`: user + system.
    pub cpu_seconds: Option<f64>,
    /// `process_resident_memory_bytes`.
    pub resident_memory_bytes: Option<u64>,
    /// `process_open_fds`.
    pub open_fds: Option<u64>,
    /// `process_max_fds`: the soft `RLIMIT_NOFILE`.
    pub max_fds: Option<u64>,
}

impl Process {
    /// Reads this process's figures now.
    pub fn read() -> Process {
        let mut p = Process::default();
        let ticks = crate::sys::clock_ticks_per_second();
        if let (Ok(stat), Some(ticks)) = (fs::read_to_string("/proc/self/stat"), ticks) {
            if let Some(times) = parse_stat(&stat) {
                p.cpu_seconds = Some((times.utime + times.stime) as f64 / ticks as f64);
                let boot = fs::read_to_string("/proc/stat")
                    .ok()
                    .and_then(|s| parse_boot_time(&s));
                p.start_time_seconds =
                    boot.map(|boot| boot as f64 + times.starttime as f64 / ticks as f64);
            }
        }
        p.resident_memory_bytes = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| parse_rss(&s));
        p.open_fds = fs::read_dir("/proc/self/fd")
            // The directory handle itself is one of the entries: not ours to count.
            .map(|d| (d.count() as u64).saturating_sub(1))
            .ok();
        p.max_fds = fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| parse_max_fds(&s));
        p
    }
}

/// The fields of `/proc/self/stat` that matter here, in clock ticks.
#[derive(Debug, PartialEq, Eq)]
struct StatTimes {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Reads utime, stime (fields 14, 15) and starttime (22) of `/proc/PID/stat`.
/// The command name (field 2) is in parentheses and may itself hold spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<StatTimes> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest: " S ppid ..." — field 3 (state) is index 0.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatTimes {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// The `btime` line of `/proc/stat`: boot time, seconds since the epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// `VmRSS:  1948 kB` of `/proc/self/status`, in bytes.
fn parse_rss(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => n.checked_mul(1024),
        _ => None,
    }
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `unlimited`
/// has no number to give.
fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a closing parenthesis in it.
        let stat = "4242 (jam d) x) S 1 4242 4242 0 -1 4194560 120 0 0 0 \
                    37 12 0 0 20 0 3 0 98765 12345678 400 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(stat),
            Some(StatTimes {
                utime: 37,
                stime: 12,
                starttime: 98765
            })
        );
        assert_eq!(parse_stat("4242 (jamd) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn boot_time_rss_and_fd_limit_are_read() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        assert_eq!(
            parse_rss("Name:\tjamd\nVmHWM:\t    2000 kB\nVmRSS:\t    1948 kB\n"),
            Some(1948 * 1024)
        );
        assert_eq!(parse_rss("Name:\tjamd\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63438                63438                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_read() {
        let p = Process::read();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = p.start_time_seconds.expect("start time");
        // Started in the past, and not before 2020.
        assert!(start <= now + 1.0 && start > 1_577_836_800.0, "{start}");
        assert!(p.cpu_seconds.expect("cpu") >= 0.0);
        assert!(p.resident_memory_bytes.expect("rss") > 0);
        // Other tests open files at the same time: only bounds are certain.
        let open = p.open_fds.expect("open fds");
        assert!(open >= 1);
        assert!(p.max_fds.expect("max fds") >= open);
    }
}
