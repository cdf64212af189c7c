//! Fuzz target for the configuration reader (`jamd::config::Config::parse`,
//! TOML text to settings, `[access]` and `[proxy]` lists included). It
//! checks what `jamd -t` and a reload rely on:
//!
//! - any bytes get settings or an error in words, never a panic (bytes that
//!   are not UTF-8 are refused before TOML sees them, as `Config::load`
//!   does);
//! - an error names a place inside the text and says something;
//! - the effective settings `jamd -t` prints read back as the same settings;
//! - the access list decides for any address, the same way for an IPv4
//!   client and its IPv4-mapped IPv6 form.
//!
//! Input layout: the file's bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use jamd::config::{Config, ConfigError};

/// Checks one fuzz input; panics (which the fuzzer records) on a violation.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("jamd.toml");
    let config = match Config::parse(text, path) {
        Ok(config) => config,
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("jamd.toml"), "{shown}");
            if let ConfigError::Invalid { message, place, .. } = &e {
                assert!(!message.is_empty(), "an empty message for {text:?}");
                if let Some((line, column)) = *place {
                    assert!(line >= 1 && column >= 1, "{shown}");
                    assert!(line <= text.split('\n').count(), "{shown}");
                }
            }
            return;
        }
    };
    let shown = config.to_toml();
    match Config::parse(&shown, path) {
        Ok(again) => assert_eq!(again, config, "-t printed {shown:?}"),
        Err(e) => panic!("-t printed {shown:?}, which reads back as: {e}"),
    }
    let _ = config.warnings();
    let list = config.access.list();
    let seeds: [u32; 4] = [0, 0x7f00_0001, 0x0a01_0203, u32::MAX];
    for v4 in seeds {
        let ip = Ipv4Addr::from(v4);
        let d = list.decide(IpAddr::V4(ip));
        assert_eq!(list.decide(IpAddr::V6(ip.to_ipv6_mapped())), d);
        let _ = config.proxy.trusts(IpAddr::V4(ip));
        let _ = config.server.source_of(IpAddr::V4(ip));
    }
    for v6 in [
        Ipv6Addr::LOCALHOST,
        Ipv6Addr::UNSPECIFIED,
        "2001:db8::1".parse().unwrap(),
    ] {
        let _ = list.decide(IpAddr::V6(v6));
        let _ = config.server.source_of(IpAddr::V6(v6));
    }
    let _ = config.server.source_limits();
}

jamd_fuzz::main!(check);
