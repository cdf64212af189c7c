//! Drift tests: the man pages are the reference, so they must name what the
//! code and the contract (SPEC.md) name. Each test fails when one side changes
//! without the other: a flag added to `--help`, a key added to
//! `config/jamd.toml`, a default changed, a log line renamed, a page that no
//! longer lints, or an example whose output is no longer what the page shows
//! (the configuration error of jamd.toml.5, the `nc` session of jamd.8, the
//! `check_tcp` line of jamc.1, run against a real jamd).
//!
//! The pages are read as mdoc source, through a small reader that knows just
//! enough of mdoc to find sections, list items and the words a reader sees
//! (see [`Page`]); it does not need mandoc, which only the lint test runs.

mod common;

use common::repo;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// The log lines of SPEC section 4, plus `dropped N log line(s)` (DESIGN-NOTES),
/// with their placeholders as the spec writes them.
const JAMD_LOG_LINES: &[&str] = &[
    "listening on ADDR (backlog N)",
    "using N socket(s) from the service manager",
    "connection from ADDR",
    "closed ADDR requests=N duration_ms=N reason=R",
    "refused ADDR: server busy",
    "configuration reloaded",
    "reload failed: WHY; keeping the previous configuration",
    "shutting down: N connection(s) open",
    "stopped",
    "dropped N log line(s)",
];

/// The `reason=` values of the `closed` line (jamd(8), LOGGING).
const CLOSE_REASONS: &[&str] = &["quit", "eof", "idle", "too_long", "error", "shutdown"];

/// jamd's exit codes (jamd(8), EXIT STATUS): clean stop, other failure, bad
/// command line, EX_CONFIG.
const JAMD_EXIT_CODES: &[&str] = &["0", "1", "2", "78"];

/// jamc's exit codes without `--check`, and with it (jamc(1), EXIT STATUS).
const JAMC_EXIT_CODES: &[&str] = &["0", "1", "2"];
const JAMC_CHECK_EXIT_CODES: &[&str] = &["0", "1", "2", "3"];

/// The monitoring-plugin states of `jamc --check` (jamc(1), CHECK MODE).
const JAMC_STATES: &[&str] = &["OK", "WARNING", "CRITICAL", "UNKNOWN"];

/// Service-manager messages jamd sends (jamd(8), READINESS NOTIFICATION).
const NOTIFY_MESSAGES: &[&str] = &[
    "READY=1",
    "RELOADING=1",
    "MONOTONIC_USEC=",
    "STOPPING=1",
    "STATUS=N connection(s) open",
    "WATCHDOG=1",
];

/// Environment variables jamd reads (jamd(8), ENVIRONMENT).
const JAMD_ENVIRONMENT: &[&str] = &[
    "TZ",
    "LISTEN_PID",
    "LISTEN_FDS",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
];

/// Keys that SIGHUP applies at once, and those that need a restart
/// (jamd.toml(5), RELOADING).
const RELOAD_AT_ONCE: &[&str] = &[
    "max_connections",
    "max_connections_per_source",
    "idle_timeout",
    "max_line_bytes",
    "shutdown_timeout",
];
const RELOAD_NEEDS_RESTART: &[&str] = &["port", "bind", "backlog", "reuse_address"];

/// The example outputs jamc was specified with, which its page must show
/// verbatim.
const JAMC_SPEC_EXAMPLES: &[&str] = &[
    r#"{"client":1,"server":"localhost:45000","reply":"JAM 14:03:27","time":"14:03:27","rtt_ms":0.21}"#,
    "JAM OK - offset +0.012 s from localhost:45000 | offset=0.012s;2;10 time=0.000210s uncertainty=0.003s",
    "--timezone=-03:00",
];

/// mdoc macros that may appear as words on a macro line; they are dropped
/// when a line is read as text.
const CALLABLE: &[&str] = &[
    "Ad", "Ar", "Bq", "Bo", "Bc", "Cm", "Dq", "Do", "Dc", "Dv", "Em", "Ev", "Fl", "Ic", "Li", "Lk",
    "Ms", "Nm", "No", "Ns", "Op", "Oo", "Oc", "Pa", "Pc", "Pf", "Po", "Pq", "Ql", "Qq", "Sq", "Sx",
    "Sy", "Ta", "Va", "Xr",
];

/// Resolves the few escapes the pages use.
fn unescape(word: &str) -> String {
    word.replace("\\&", "")
        .replace("\\-", "-")
        .replace("\\(dq", "\"")
        .replace("\\(+-", "±")
        .replace("\\e", "\\")
}

/// One line of mdoc source as the words a reader sees: on a macro line the
/// macro names are dropped, and escapes are resolved.
fn words_of(line: &str) -> String {
    match line.strip_prefix('.') {
        Some(rest) => rest
            .split_whitespace()
            .skip(1)
            .filter(|w| !CALLABLE.contains(w))
            .map(unescape)
            .collect::<Vec<_>>()
            .join(" "),
        None => unescape(line),
    }
}

/// The first word of a macro line: `.It Fl c` → `It`.
fn macro_of(line: &str) -> Option<&str> {
    line.strip_prefix('.')?.split_whitespace().next()
}

/// A man page's mdoc source, comments removed.
struct Page {
    name: String,
    lines: Vec<String>,
}

impl Page {
    fn read(name: &str) -> Page {
        let path = repo().join("man").join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let lines = text
            .lines()
            .filter(|l| !l.starts_with(".\\\"") && !l.starts_with("'\\\""))
            .map(|l| match l.find("\\\"") {
                Some(i) => l[..i].trim_end().to_string(),
                None => l.to_string(),
            })
            .collect();
        Page {
            name: name.to_string(),
            lines,
        }
    }

    /// The lines of `.Sh TITLE` up to the next `.Sh`; panics if it is missing.
    fn section(&self, title: &str) -> Vec<&str> {
        self.between(|l| l == format!(".Sh {title}"), |l| l.starts_with(".Sh "))
            .unwrap_or_else(|| panic!("{}: no section {title}", self.name))
    }

    /// The lines of the `.Ss` whose title contains `needle`, up to the next
    /// `.Ss` or `.Sh`; panics if it is missing.
    fn subsection(&self, needle: &str) -> Vec<&str> {
        self.between(
            |l| l.starts_with(".Ss ") && l.contains(needle),
            |l| l.starts_with(".Ss ") || l.starts_with(".Sh "),
        )
        .unwrap_or_else(|| panic!("{}: no subsection about {needle}", self.name))
    }

    fn between(
        &self,
        start: impl Fn(&str) -> bool,
        end: impl Fn(&str) -> bool,
    ) -> Option<Vec<&str>> {
        let from = self.lines.iter().position(|l| start(l))?;
        Some(
            self.lines[from + 1..]
                .iter()
                .take_while(|l| !end(l))
                .map(String::as_str)
                .collect(),
        )
    }
}

/// The items of the outermost lists in `lines`, as (the `.It` line, the item's
/// body lines). Items of nested lists stay inside their parent's body.
fn items<'a>(lines: &[&'a str]) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut depth = 0usize;
    for &line in lines {
        match macro_of(line) {
            Some("Bl") => {
                depth += 1;
                if depth > 1 {
                    if let Some(item) = out.last_mut() {
                        item.1.push(line);
                    }
                }
            }
            Some("El") => {
                if depth > 1 {
                    if let Some(item) = out.last_mut() {
                        item.1.push(line);
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Some("It") if depth == 1 => out.push((line, Vec::new())),
            _ if depth >= 1 => {
                if let Some(item) = out.last_mut() {
                    item.1.push(line);
                }
            }
            _ => {}
        }
    }
    out
}

/// The text of some lines as a reader sees it, on one line.
fn text_of(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| words_of(l))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The flags named by `Fl` in mdoc lines: `.It Fl c Ar file , Fl -config` →
/// `-c`, `--config`.
fn fl_flags<'a>(lines: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in lines {
        if !line.starts_with('.') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "Fl" || pair[0] == ".Fl" {
                // `.Fl 46` in a synopsis is the two flags -4 and -6.
                let arg = unescape(pair[1]);
                if let Some(long) = arg.strip_prefix('-') {
                    flags.insert(format!("--{long}"));
                } else if arg.chars().all(|c| c.is_ascii_alphanumeric()) {
                    flags.extend(arg.chars().map(|c| format!("-{c}")));
                }
            }
        }
    }
    flags
}

/// The flags an option listing of `--help` defines: the leading `-x, --long`
/// words of every option line. clap indents option lines by at most six
/// spaces and the text under them by more, which may itself start with a
/// flag (`--check: ...`).
fn help_flags(help: &str) -> BTreeSet<String> {
    let is_flag = |w: &str| {
        let name = w.trim_start_matches('-');
        w.starts_with('-')
            && w.len() - name.len() <= 2
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        let body = line.trim_start();
        if line.len() - body.len() > 6 {
            continue;
        }
        for word in body.split_whitespace() {
            let word = word.trim_end_matches(',');
            let word = word.split('=').next().unwrap_or(word);
            if !is_flag(word) {
                break;
            }
            flags.insert(word.to_string());
        }
    }
    flags
}

/// Runs `cmd` (shown as `what` in a failure), which must succeed; its
/// standard output. A failure shows the exit status and standard error.
fn stdout_of(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what} printed no UTF-8: {e}"))
}

fn run_help(exe: &str) -> String {
    stdout_of(&format!("{exe} --help"), Command::new(exe).arg("--help"))
}

/// Every flag of `--help` is an option item of the page, and every flag the
/// page names exists.
fn check_flags(page: &Page, help: &str) {
    let from_help = help_flags(help);
    for must in ["--help", "--version", "-h", "-V"] {
        assert!(
            from_help.contains(must),
            "{}: `--help` lists no {must}; cannot read its options:\n{help}",
            page.name
        );
    }
    let description = page.section("DESCRIPTION");
    let item_lines = items(&description)
        .into_iter()
        .map(|(it, _)| it)
        .collect::<Vec<_>>();
    let documented = fl_flags(item_lines);
    let missing: Vec<_> = from_help.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "{}: flags of --help without an option item in DESCRIPTION: {missing:?}",
        page.name
    );
    let named = fl_flags(page.lines.iter().map(String::as_str));
    let unknown: Vec<_> = named.difference(&from_help).collect();
    assert!(
        unknown.is_empty(),
        "{}: the page names flags that --help does not have: {unknown:?}",
        page.name
    );
}

#[test]
fn every_flag_of_jamd_help_is_documented_in_jamd_8() {
    check_flags(&Page::read("jamd.8"), &run_help(env!("CARGO_BIN_EXE_jamd")));
}

#[test]
fn every_flag_of_jamc_help_is_documented_in_jamc_1() {
    check_flags(&Page::read("jamc.1"), &run_help(env!("CARGO_BIN_EXE_jamc")));
}

fn shipped_config() -> toml::Table {
    let path = repo().join("config/jamd.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

/// A default as the page writes it after "The default is".
fn shown_default(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => {
            let parts: Vec<String> = a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => format!("\"{s}\""),
                    other => other.to_string(),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

#[test]
fn every_key_of_the_shipped_config_is_documented_with_its_default() {
    let page = Page::read("jamd.toml.5");
    for (table, keys) in shipped_config() {
        let keys = keys
            .as_table()
            .unwrap_or_else(|| panic!("config/jamd.toml: [{table}] is not a table"));
        let sub = page.subsection(&format!("[{table}]"));
        let entries = items(&sub);
        for (key, value) in keys {
            let (_, body) = entries
                .iter()
                .find(|(it, _)| it.split_whitespace().take(3).eq([".It", "Ic", key]))
                .unwrap_or_else(|| {
                    panic!("jamd.toml.5: no `.It Ic {key}` under [{table}] for {table}.{key}")
                });
            let text = text_of(body);
            let want = format!("The default is {}", shown_default(value));
            assert!(
                text.contains(&want),
                "jamd.toml.5: {table}.{key} should say {want:?}; it says: {text}"
            );
        }
        for (it, _) in &entries {
            let words: Vec<&str> = it.split_whitespace().collect();
            if let [".It", "Ic", key, ..] = words[..] {
                assert!(
                    keys.contains_key(key),
                    "jamd.toml.5 documents {table}.{key}, which config/jamd.toml does not have"
                );
            }
        }
    }
}

/// The `table.key` names of a configuration.
fn key_names(config: &toml::Table) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (table, keys) in config {
        match keys.as_table() {
            Some(keys) => names.extend(keys.keys().map(|k| format!("{table}.{k}"))),
            None => {
                names.insert(table.clone());
            }
        }
    }
    names
}

/// The key tests above start from config/jamd.toml; this one makes sure that
/// file names every key jamd itself knows (`jamd -t` prints them all), so a
/// key added to the code cannot skip both the file and the page.
#[test]
fn every_key_jamd_knows_is_in_the_shipped_config() {
    let path = repo().join("config/jamd.toml");
    let printed = stdout_of(
        "jamd -t -c config/jamd.toml",
        Command::new(env!("CARGO_BIN_EXE_jamd"))
            .arg("-t")
            .arg("-c")
            .arg(&path),
    );
    let effective: toml::Table = printed.parse().expect("jamd -t prints TOML");
    assert_eq!(
        key_names(&effective),
        key_names(&shipped_config()),
        "the keys jamd -t prints and the keys of config/jamd.toml differ"
    );
}

#[test]
fn the_default_file_shown_in_jamd_toml_5_is_the_shipped_config() {
    let page = Page::read("jamd.toml.5");
    let examples = page.section("EXAMPLES");
    let start = examples
        .iter()
        .position(|l| l.starts_with(".Bd -literal"))
        .expect("jamd.toml.5: EXAMPLES has no literal display");
    let shown: Vec<String> = examples[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with(".Ed"))
        .map(|l| unescape(l))
        .collect();
    let shown: toml::Table = shown
        .join("\n")
        .parse()
        .unwrap_or_else(|e| panic!("jamd.toml.5: the first example is not TOML: {e}"));
    assert_eq!(
        shown,
        shipped_config(),
        "jamd.toml.5: the first example of EXAMPLES must be config/jamd.toml without comments"
    );
}

/// Splits a text about SIGHUP into the words of what takes effect at once
/// (before "A changed") and of what needs a restart (from "A changed" to
/// "needing a restart").
fn reload_split(text: &str) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let (now, rest) = text
        .split_once("A changed")
        .unwrap_or_else(|| panic!("no `A changed ...` sentence in: {text}"));
    let (later, _) = rest
        .split_once("needing a restart")
        .unwrap_or_else(|| panic!("no `needing a restart` in: {text}"));
    (word_set(now), word_set(later))
}

/// The identifier-like words of a text.
fn word_set(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Checks one page's account of a reload against `RELOAD_AT_ONCE` and
/// `RELOAD_NEEDS_RESTART`.
fn check_reload_text(page: &str, text: &str) {
    let (now, later) = reload_split(text);
    // Each key is named where it belongs, and not in the other part.
    for (keys, (here, belongs), (there, not)) in [
        (
            RELOAD_AT_ONCE,
            (&now, "take effect at once on SIGHUP"),
            (&later, "need a restart"),
        ),
        (
            RELOAD_NEEDS_RESTART,
            (&later, "need a restart when changed"),
            (&now, "take effect at once"),
        ),
    ] {
        for key in keys {
            assert!(here.contains(key), "{page}: {key} should {belongs}");
            assert!(!there.contains(key), "{page}: {key} is said to {not}");
        }
    }
    for table in ["time", "log"] {
        assert!(
            now.contains(table),
            "{page}: [{table}] should take effect at once"
        );
    }
}

#[test]
fn jamd_toml_5_says_what_a_reload_applies_and_what_needs_a_restart() {
    let page = Page::read("jamd.toml.5");
    let text = text_of(&page.section("RELOADING"));
    check_reload_text("jamd.toml.5", &text);
    assert!(text.contains("keeps the previous configuration"), "{text}");
}

/// The log-line block of SPEC section 4, when ../shared/SPEC.md is there:
/// the message of every line that is not a continuation.
fn spec_log_lines() -> Option<Vec<String>> {
    let spec = std::fs::read_to_string(repo().join("../shared/SPEC.md")).ok()?;
    let after = &spec[spec.find("Log lines (")?..];
    let block = after.split("```").nth(1)?;
    Some(
        block
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with(' '))
            .map(|l| l.split('—').next().unwrap_or(l).trim().to_string())
            .collect(),
    )
}

#[test]
fn the_log_line_list_of_these_tests_is_the_one_in_the_spec() {
    let Some(spec) = spec_log_lines() else {
        skip!("../shared/SPEC.md is not there to compare with");
    };
    assert!(
        spec.len() >= 9,
        "cannot read the log lines of SPEC.md: {spec:?}"
    );
    let ours: Vec<String> = JAMD_LOG_LINES
        .iter()
        .filter(|l| !l.starts_with("dropped "))
        .map(|l| l.to_string())
        .collect();
    assert_eq!(
        ours, spec,
        "JAMD_LOG_LINES no longer matches SPEC.md section 4"
    );
}

#[test]
fn every_log_line_of_the_spec_is_documented_in_jamd_8() {
    let page = Page::read("jamd.8");
    let logging = page.section("LOGGING");
    let entries = items(&logging);
    let documented: Vec<String> = entries
        .iter()
        .filter(|(it, _)| it.starts_with(".It Li "))
        .map(|(it, _)| words_of(it))
        .collect();
    for line in JAMD_LOG_LINES {
        assert!(
            documented.iter().any(|d| d == line),
            "jamd.8: LOGGING has no `.It Li {line}`"
        );
    }
    for line in &documented {
        assert!(
            JAMD_LOG_LINES.contains(&line.as_str()),
            "jamd.8: LOGGING documents {line:?}, which is not a log line of the spec"
        );
    }
    let (_, closed) = entries
        .iter()
        .find(|(it, _)| it.starts_with(".It Li closed "))
        .expect("jamd.8: no `closed` log line");
    for reason in CLOSE_REASONS {
        assert!(
            closed.contains(&format!(".Cm {reason}").as_str()),
            "jamd.8: the `closed` line does not explain reason={reason}"
        );
    }
}

fn exit_codes(page: &Page) -> Vec<Vec<String>> {
    // One list per `.Bl` of EXIT STATUS, each as its item labels.
    let section = page.section("EXIT STATUS");
    let mut lists = Vec::new();
    let mut rest: &[&str] = &section;
    while let Some(start) = rest.iter().position(|l| l.starts_with(".Bl")) {
        let end = rest[start..]
            .iter()
            .position(|l| l.starts_with(".El"))
            .map_or(rest.len(), |e| start + e + 1);
        lists.push(
            items(&rest[start..end])
                .into_iter()
                .map(|(it, _)| words_of(it))
                .collect(),
        );
        rest = &rest[end..];
    }
    lists
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_exit_code_of_jamd_is_documented_in_jamd_8() {
    assert_eq!(
        exit_codes(&Page::read("jamd.8")),
        vec![strings(JAMD_EXIT_CODES)],
        "jamd.8: EXIT STATUS must list exactly jamd's exit codes"
    );
}

#[test]
fn every_exit_code_and_state_of_jamc_is_documented_in_jamc_1() {
    let page = Page::read("jamc.1");
    assert_eq!(
        exit_codes(&page),
        vec![strings(JAMC_EXIT_CODES), strings(JAMC_CHECK_EXIT_CODES)],
        "jamc.1: EXIT STATUS must list the codes without and with --check"
    );
    let states: Vec<String> = items(&page.section("CHECK MODE"))
        .into_iter()
        .map(|(it, _)| words_of(it))
        .collect();
    let mut want = strings(JAMC_STATES);
    want.reverse(); // the page lists them in the order they are decided
    assert_eq!(states, want, "jamc.1: CHECK MODE must explain each state");
}

#[test]
fn jamc_1_shows_the_output_formats_of_the_spec() {
    let page = Page::read("jamc.1");
    let text: Vec<String> = page.lines.iter().map(|l| words_of(l)).collect();
    for example in JAMC_SPEC_EXAMPLES {
        assert!(
            text.iter().any(|l| l.contains(example)),
            "jamc.1 does not show {example}"
        );
    }
}

#[test]
fn jamd_8_names_the_environment_signals_and_notifications_of_the_spec() {
    let page = Page::read("jamd.8");
    let environment = page.section("ENVIRONMENT");
    let env_items = text_of(
        &items(&environment)
            .into_iter()
            .map(|(it, _)| it)
            .collect::<Vec<_>>(),
    );
    for var in JAMD_ENVIRONMENT {
        assert!(
            env_items.split([' ', ',']).any(|w| w == *var),
            "jamd.8: ENVIRONMENT has no item for {var}"
        );
    }
    let signals = items(&page.section("SIGNALS"));
    for sig in ["SIGTERM", "SIGINT", "SIGHUP"] {
        assert!(
            signals.iter().any(|(it, _)| word_set(it).contains(sig)),
            "jamd.8: SIGNALS has no item for {sig}"
        );
    }
    let (_, hup) = signals
        .iter()
        .find(|(it, _)| it.contains("SIGHUP"))
        .expect("jamd.8: no SIGHUP item");
    check_reload_text("jamd.8 SIGNALS", &text_of(hup));
    let notify = text_of(&page.section("READINESS NOTIFICATION"));
    for message in NOTIFY_MESSAGES {
        assert!(
            notify.contains(message),
            "jamd.8: READINESS NOTIFICATION does not name {message}"
        );
    }
}

#[test]
fn the_pages_refer_to_each_other() {
    for (name, refs) in [
        (
            "jamd.8",
            &[
                "jamc 1",
                "syslog 3",
                "jamd.toml 5",
                "systemd.socket 5",
                "inetd 8",
            ][..],
        ),
        ("jamc.1", &["jamd.toml 5", "jamd 8"][..]),
        ("jamd.toml.5", &["jamc 1", "jamd 8"][..]),
    ] {
        let page = Page::read(name);
        let see_also = page.section("SEE ALSO");
        for r in refs {
            assert!(
                see_also.iter().any(|l| l.starts_with(&format!(".Xr {r}"))),
                "{name}: SEE ALSO lacks {r}"
            );
        }
    }
}

/// `mandoc -Tlint -Wwarning` must print nothing. Without mandoc the test is
/// skipped, except in CI (`CI=true`), where a missing mandoc is a failure.
#[test]
fn the_pages_are_clean_under_mandoc_lint() {
    let pages: Vec<PathBuf> = ["jamd.8", "jamc.1", "jamd.toml.5"]
        .iter()
        .map(|p| repo().join("man").join(p))
        .collect();
    let out = match Command::new("mandoc")
        .args(["-Tlint", "-Wwarning"])
        .args(&pages)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip!("mandoc is not installed (apt-get install mandoc)");
        }
        Err(e) => panic!("cannot run mandoc: {e}"),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "mandoc -Tlint -Wwarning ({}):\n{report}",
        out.status
    );
}

#[test]
fn the_page_reader_understands_the_mdoc_it_is_given() {
    // The reader is small; check it on the constructs the tests rely on, so a
    // passing drift test means the page really says it.
    assert_eq!(
        words_of(".It Fl b Ar address , Fl \\-bind Ns = Ns Ar address"),
        "b address , -bind = address"
    );
    assert_eq!(
        words_of(".Ql [\\(dq0.0.0.0\\(dq, \\(dq::\\(dq] :"),
        "[\"0.0.0.0\", \"::\"] :"
    );
    assert_eq!(
        fl_flags([".It Fl c Ar file , Fl -config Ns = Ns Ar file", ".Op Fl 46"]),
        ["--config", "-4", "-6", "-c"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let help = "Usage: jamd [OPTIONS]\n\nOptions:\n  -c, --config <FILE>  configuration file\n      --inetd          serve from inetd; see --help\n  -4                   IPv4 only\n      --warning <SECS>\n          --check: |offset| that makes WARNING\n          - stderr: standard error\n";
    assert_eq!(
        help_flags(help),
        ["-c", "--config", "--inetd", "-4", "--warning"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let lines = [
        ".Bl -tag",
        ".It Ic a",
        "text",
        ".Bl -bullet",
        ".It",
        "inner",
        ".El",
        ".It Ic b",
        ".El",
    ];
    let found = items(&lines);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, ".It Ic a");
    assert_eq!(found[0].1.len(), 5);
    assert_eq!(shown_default(&toml::Value::Integer(45000)), "45000");
    assert_eq!(
        shown_default(&toml::Value::Array(vec![
            toml::Value::String("0.0.0.0".into()),
            toml::Value::String("::".into())
        ])),
        "[\"0.0.0.0\", \"::\"]"
    );
    let (now, later) = reload_split(
        "effect at once: all of [time], max_line_bytes and idle_timeout . A changed port or bind is logged as needing a restart",
    );
    assert!(now.contains("idle_timeout") && !now.contains("port"));
    assert!(later.contains("port") && later.contains("bind") && !later.contains("idle_timeout"));
}

/// The lines of the literal display in the EXAMPLES of `page` that starts
/// with a line beginning with `first`, up to `.Ed`, escapes resolved.
fn example(page: &str, first: &str) -> Vec<String> {
    let page = Page::read(page);
    let lines = page.section("EXAMPLES");
    let start = lines
        .iter()
        .position(|l| l.starts_with(first))
        .unwrap_or_else(|| panic!("{}: EXAMPLES has no `{first}` display", page.name));
    lines[start..]
        .iter()
        .take_while(|l| !l.starts_with(".Ed"))
        .map(|l| unescape(l))
        .collect()
}

#[test]
fn the_configuration_error_shown_in_jamd_toml_5_is_what_jamd_prints() {
    let shown = example("jamd.toml.5", "$ cat bad.toml");
    // $ cat bad.toml / file lines / $ jamd -t -c bad.toml / error / $ echo $? / code
    let run_at = shown
        .iter()
        .position(|l| l.starts_with("$ jamd "))
        .expect("the session runs jamd");
    let file = shown[1..run_at].join("\n") + "\n";
    let args: Vec<&str> = shown[run_at]["$ jamd ".len()..]
        .split_whitespace()
        .collect();
    let error = &shown[run_at + 1];
    assert_eq!(shown.get(run_at + 2).map(String::as_str), Some("$ echo $?"));
    let code: i32 = shown[run_at + 3].parse().expect("an exit code");

    let dir = common::temp_dir("bad-toml");
    std::fs::write(dir.join("bad.toml"), file).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jamd"));
    let (status, _, stderr) = common::run_within(
        cmd.args(&args).current_dir(&dir),
        std::time::Duration::from_secs(20),
    );
    assert_eq!(status, Some(code), "exit status of jamd {args:?}");
    assert_eq!(
        stderr.trim_end(),
        error,
        "jamd.toml.5 shows another error than jamd prints"
    );
}

/// A jamd with the shipped configuration on a free loopback port, killed
/// when dropped.
fn start_daemon() -> common::Jamd {
    let config =
        std::fs::read_to_string(repo().join("config/jamd.toml")).expect("config/jamd.toml");
    common::Jamd::start(&config)
}

/// Runs an example command line from a page with `sh`, the server and port
/// it names replaced by the test daemon's; returns its standard output.
fn run_example(command: &str, daemon: &common::Jamd, path_extra: &[PathBuf]) -> String {
    let command = command
        .replace("45000", &daemon.port.to_string())
        .replace("timehost", "127.0.0.1");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        path_extra
            .iter()
            .cloned()
            .chain(std::env::split_paths(&path)),
    )
    .expect("a usable PATH");
    stdout_of(
        &format!("`{command}`"),
        Command::new("timeout")
            .args(["10", "sh", "-c", &command])
            .env("PATH", path),
    )
}

#[test]
fn the_nc_example_of_jamd_8_gets_the_time() {
    if common::require_tool("nc").is_none() {
        return;
    }
    let shown = example("jamd.8", "$ printf 'TIME");
    let daemon = start_daemon();
    let out = run_example(&shown[0]["$ ".len()..], &daemon, &[]);
    let reply = out.trim_end();
    assert!(
        reply.starts_with("JAM ") && reply.lines().count() == 1,
        "the example printed {out:?}"
    );
    assert!(
        shown[1].starts_with("JAM "),
        "the page shows {:?}",
        shown[1]
    );
}

#[test]
fn the_check_tcp_example_of_jamc_1_says_ok() {
    let dirs = [
        "/usr/lib/nagios/plugins",
        "/usr/lib/monitoring-plugins",
        "/usr/lib64/nagios/plugins",
    ]
    .map(PathBuf::from);
    let Some(check_tcp) = common::require_tool_in("check_tcp", &dirs) else {
        return;
    };
    let shown = example("jamc.1", "check_tcp ");
    let daemon = start_daemon();
    let dir = check_tcp.parent().map(PathBuf::from).unwrap_or_default();
    let out = run_example(&shown[0], &daemon, &[dir]);
    assert!(out.starts_with("TCP OK"), "check_tcp said {out:?}");
}

/// The `--check-access` sessions of jamd.8 and README, run with the `deny`
/// each says it was run with, print what they show.
#[test]
fn the_check_access_examples_print_what_the_docs_show() {
    let page = common::repo_file("man/jamd.8");
    let readme = common::repo_file("README.md");
    // The [access] line each names, as written there.
    let deny_of = |text: &str, before: &str| -> String {
        let at = text.find(before).expect("the example");
        let start = text[..at]
            .rfind("deny = [")
            .expect("the deny the example uses");
        let end = start + text[start..].find(']').unwrap() + 1;
        text[start..end].to_owned()
    };
    let shown = example("jamd.8", "$ jamd --check-access ");
    let addr = shown[0]["$ jamd --check-access ".len()..].trim().to_owned();
    let cases = [
        (
            deny_of(&page, "$ jamd --check-access "),
            addr.clone(),
            shown[1].clone(),
            shown[3].parse::<i32>().expect("an exit status"),
        ),
        (
            deny_of(&readme, "--check-access 10.1.2.3\n"),
            "10.1.2.3".to_owned(),
            readme
                .lines()
                .skip_while(|l| !l.contains("--check-access 10.1.2.3"))
                .nth(1)
                .and_then(|l| l.split("  #").next())
                .expect("README's output line")
                .trim()
                .to_owned(),
            1,
        ),
    ];
    let dir = common::temp_dir("check-access-doc");
    for (deny, addr, printed, code) in cases {
        let file = common::write_file(&dir, "jamd.toml", &format!("[access]\n{deny}\n"));
        let (got, out, err) = common::run_jamd(
            &["-c", &file, "--check-access", &addr],
            std::time::Duration::from_secs(10),
        );
        assert_eq!(got, Some(code), "{deny}: {err}");
        assert_eq!(out.trim_end(), printed, "with {deny}");
    }
}

/// README's "every key with its default" block has every section and key
/// of the shipped file, with the same defaults.
#[test]
fn the_readme_configuration_block_has_every_key_of_the_shipped_file() {
    let readme = common::repo_file("README.md");
    let block = readme
        .split("every key with its default:\n\n```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("README's configuration block");
    let shown: toml::Table = block.parse().expect("README's block is TOML");
    let shipped: toml::Table = common::repo_file("config/jamd.toml")
        .parse()
        .expect("config/jamd.toml is TOML");
    for (section, keys) in &shipped {
        let keys = keys.as_table().expect("a section");
        let Some(shown_keys) = shown.get(section).and_then(|s| s.as_table()) else {
            panic!("README's block has no [{section}]");
        };
        for (key, value) in keys {
            assert_eq!(
                shown_keys.get(key),
                Some(value),
                "README's block: {section}.{key}"
            );
        }
    }
}

/// README's configuration error is what jamd prints for such a file.
#[test]
fn the_readme_configuration_error_is_what_jamd_prints() {
    let readme = common::repo_file("README.md");
    let shown = readme
        .split("`jamd: /etc/jamd/jamd.toml:")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("README's configuration error");
    // LINE:COLUMN: KEY: WHAT, KEY being section.key.
    let mut parts = shown.splitn(3, ':');
    let line: usize = parts.next().unwrap().parse().unwrap();
    let column: usize = parts.next().unwrap().parse().unwrap();
    let message = parts.next().unwrap().trim_start();
    let (key, _) = message.split_once(": ").expect("the key");
    let (section, name) = key.split_once('.').expect("section.key");
    let value = message
        .split('"')
        .nth(1)
        .expect("the value, quoted in the message");
    // A file with that key's value at that line and column.
    let mut file = "\n".repeat(line - 2);
    file.push_str(&format!("[{section}]\n"));
    let assignment = format!("{name} = ");
    file.push_str(&" ".repeat(column - 1 - assignment.len()));
    file.push_str(&format!("{assignment}\"{value}\"\n"));
    let dir = common::temp_dir("readme-error");
    let path = common::write_file(&dir, "jamd.toml", &file);
    let (code, _, err) = common::run_jamd(&["-t", "-c", &path], std::time::Duration::from_secs(10));
    assert_eq!(code, Some(78), "{err}");
    assert_eq!(err.trim_end(), format!("jamd: {path}:{shown}"));
}

/// jamd.8's SIGHUP item names every section of the file (what a reload
/// applies) and every key only a restart applies.
#[test]
fn jamd_8_sighup_names_every_section_and_every_restart_only_key() {
    let page = Page::read("jamd.8");
    let signals = page.section("SIGNALS");
    let (_, body) = items(&signals)
        .into_iter()
        .find(|(it, _)| it.contains("SIGHUP"))
        .expect("a SIGHUP item");
    let text = body.join("\n");
    let shipped: toml::Table = common::repo_file("config/jamd.toml").parse().unwrap();
    for section in shipped.keys().filter(|s| *s != "server" && *s != "metrics") {
        assert!(
            text.contains(&format!(".Ic [{section}]")),
            "SIGHUP omits [{section}]"
        );
    }
    let reload = common::repo_file("src/daemon/reload.rs");
    let list = reload
        .split("restart_only!(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the restart_only! invocation");
    for key in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let shown = key.strip_prefix("server.").unwrap_or(key);
        assert!(text.contains(&format!(".Ic {shown}")), "SIGHUP omits {key}");
    }
}

/// README's account of what `.ci/run` installs names every package it
/// installs or unpacks.
#[test]
fn the_readme_names_every_tool_ci_installs() {
    let run = common::repo_file(".ci/run");
    let readme = common::repo_file("README.md").replace('\n', " ");
    let said = readme
        .split("(`bash .ci/run` is what CI runs:")
        .nth(1)
        .and_then(|rest| rest.split("builds and lints the .deb.)").next())
        .expect("README's paragraph on .ci/run");
    // The words after `apt-get install` / `apt-get download`, over
    // continued lines, that are package names.
    let joined = run.replace("\\\n", " ");
    let mut packages = Vec::new();
    for line in joined.lines() {
        for verb in ["apt-get install ", "apt-get download "] {
            let Some((_, rest)) = line.split_once(verb) else {
                continue;
            };
            packages.extend(
                rest.split_whitespace()
                    .take_while(|w| !w.starts_with(['>', '2', '&', '|', ')', ';']))
                    .filter(|w| !w.starts_with('-') && !w.contains('$'))
                    .map(str::to_owned),
            );
        }
    }
    assert!(packages.len() >= 15, "{packages:?}");
    for package in packages {
        assert!(
            said.contains(&package),
            "README does not say .ci/run installs {package}"
        );
    }
}

/// jamd.8 says per-source limits count a client's source (its address cut
/// to the source prefix), not its own address.
#[test]
fn jamd_8_says_per_source_limits_count_the_source_prefix() {
    let page = common::repo_file("man/jamd.8");
    assert!(!page.contains("the client's own IP address"));
    let busy = page
        .split(".It Li ERROR server busy")
        .nth(1)
        .and_then(|rest| rest.split(".It ").next())
        .expect("ERROR server busy in jamd.8");
    assert!(busy.contains(".Ic server.source_prefix_v4"), "{busy}");
}

/// The tour runs jamc from the release build the README made for jamd, and
/// the README quotes what a shell would expand.
#[test]
fn the_readme_commands_run_as_written() {
    let readme = common::repo_file("README.md");
    for line in readme.lines().filter(|l| l.contains("cargo run")) {
        assert!(
            line.contains("--release"),
            "a debug build behind the reader's back: {line}"
        );
    }
    // `~` and `@` ranges unquoted would be expanded or split by the shell.
    for bad in ["(`~:0.5`", " ~:", "`@1:3`,"] {
        assert!(!readme.contains(bad), "unquoted range {bad}");
    }
    assert!(readme.contains("--warning '~:0.5'"));
    // Nothing points outside the repository, or at a session of its making.
    assert!(!readme.contains("../shared"));
    assert!(!readme.contains("session's"));
    assert!(readme.contains("it takes minutes"));
}

/// jamd.8's FILES names each example the package installs under
/// /usr/share/doc/jamd/examples/, where it installs it.
#[test]
fn jamd_8_names_every_example_the_package_installs() {
    let manifest: toml::Table = common::repo_file("Cargo.toml").parse().unwrap();
    let page = common::repo_file("man/jamd.8");
    let files = page
        .split(".Sh FILES")
        .nth(1)
        .and_then(|rest| rest.split(".Sh ").next())
        .expect("FILES");
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    let mut named = 0;
    for asset in assets {
        let asset = asset.as_array().unwrap();
        let (source, dest) = (asset[0].as_str().unwrap(), asset[1].as_str().unwrap());
        let Some(under) = dest.strip_prefix("usr/share/doc/jamd/examples/") else {
            continue;
        };
        let file = source.rsplit('/').next().unwrap();
        let shown = if dest.ends_with('/') {
            format!("{under}{file}")
        } else {
            under.to_owned()
        };
        assert!(
            files.contains(&shown),
            "jamd.8 FILES omits examples/{shown}"
        );
        named += 1;
    }
    assert!(named >= 5, "{named} examples");
}

/// README and jamd.8 give the same PromQL queries.
#[test]
fn the_promql_of_readme_and_jamd_8_is_the_same() {
    let queries = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| l.contains("{job=\"jamd\"}") && !l.starts_with('-') && !l.contains("expr:"))
            .map(str::to_owned)
            .collect()
    };
    let readme = queries(&common::repo_file("README.md"));
    let page = queries(&common::repo_file("man/jamd.8"));
    assert!(readme.len() >= 2, "{readme:?}");
    assert_eq!(readme, page);
}
