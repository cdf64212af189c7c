//! "What time is it, rendered how": a strftime format and a time zone, turned
//! into the text of a `JAM` reply.
//!
//! Both halves are checked when the configuration is loaded, so rendering can
//! not fail at request time. [`ClockCache`] keeps the last rendered string and
//! reuses it while the clock is still inside the same unit of the format's
//! resolution (a second for `%H:%M:%S`, a millisecond for `%.3f`, …). It reads
//! the clock on every request, so a reply never shows a second (or
//! millisecond) that had already passed when the request arrived.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, Offset as _};

/// A validated strftime format (chrono's dialect).
#[derive(Clone)]
pub struct TimeFormat {
    source: String,
    items: Vec<Item<'static>>,
    /// Nanoseconds per distinct rendering: 1 s, 1 ms, 1 µs or 1 ns.
    resolution_ns: u32,
}

impl fmt::Debug for TimeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TimeFormat").field(&self.source).finish()
    }
}

impl PartialEq for TimeFormat {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl TimeFormat {
    /// Parses and checks a format; the error says what is wrong with it.
    pub fn parse(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("the time format is empty".into());
        }
        if source.contains(['\r', '\n']) {
            return Err("the time format must not contain a line break".into());
        }
        let items = StrftimeItems::new(source)
            .parse_to_owned()
            .map_err(|_| format!("invalid strftime format {source:?}"))?;
        // Some specifiers parse but cannot be rendered from a date and time
        // with an offset; find out now, not at request time.
        let mut out = String::new();
        if !render_items(&items, 0, 0, 0, &mut out) {
            return Err(format!("strftime format {source:?} cannot be rendered"));
        }
        // %n renders a line break, which would end the reply line early.
        if out.contains(['\r', '\n']) {
            return Err(format!(
                "strftime format {source:?} would put a line break into the reply"
            ));
        }
        Ok(TimeFormat {
            source: source.to_owned(),
            resolution_ns: resolution_of(&items),
            items,
        })
    }

    /// The format as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Renders `items` at Unix time `secs`.`nanos` shown at `offset` seconds east
/// of UTC; false when chrono cannot render them.
fn render_items(items: &[Item<'_>], secs: i64, nanos: u32, offset: i32, out: &mut String) -> bool {
    out.clear();
    let fixed = FixedOffset::east_opt(offset).unwrap_or(chrono::Utc.fix());
    match DateTime::from_timestamp(secs, nanos) {
        Some(t) => write!(
            out,
            "{}",
            t.with_timezone(&fixed).format_with_items(items.iter())
        )
        .is_ok(),
        None => false,
    }
}

/// The coarsest step of 1 s, 1 ms, 1 µs or 1 ns within which the format
/// always renders the same text, found by rendering it, not from a list of
/// specifiers: a format that shows fractions only when they are not zero
/// (chrono's `%+` and `%.f`) is as fine as its finest digit.
fn resolution_of(items: &[Item<'_>]) -> u32 {
    // An instant with every field different from its neighbours' (a
    // Wednesday afternoon, 2026-11-25 14:03:27 UTC) and a fraction with no
    // zero digit.
    const SECS: i64 = 1_795_615_407;
    const FRACTION: u32 = 123_456_789;
    let mut first = String::new();
    let mut other = String::new();
    for step in [1_000_000_000, 1_000_000, 1_000] {
        let start = FRACTION / step * step;
        // Both ends of the step, its middle, and points whose finer digits
        // are zero or not (the forms that render a different number of digits).
        let probes = [
            1,
            step - 1,
            step / 2,
            FRACTION % step,
            step / 1_000,
            step / 1_000_000,
            step / 1_000 + 1,
        ];
        render_items(items, SECS, start, 0, &mut first);
        let constant = probes.iter().all(|&p| {
            render_items(items, SECS, start + p, 0, &mut other);
            other == first
        });
        if constant {
            return step;
        }
    }
    1
}

/// A time zone: the machine's local zone, UTC, a fixed offset, or an IANA zone.
#[derive(Clone)]
pub struct Zone {
    name: String,
    rules: ZoneRules,
    /// For "local": the zone in effect and where it came from, as `jamd -t`
    /// shows it (`Asia/Jakarta, from TZ`).
    origin: Option<String>,
    /// Something the log should say about how the zone was found.
    warning: Option<String>,
}

#[derive(Clone)]
enum ZoneRules {
    Fixed(i32),
    Tz(Arc<tz::TimeZone>),
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Zone").field(&self.name).finish()
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.origin == other.origin
    }
}

/// Where IANA zone files are read from (`TZDIR` overrides, as in the C library).
fn zoneinfo_dir() -> PathBuf {
    std::env::var_os("TZDIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/zoneinfo"))
}

/// What `timezone` takes, for error messages.
const ZONE_FORMS: &str =
    "expected \"local\", \"UTC\", an offset like \"+07:00\" or a name like \"Asia/Jakarta\"";

impl Zone {
    /// UTC.
    pub(crate) fn utc() -> Self {
        Zone::named("UTC", ZoneRules::Fixed(0))
    }

    fn named(name: &str, rules: ZoneRules) -> Self {
        Zone {
            name: name.to_owned(),
            rules,
            origin: None,
            warning: None,
        }
    }

    /// Parses `local`, `UTC`, a fixed offset (`+07:00`, `-0330`, `+07`) or an
    /// IANA name (`Asia/Jakarta`), reading zone files from the system's
    /// zoneinfo so that tzdata updates apply on the next load.
    pub fn parse(spec: &str) -> Result<Self, String> {
        if spec.eq_ignore_ascii_case("local") {
            return Zone::local().map_err(|e| format!("cannot read the local time zone: {e}"));
        }
        if spec.eq_ignore_ascii_case("UTC") || spec == "Z" {
            return Ok(Zone::utc());
        }
        if spec.starts_with(['+', '-']) {
            let secs = parse_fixed_offset(spec).ok_or_else(|| {
                format!("invalid UTC offset {spec:?} (expected +HH:MM or -HH:MM)")
            })?;
            return Ok(Zone::named(spec, ZoneRules::Fixed(secs)));
        }
        let tz = read_zone_name(spec)?;
        Ok(Zone::named(spec, ZoneRules::Tz(Arc::new(tz))))
    }

    /// The machine's local zone as the C library finds it: `TZ` when set
    /// (a zone name, `:name`, an absolute zone file path, or a POSIX rule
    /// such as `EST5EDT` or `CET-1CEST`), else `/etc/localtime`. No `TZ` and
    /// no `/etc/localtime` is UTC, as in the C library, with a warning.
    fn local() -> Result<Self, String> {
        let (rules, origin, warning) = match std::env::var_os("TZ") {
            Some(tz) if !tz.is_empty() => {
                let tz = tz
                    .into_string()
                    .map_err(|tz| format!("TZ={tz:?} is not text"))?;
                let (rules, name) = local_from_tz(&tz)?;
                (rules, format!("{name}, from TZ"), None)
            }
            _ => match read_zone_file(Path::new("/etc/localtime")) {
                Ok(rules) => {
                    // The zone's name, when /etc/localtime links into zoneinfo.
                    let name = std::fs::read_link("/etc/localtime")
                        .ok()
                        .and_then(|p| {
                            let p = p.to_string_lossy().into_owned();
                            p.split_once("zoneinfo/").map(|(_, n)| n.to_owned())
                        })
                        .unwrap_or_else(|| "the zone".into());
                    (rules, format!("{name}, from /etc/localtime"), None)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                    tz::TimeZone::utc(),
                    "UTC: no TZ and no /etc/localtime".into(),
                    Some(
                        "time.timezone = \"local\": no TZ and no /etc/localtime, so local time is UTC".into(),
                    ),
                ),
                Err(e) => return Err(format!("/etc/localtime: {e}")),
            },
        };
        Ok(Zone {
            name: "local".into(),
            rules: ZoneRules::Tz(Arc::new(rules)),
            origin: Some(origin),
            warning,
        })
    }

    /// The zone as written in the configuration.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// For "local": the zone in effect and where it came from.
    pub(crate) fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// A warning about how the zone was found, for the log.
    pub(crate) fn warning(&self) -> Option<String> {
        self.warning.clone()
    }

    /// The offset from UTC, in seconds, at a Unix time.
    pub(crate) fn offset_at(&self, unix_secs: i64) -> i32 {
        match &self.rules {
            ZoneRules::Fixed(s) => *s,
            ZoneRules::Tz(tz) => tz
                .find_local_time_type(unix_secs)
                .map(|t| t.ut_offset())
                .unwrap_or(0),
        }
    }
}

/// `TZ` as glibc reads it; returns the rules and a name for them.
fn local_from_tz(tz: &str) -> Result<(tz::TimeZone, String), String> {
    let name = tz.strip_prefix(':').unwrap_or(tz);
    if name.starts_with('/') {
        let rules = read_zone_file(Path::new(name)).map_err(|e| format!("TZ={tz:?}: {e}"))?;
        return Ok((rules, name.to_owned()));
    }
    if let Ok(rules) = read_zone_name(name) {
        return Ok((rules, name.to_owned()));
    }
    if let Ok(rules) = tz::TimeZone::from_posix_tz(tz) {
        return Ok((rules, tz.to_owned()));
    }
    // A DST name without rules ("CET-1CEST", "EST5EDT4"): glibc takes the
    // US rules of its posixrules default, which is what date(1) shows.
    if !tz.contains(',') {
        if let Ok(rules) = tz::TimeZone::from_posix_tz(&format!("{tz},M3.2.0,M11.1.0")) {
            return Ok((rules, tz.to_owned()));
        }
    }
    Err(format!(
        "TZ={tz:?} is neither a zone name (such as \"Asia/Jakarta\") nor a POSIX TZ rule (such as \"CET-1CEST\")"
    ))
}

/// An IANA zone by name, from the zoneinfo directory.
fn read_zone_name(name: &str) -> Result<tz::TimeZone, String> {
    let valid = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    let unknown = || format!("unknown time zone {name:?}; {ZONE_FORMS}");
    if !valid {
        return Err(unknown());
    }
    let path = zoneinfo_dir().join(name);
    read_zone_file(&path).map_err(|e| match e.kind() {
        // A directory ("America") or a name tzdata does not have.
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => unknown(),
        _ if path.is_dir() => unknown(),
        _ => format!("time zone {name:?}: {}: {e}", path.display()),
    })
}

/// A compiled zone file.
fn read_zone_file(path: &Path) -> std::io::Result<tz::TimeZone> {
    let bytes = crate::sys::read_regular_file(path)?;
    tz::TimeZone::from_tz_data(&bytes)
        .map_err(|e| std::io::Error::other(format!("not a zone file ({e})")))
}

/// `+HH:MM`, `-HH:MM`, `+HHMM`, `+HH` → seconds east of UTC.
pub(crate) fn parse_fixed_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = match rest.len() {
        2 => format!("{rest}00"),
        4 => rest.to_owned(),
        5 if rest.as_bytes()[2] == b':' => format!("{}{}", &rest[..2], &rest[3..]),
        _ => return None,
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

/// A format and a zone: everything needed to render a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Clock {
    /// How the time is written.
    pub format: TimeFormat,
    /// Which zone it is written in.
    pub zone: Zone,
}

impl Clock {
    /// Renders a given instant (Unix seconds and nanoseconds) into `out`.
    pub fn render_at(&self, secs: i64, nanos: u32, out: &mut String) {
        let offset = self.zone.offset_at(secs);
        // Checked at load: a TimeFormat always renders.
        render_items(&self.format.items, secs, nanos, offset, out);
    }
}

/// The system clock as Unix seconds and nanoseconds, also before 1970: a
/// clock set wrong is still shown as it reads (a time service says the truth
/// it has, not the epoch), so the operator can see that it is wrong.
pub(crate) fn unix_now() -> (i64, u32) {
    unix_time(SystemTime::now())
}

/// A system time as Unix seconds (floor) and nanoseconds past them.
fn unix_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

/// The last rendered time string, reused while the clock stays within one unit
/// of the format's resolution. One per worker thread: nothing is shared.
#[derive(Debug, Default)]
pub struct ClockCache {
    clock: Option<Arc<Clock>>,
    key: (i64, u32),
    text: String,
}

impl ClockCache {
    /// A cache with nothing rendered yet.
    pub fn new() -> Self {
        ClockCache::default()
    }

    /// The current time rendered by `clock`.
    pub fn now(&mut self, clock: &Arc<Clock>) -> &str {
        let (secs, nanos) = unix_now();
        self.at(clock, secs, nanos)
    }

    /// The time `secs`.`nanos` rendered by `clock`, from the cache when it holds it.
    pub(crate) fn at(&mut self, clock: &Arc<Clock>, secs: i64, nanos: u32) -> &str {
        let key = (secs, nanos / clock.format.resolution_ns);
        let same_clock = self.clock.as_ref().is_some_and(|c| Arc::ptr_eq(c, clock));
        if !same_clock || key != self.key || self.text.is_empty() {
            clock.render_at(secs, nanos, &mut self.text);
            self.key = key;
            if !same_clock {
                self.clock = Some(Arc::clone(clock));
            }
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(format: &str, zone: &str) -> Arc<Clock> {
        Arc::new(Clock {
            format: TimeFormat::parse(format).unwrap(),
            zone: Zone::parse(zone).unwrap(),
        })
    }

    // 2026-11-25 14:03:27.123456789 UTC
    const T: i64 = 1_795_615_407;

    #[test]
    fn default_format_is_hh_mm_ss_in_utc() {
        let mut c = ClockCache::new();
        assert_eq!(c.at(&clock("%H:%M:%S", "UTC"), T, 123_456_789), "14:03:27");
    }

    #[test]
    fn fixed_offsets_shift_the_time() {
        let mut c = ClockCache::new();
        assert_eq!(c.at(&clock("%H:%M", "+07:00"), T, 0), "21:03");
        assert_eq!(c.at(&clock("%H:%M", "-03:30"), T, 0), "10:33");
        assert_eq!(c.at(&clock("%H:%M", "+0545"), T, 0), "19:48");
        assert_eq!(c.at(&clock("%H:%M", "-10"), T, 0), "04:03");
    }

    #[test]
    fn bad_offsets_are_rejected() {
        for bad in ["+7", "+24:00", "+07:60", "+07-00", "+ab:cd", "+071", "-"] {
            assert!(Zone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iana_zones_come_from_the_system_zoneinfo() {
        if !Path::new("/usr/share/zoneinfo/Asia/Jakarta").exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "tzdata missing in CI"
            );
            eprintln!("skipped: tzdata is not installed");
            return;
        }
        let mut c = ClockCache::new();
        assert_eq!(
            c.at(&clock("%H:%M %z", "Asia/Jakarta"), T, 0),
            "21:03 +0700"
        );
        // New York is in standard time in late November: UTC-5.
        assert_eq!(c.at(&clock("%H:%M", "America/New_York"), T, 0), "09:03");
        // …and in summer time in July: UTC-4.
        assert_eq!(
            c.at(&clock("%H:%M", "America/New_York"), 1_784_000_000, 0),
            "23:33"
        );
    }

    #[test]
    fn unknown_zone_names_are_rejected_with_a_reason() {
        let e = Zone::parse("Mars/Olympus_Mons").unwrap_err();
        assert!(e.contains("unknown time zone"), "{e}");
        assert!(Zone::parse("../../etc/passwd").is_err());
        assert!(Zone::parse("/etc/localtime").is_err());
        assert!(Zone::parse("").is_err());
    }

    #[test]
    fn invalid_formats_are_rejected_at_parse() {
        assert!(TimeFormat::parse("%H:%M:%").is_err());
        assert!(TimeFormat::parse("%Q").is_err());
        assert!(TimeFormat::parse("").is_err());
        assert!(TimeFormat::parse("%H\r\n").is_err());
        assert!(TimeFormat::parse("%H%n%M").is_err());
        assert!(TimeFormat::parse("%H:%M:%S").is_ok());
    }

    #[test]
    fn sub_second_formats_have_a_finer_resolution() {
        assert_eq!(
            TimeFormat::parse("%T").unwrap().resolution_ns,
            1_000_000_000
        );
        assert_eq!(
            TimeFormat::parse("%T%.3f").unwrap().resolution_ns,
            1_000_000
        );
        assert_eq!(TimeFormat::parse("%T%.6f").unwrap().resolution_ns, 1_000);
        assert_eq!(TimeFormat::parse("%T%.f").unwrap().resolution_ns, 1);
        assert_eq!(
            TimeFormat::parse("%T.%3f").unwrap().resolution_ns,
            1_000_000
        );
        assert_eq!(TimeFormat::parse("%+").unwrap().resolution_ns, 1);
        assert_eq!(TimeFormat::parse("%T.%f").unwrap().resolution_ns, 1);
    }

    /// Every specifier chrono formats (its strftime table), with the padding
    /// modifiers on numeric ones.
    const EVERY_SPECIFIER: &[&str] = &[
        "%Y", "%C", "%y", "%q", "%m", "%b", "%B", "%h", "%d", "%e", "%a", "%A", "%w", "%u", "%U",
        "%W", "%G", "%g", "%V", "%j", "%D", "%x", "%F", "%v", "%H", "%k", "%I", "%l", "%P", "%p",
        "%M", "%S", "%f", "%.f", "%.3f", "%.6f", "%.9f", "%3f", "%6f", "%9f", "%R", "%T", "%X",
        "%r", "%Z", "%z", "%:z", "%::z", "%:::z", "%c", "%+", "%s", "%t", "%%", "%-d", "%_H",
        "%0e", "%-S", "%_m", "%-j",
    ];

    #[test]
    fn every_specifier_renders_the_instant_asked_for_through_the_cache() {
        // Instants within one second whose fractions end in zeros or not,
        // visited in order as requests are.
        let nanos = [
            0,
            1,
            999,
            1_000,
            1_001,
            999_999,
            1_000_000,
            1_000_001,
            26_490_000,
            123_000_000,
            123_456_000,
            123_456_789,
            500_000_000,
            999_999_999,
        ];
        for spec in EVERY_SPECIFIER {
            let format = TimeFormat::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            for zone in ["UTC", "+05:45"] {
                let c = Arc::new(Clock {
                    format: format.clone(),
                    zone: Zone::parse(zone).unwrap(),
                });
                let mut cache = ClockCache::new();
                let mut fresh = String::new();
                for secs in [T, T + 1] {
                    for &n in &nanos {
                        c.render_at(secs, n, &mut fresh);
                        assert_eq!(cache.at(&c, secs, n), fresh, "{spec} at {secs}.{n:09}");
                    }
                }
            }
        }
    }

    #[test]
    fn formats_that_show_fractions_only_when_not_zero_are_not_cached_for_a_second() {
        // chrono's %+ is %Y-%m-%dT%H:%M:%S%.f%:z: 0, 3, 6 or 9 digits.
        let c = clock("%+", "UTC");
        let mut cache = ClockCache::new();
        assert_eq!(cache.at(&c, T, 0), "2026-11-25T14:03:27+00:00");
        assert_eq!(
            cache.at(&c, T, 170_000_000),
            "2026-11-25T14:03:27.170+00:00"
        );
        assert_eq!(
            cache.at(&c, T, 340_000_001),
            "2026-11-25T14:03:27.340000001+00:00"
        );
    }

    #[test]
    fn the_cache_never_shows_a_second_that_has_passed() {
        let c = clock("%H:%M:%S", "UTC");
        let mut cache = ClockCache::new();
        assert_eq!(cache.at(&c, T, 999_999_999), "14:03:27");
        assert_eq!(cache.at(&c, T + 1, 0), "14:03:28");
        assert_eq!(cache.at(&c, T + 1, 500), "14:03:28");
    }

    #[test]
    fn the_cache_follows_milliseconds_with_a_millisecond_format() {
        let c = clock("%H:%M:%S%.3f", "UTC");
        let mut cache = ClockCache::new();
        assert_eq!(cache.at(&c, T, 1_999_999), "14:03:27.001");
        assert_eq!(cache.at(&c, T, 2_000_000), "14:03:27.002");
    }

    #[test]
    fn a_new_clock_is_rendered_at_once() {
        let mut cache = ClockCache::new();
        assert_eq!(cache.at(&clock("%H:%M:%S", "UTC"), T, 0), "14:03:27");
        assert_eq!(cache.at(&clock("%H.%M", "UTC"), T, 0), "14.03");
    }

    #[test]
    fn now_matches_the_system_clock() {
        let c = clock("%s", "UTC");
        let mut cache = ClockCache::new();
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let shown: u64 = cache.now(&c).parse().unwrap();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(before <= shown && shown <= after);
    }
}
