//! Sharper edges of the second release, each against a real jamd: what a
//! reply shows, how refusals are logged and counted, reloads, signals, the
//! metrics and the configuration checks (see jamd(8) and jamd.toml(5)).

mod common;

use std::time::{Duration, SystemTime};

use common::Jamd;

/// `%+` shows nanoseconds, so each reply is the instant it was asked at: no
/// reply shows an instant that had passed when its request was sent.
#[test]
fn an_rfc3339_format_shows_the_instant_of_each_request() {
    let jamd = Jamd::start("[time]\nformat = \"%+\"\ntimezone = \"UTC\"\n");
    let mut client = jamd.connect();
    let mut shown = Vec::new();
    for _ in 0..6 {
        let asked = SystemTime::now();
        let reply = client.ask("TIME");
        let text = reply
            .strip_prefix("JAM ")
            .unwrap_or_else(|| panic!("{reply}"));
        let at =
            chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let at = SystemTime::from(at);
        assert!(at >= asked, "{text} is before the request was sent");
        shown.push(text.to_owned());
        std::thread::sleep(Duration::from_millis(120));
    }
    shown.dedup();
    assert_eq!(shown.len(), 6, "{shown:?}");
}
