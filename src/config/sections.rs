//! The section readers: one function per section (`[server]`, `[log]`…)
//! reading its keys with [`Keys`], and the checks that span keys (the
//! listeners no two of which may share an address, port and transport).

use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use super::reader::{Invalid, Keys, Value};
use super::*;
use crate::access::Prefix;
use crate::clock::{TimeFormat, Zone};
use crate::listener::{show_addr, Transport};
/// `metrics.listen`: `""` or an address with a port. Only an address: the
/// socket must be exactly where the operator said, not wherever a host name
/// resolves today.
///
/// `":PORT"` is every address, as node_exporter's `--web.listen-address`
/// takes it: `[::]:PORT`, which also takes IPv4 (unless the system sets
/// `net.ipv6.bindv6only`).
fn parse_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let every = s
        .strip_prefix(':')
        .and_then(|port| port.parse::<u16>().ok())
        .map(|port| SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)));
    every.or_else(|| s.parse().ok()).map(Some).ok_or_else(|| {
        format!(
            "expected an address and port such as \"127.0.0.1:9645\" or \"[::1]:9645\", \
             \":9645\" for every address, or \"\" for off, found the string {s:?}"
        )
    })
}

fn read_metrics(mut keys: Keys<'_, '_>, taken: &mut Taken) -> Result<MetricsConfig, Invalid> {
    let mut m = MetricsConfig::default();
    keys.read("listen", &mut m.listen, |v| {
        let listen = v.parse_str(
            "an address and port such as \"127.0.0.1:9645\", or \"\" for off",
            parse_listen,
        )?;
        if let Some(addr) = listen {
            taken.claim(v, addr, Transport::Tcp)?;
        }
        Ok(listen)
    })?;
    keys.finish()?;
    Ok(m)
}

fn read_daytime(mut keys: Keys<'_, '_>, taken: &mut Taken) -> Result<DaytimeConfig, Invalid> {
    let mut d = DaytimeConfig::default();
    keys.read("listen", &mut d.listen, |v| {
        read_listeners(v, Transport::Tcp, taken)
    })?;
    keys.read("listen_udp", &mut d.listen_udp, |v| {
        read_listeners(v, Transport::Udp, taken)
    })?;
    keys.read("format", &mut d.format, |v| {
        v.parse_str(
            "a strftime format such as \"%a %b %e %H:%M:%S %Y\"",
            TimeFormat::parse,
        )
    })?;
    keys.finish()?;
    Ok(d)
}

fn read_rfc868(mut keys: Keys<'_, '_>, taken: &mut Taken) -> Result<Rfc868Config, Invalid> {
    let mut r = Rfc868Config::default();
    keys.read("listen", &mut r.listen, |v| {
        read_listeners(v, Transport::Tcp, taken)
    })?;
    keys.read("listen_udp", &mut r.listen_udp, |v| {
        read_listeners(v, Transport::Udp, taken)
    })?;
    keys.finish()?;
    Ok(r)
}

/// A `listen` / `listen_udp` list: `"ADDR:PORT"` entries, none of them an
/// address, port and transport another listener has.
fn read_listeners(
    v: &Value<'_, '_>,
    transport: Transport,
    taken: &mut Taken,
) -> Result<Vec<SocketAddr>, Invalid> {
    const WHAT: &str = "\"ADDR:PORT\", such as \"0.0.0.0:13\" or \"[::]:13\"";
    let items = v.list("a list of \"ADDR:PORT\" entries, such as [\"0.0.0.0:13\", \"[::]:13\"]")?;
    let mut list = Vec::with_capacity(items.len());
    for item in &items {
        let addr = item.parse_str(WHAT, |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                format!("expected {WHAT}, found the string {s:?} (an IP address, not a host name, and a port)")
            })
        })?;
        taken.claim(item, addr, transport)?;
        list.push(addr);
    }
    Ok(list)
}

/// The listeners read so far, each with the key that named it.
struct Taken {
    listeners: Vec<(SocketAddr, Transport, String)>,
}

impl Taken {
    /// The JAM listeners `server.bind` × `server.port` make.
    fn of_jam(server: &ServerConfig) -> Taken {
        Taken {
            listeners: server
                .bind
                .iter()
                .map(|ip| {
                    (
                        SocketAddr::new(*ip, server.port),
                        Transport::Tcp,
                        "server.bind and server.port".to_owned(),
                    )
                })
                .collect(),
        }
    }

    /// Takes `addr` over `transport` for the key of `v`, unless another key
    /// has it. Port 0 (the kernel picks a free port) is never a clash.
    fn claim(
        &mut self,
        v: &Value<'_, '_>,
        addr: SocketAddr,
        transport: Transport,
    ) -> Result<(), Invalid> {
        // The same address, or one a wildcard of its family covers (binding
        // both on one port fails with "Address already in use").
        let clash = |other: &SocketAddr| {
            other.port() == addr.port()
                && other.is_ipv4() == addr.is_ipv4()
                && (*other == addr || other.ip().is_unspecified() || addr.ip().is_unspecified())
        };
        let same = self
            .listeners
            .iter()
            .find(|(a, t, _)| addr.port() != 0 && *t == transport && clash(a));
        if let Some((other, _, key)) = same {
            let what = match (*other == addr, key == v.key()) {
                (true, true) => "is listed twice".to_owned(),
                (true, false) => format!("is taken by {key} already"),
                (false, _) => format!("clashes with {} of {key}", show_addr(other)),
            };
            return Err(v.error(format_args!(
                "{} ({transport}) {what}: each address, port and transport can have one listener",
                show_addr(&addr)
            )));
        }
        if self.listeners.len() >= MAX_LISTENERS {
            return Err(v.error(format_args!(
                "more than {MAX_LISTENERS} listeners in all; jamd listens on at most {MAX_LISTENERS}"
            )));
        }
        self.listeners.push((addr, transport, v.key().to_owned()));
        Ok(())
    }
}

/// Reads a whole document.
pub(super) fn read_config(mut root: Keys<'_, '_>) -> Result<Config, Invalid> {
    let mut c = Config::default();
    let mut zone_given = false;
    root.read("server", &mut c.server, |v| read_server(v.table()?))?;
    root.read("time", &mut c.time, |v| {
        let keys = v.table()?;
        zone_given = keys.has("timezone");
        read_time(keys)
    })?;
    root.read("log", &mut c.log, |v| read_log(v.table()?))?;
    root.read("access", &mut c.access, |v| read_access(v.table()?))?;
    root.read("proxy", &mut c.proxy, |v| read_proxy(v.table()?))?;
    // Every listener's address, port and transport, to refuse the same
    // one twice across sections.
    let mut taken = Taken::of_jam(&c.server);
    root.read("metrics", &mut c.metrics, |v| {
        read_metrics(v.table()?, &mut taken)
    })?;
    root.read("daytime", &mut c.daytime, |v| {
        read_daytime(v.table()?, &mut taken)
    })?;
    root.read("rfc868", &mut c.rfc868, |v| {
        read_rfc868(v.table()?, &mut taken)
    })?;
    root.finish()?;
    if !zone_given {
        // The default "local", resolved strictly: a broken TZ or
        // /etc/localtime is an error, never UTC in silence.
        c.time.timezone = Zone::parse("local").map_err(|why| Invalid {
            span: None,
            message: format!("time.timezone (default \"local\"): {why}"),
        })?;
    }
    Ok(c)
}

fn read_server(mut keys: Keys<'_, '_>) -> Result<ServerConfig, Invalid> {
    let mut s = ServerConfig::default();
    keys.read("port", &mut s.port, |v| v.port())?;
    keys.read("bind", &mut s.bind, read_bind)?;
    keys.read("backlog", &mut s.backlog, |v| {
        v.integer(1, i32::MAX.into(), "a listen backlog")
    })?;
    keys.read("reuse_address", &mut s.reuse_address, |v| v.boolean())?;
    keys.read("max_connections", &mut s.max_connections, |v| {
        v.integer(1, 10_000_000, "a number of connections")
    })?;
    keys.read(
        "max_connections_per_source",
        &mut s.max_connections_per_source,
        |v| {
            v.integer(0, 10_000_000, "a number of connections (0: no limit)")
                .map(NonZeroUsize::new)
        },
    )?;
    keys.read("source_prefix_v4", &mut s.source_prefix_v4, |v| {
        v.integer(0, 32, "an IPv4 prefix length")
    })?;
    keys.read("source_prefix_v6", &mut s.source_prefix_v6, |v| {
        v.integer(0, 128, "an IPv6 prefix length")
    })?;
    keys.read(
        "connection_rate_per_source",
        &mut s.connection_rate_per_source,
        |v| {
            v.integer(
                0,
                1_000_000,
                "a number of connections a second (0: no limit)",
            )
            .map(NonZeroU32::new)
        },
    )?;
    keys.read(
        "connection_burst_per_source",
        &mut s.connection_burst_per_source,
        |v| v.integer(1, 1_000_000, "a number of connections"),
    )?;
    keys.read("max_tracked_sources", &mut s.max_tracked_sources, |v| {
        v.integer(1, 100_000_000, "a number of sources")
    })?;
    keys.read("idle_timeout", &mut s.idle_timeout, |v| v.seconds_or_off())?;
    keys.read("max_line_bytes", &mut s.max_line_bytes, |v| {
        v.integer(4, 65_536, "a number of bytes")
    })?;
    keys.read("shutdown_timeout", &mut s.shutdown_timeout, |v| v.seconds())?;
    keys.read("workers", &mut s.workers, |v| {
        let n = v.integer(0, 1024, "a number of threads (0: one per CPU)")?;
        Ok(NonZeroUsize::new(n).map_or(Workers::PerCpu, Workers::Count))
    })?;
    keys.read("user", &mut s.user, |v| {
        v.parse_str("a user name such as \"nobody\", or \"\"", account_name)
    })?;
    keys.read("group", &mut s.group, |v| {
        v.parse_str("a group name such as \"nogroup\", or \"\"", account_name)
    })?;
    keys.read("sandbox", &mut s.sandbox, |v| v.boolean())?;
    keys.finish()?;
    Ok(s)
}

/// `server.user` / `server.group`: a name to look up at start, or "".
fn account_name(s: &str) -> Result<String, String> {
    if s.contains(['\0', ':', '/']) || s.chars().any(char::is_whitespace) {
        return Err(format!(
            "expected a user or group name (no spaces, ':' or '/'), found the string {s:?}"
        ));
    }
    Ok(s.to_owned())
}

fn read_access(mut keys: Keys<'_, '_>) -> Result<AccessConfig, Invalid> {
    let mut a = AccessConfig::default();
    keys.read("allow", &mut a.allow, read_prefixes)?;
    keys.read("deny", &mut a.deny, read_prefixes)?;
    keys.finish()?;
    Ok(a)
}

fn read_proxy(mut keys: Keys<'_, '_>) -> Result<ProxyConfig, Invalid> {
    let mut p = ProxyConfig::default();
    keys.read("trusted", &mut p.trusted, read_prefixes)?;
    // Not 0: a balancer that never sends its header would hold its
    // connection (and one of max_connections) for ever.
    keys.read("header_timeout", &mut p.header_timeout, |v| {
        v.integer(1, 3600, "a number of seconds")
            .map(Duration::from_secs)
    })?;
    keys.finish()?;
    Ok(p)
}

/// `allow` / `deny` / `trusted`: addresses or prefixes; each error says
/// what was meant.
fn read_prefixes(v: &Value<'_, '_>) -> Result<Vec<Prefix>, Invalid> {
    const WHAT: &str = "an address or prefix such as \"192.0.2.7\" or \"10.0.0.0/8\"";
    let items =
        v.list("a list of addresses or prefixes, such as [\"10.0.0.0/8\", \"2001:db8::/32\"]")?;
    items
        .iter()
        .map(|item| item.parse_str(WHAT, |s| s.parse::<Prefix>().map_err(|e| e.to_string())))
        .collect()
}

/// `bind`: a list of IP addresses that can all be listened on at once.
fn read_bind(v: &Value<'_, '_>) -> Result<Vec<IpAddr>, Invalid> {
    let items = v.list("a list of IP addresses, such as [\"127.0.0.1\", \"::1\"]")?;
    let mut list = Vec::with_capacity(items.len());
    for item in &items {
        list.push(item.parse_str(
            "an IP address such as \"127.0.0.1\" or \"::1\"",
            parse_address,
        )?);
    }
    check_bind(&list).map_err(|(i, why)| match i {
        Some(i) => items[i].error(why),
        None => v.error(why),
    })?;
    Ok(list)
}

/// One `bind` address; a host name is refused with a reason, as jamd binds
/// before it could trust any resolver.
pub(crate) fn parse_address(s: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip);
    }
    let host_like = s.chars().any(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if host_like {
        Err(format!(
            "{s:?} is a host name; host names are not allowed here, give an IP address such as \"127.0.0.1\" or \"::1\""
        ))
    } else {
        Err(format!(
            "expected an IP address such as \"127.0.0.1\" or \"::1\", found the string {s:?}"
        ))
    }
}

/// Whether jamd can listen on all these addresses at once, on one port.
/// The error names the offending entry (by index) when there is one.
pub(crate) fn check_bind(list: &[IpAddr]) -> Result<(), (Option<usize>, String)> {
    if list.is_empty() {
        return Err((
            None,
            "the list is empty, so jamd would listen on no address; give at least one, such as \"127.0.0.1\"".into(),
        ));
    }
    if list.len() > MAX_LISTENERS {
        return Err((
            Some(MAX_LISTENERS),
            format!(
                "{} addresses; jamd listens on at most {MAX_LISTENERS}",
                list.len()
            ),
        ));
    }
    for (i, ip) in list.iter().enumerate() {
        if list[..i].contains(ip) {
            return Err((Some(i), format!("{ip} is listed twice")));
        }
        // A wildcard already holds the port for every address of its family:
        // binding both on one port fails with "Address already in use".
        let same_family = |other: &IpAddr| other.is_ipv4() == ip.is_ipv4();
        if let Some(other) = list[..i]
            .iter()
            .find(|o| same_family(o) && (o.is_unspecified() || ip.is_unspecified()))
        {
            let (any, one) = if other.is_unspecified() {
                (other, ip)
            } else {
                (ip, other)
            };
            return Err((
                Some(i),
                format!(
                    "{any} and {one} cannot both listen on one port ({any} already covers {one}); keep one of them"
                ),
            ));
        }
    }
    Ok(())
}

fn read_time(mut keys: Keys<'_, '_>) -> Result<TimeConfig, Invalid> {
    let mut t = TimeConfig::default();
    keys.read("format", &mut t.format, |v| {
        v.parse_str("a strftime format such as \"%H:%M:%S\"", TimeFormat::parse)
    })?;
    keys.read("timezone", &mut t.timezone, |v| {
        v.parse_str(
            "\"local\", \"UTC\", an offset like \"+07:00\" or a name like \"Asia/Jakarta\"",
            Zone::parse,
        )
    })?;
    keys.finish()?;
    Ok(t)
}

fn read_log(mut keys: Keys<'_, '_>) -> Result<LogConfig, Invalid> {
    use Facility::*;
    let mut l = LogConfig::default();
    keys.read("target", &mut l.target, |v| {
        v.one_of(&[
            ("syslog", LogTarget::Syslog),
            ("stderr", LogTarget::Stderr),
            ("both", LogTarget::Both),
        ])
    })?;
    keys.read("facility", &mut l.facility, |v| {
        v.one_of(&[
            ("daemon", Daemon),
            ("user", User),
            ("local0", Local0),
            ("local1", Local1),
            ("local2", Local2),
            ("local3", Local3),
            ("local4", Local4),
            ("local5", Local5),
            ("local6", Local6),
            ("local7", Local7),
        ])
    })?;
    keys.read("syslog_socket", &mut l.syslog_socket, |v| {
        v.parse_str(
            "an absolute socket path (\"/dev/log\") or udp://HOST:PORT",
            SyslogSocket::parse,
        )
    })?;
    keys.read("level", &mut l.level, |v| {
        let level = v.one_of(&[
            ("error", Level::Error),
            ("warn", Level::Warn),
            ("info", Level::Info),
            ("debug", Level::Debug),
        ]);
        match level {
            // syslog's own name for the level (LOG_WARNING, `logger -p
            // daemon.warning`) means the same.
            Err(_) if v.value.get_ref().as_str() == Some("warning") => Ok(Level::Warn),
            level => level,
        }
    })?;
    keys.read("connections", &mut l.connections, |v| v.boolean())?;
    keys.read("health_checks", &mut l.health_checks, |v| v.boolean())?;
    keys.finish()?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_for_tests as parse;

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"
[server]
port = 4500
bind = ["127.0.0.1", "::1"]
backlog = 64
reuse_address = false
max_connections = 10
max_connections_per_source = 2
idle_timeout = 7
max_line_bytes = 100
shutdown_timeout = 3
workers = 2
[time]
format = "%H:%M:%S%.3f"
timezone = "+07:00"
[log]
target = "both"
facility = "local3"
syslog_socket = "udp://127.0.0.1:514"
level = "debug"
connections = false
[metrics]
listen = "[::1]:9645"
"#,
        )
        .unwrap();
        assert_eq!(c.server.port, 4500);
        assert_eq!(c.server.bind.len(), 2);
        assert_eq!(c.server.backlog, 64);
        assert!(!c.server.reuse_address);
        assert_eq!(c.server.max_connections, 10);
        assert_eq!(c.server.max_connections_per_source, NonZeroUsize::new(2));
        assert_eq!(c.server.idle_timeout, Some(Duration::from_secs(7)));
        assert_eq!(c.server.max_line_bytes, 100);
        assert_eq!(c.server.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(
            c.server.workers,
            Workers::Count(NonZeroUsize::new(2).unwrap())
        );
        assert_eq!(c.time.timezone.name(), "+07:00");
        assert_eq!(c.log.target, LogTarget::Both);
        assert_eq!(c.log.facility, Facility::Local3);
        let SyslogSocket::Udp(collector) = &c.log.syslog_socket else {
            panic!("{:?}", c.log.syslog_socket);
        };
        assert_eq!(
            (collector.host(), collector.port().get()),
            ("127.0.0.1", 514)
        );
        assert_eq!(c.log.level, Level::Debug);
        assert!(!c.log.connections);
        assert_eq!(c.metrics.listen, Some("[::1]:9645".parse().unwrap()));
    }

    #[test]
    fn metrics_listen_is_off_or_an_address_with_a_port() {
        assert_eq!(Config::default().metrics.listen, None);
        let c = parse("[metrics]\nlisten = \"\"\n").unwrap();
        assert_eq!(c.metrics.listen, None);
        let c = parse("[metrics]\nlisten = \"127.0.0.1:9645\"\n").unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9645".parse().unwrap()));
        for bad in [
            "localhost:9645",
            "127.0.0.1",
            "9645",
            ":",
            ":x",
            ":70000",
            "::1:9645",
        ] {
            let e = parse(&format!("[metrics]\nlisten = \"{bad}\"\n")).unwrap_err();
            assert!(e.starts_with("jamd.toml:2:10: metrics.listen: expected an address and port such as \"127.0.0.1:9645\""), "{e}");
            assert!(e.contains(&format!("found the string {bad:?}")), "{e}");
        }
        let c = parse("[metrics]\nlisten = \":9645\"\n").unwrap();
        assert_eq!(
            c.metrics.listen,
            Some("[::]:9645".parse().unwrap()),
            "every address"
        );
        // -t prints it so that the output is a valid file again.
        let c = parse("[metrics]\nlisten = \"[::1]:9645\"\n").unwrap();
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(again, c);
        assert!(Config::default()
            .to_toml()
            .contains("[metrics]\nlisten = \"\"\n"));
    }

    #[test]
    fn daytime_and_rfc868_listeners_are_read() {
        let c = parse(
            "[daytime]\nlisten = [\"0.0.0.0:13\", \"[::]:13\"]\nlisten_udp = [\"127.0.0.1:13\"]\nformat = \"%T\"\n\
             [rfc868]\nlisten = [\"0.0.0.0:37\"]\nlisten_udp = [\"[::1]:37\"]\n",
        )
        .unwrap();
        assert_eq!(c.daytime.format.as_str(), "%T");
        let shown: Vec<String> = c.listeners().iter().map(|l| l.to_string()).collect();
        assert_eq!(
            shown,
            [
                "jam on 0.0.0.0:45000 (tcp)",
                "jam on [::]:45000 (tcp)",
                "daytime on 0.0.0.0:13 (tcp)",
                "daytime on [::]:13 (tcp)",
                "daytime on 127.0.0.1:13 (udp)",
                "rfc868 on 0.0.0.0:37 (tcp)",
                "rfc868 on [::1]:37 (udp)",
            ]
        );
        // -t prints them so that the output is a valid file again.
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
        let d = Config::default();
        assert!(d.daytime.listen.is_empty() && d.rfc868.listen_udp.is_empty());
        assert_eq!(d.daytime.format.as_str(), "%a %b %e %H:%M:%S %Y");
    }

    #[test]
    fn a_listener_entry_must_be_addr_port() {
        for bad in ["localhost:13", "0.0.0.0", "13", "::1:13", "[::1]"] {
            let e = parse(&format!("[rfc868]\nlisten_udp = [\"{bad}\"]\n")).unwrap_err();
            assert!(
                e.starts_with("jamd.toml:2:15: rfc868.listen_udp: expected \"ADDR:PORT\""),
                "{e}"
            );
            assert!(e.contains(&format!("found the string {bad:?}")), "{e}");
        }
        let e = parse("[daytime]\nlisten = \"0.0.0.0:13\"\n").unwrap_err();
        assert!(e.contains("daytime.listen: expected a list"), "{e}");
    }

    #[test]
    fn the_same_address_port_and_transport_twice_is_an_error_naming_the_key() {
        let e = parse("[daytime]\nlisten = [\"127.0.0.1:13\", \"127.0.0.1:13\"]\n").unwrap_err();
        assert_eq!(e, "jamd.toml:2:27: daytime.listen: 127.0.0.1:13 (tcp) is listed twice: each address, port and transport can have one listener");
        let e = parse(
            "[daytime]\nlisten_udp = [\"127.0.0.1:37\"]\n[rfc868]\nlisten_udp = [\"127.0.0.1:37\"]\n",
        )
        .unwrap_err();
        assert!(e.starts_with("jamd.toml:4:15: rfc868.listen_udp: 127.0.0.1:37 (udp) is taken by daytime.listen_udp already"), "{e}");
        let e = parse("[server]\nport = 13\n[daytime]\nlisten = [\"[::]:13\"]\n").unwrap_err();
        assert!(
            e.contains(
                "daytime.listen: [::]:13 (tcp) is taken by server.bind and server.port already"
            ),
            "{e}"
        );
        let e = parse(
            "[metrics]\nlisten = \"127.0.0.1:9645\"\n[rfc868]\nlisten = [\"0.0.0.0:9645\"]\n",
        )
        .unwrap_err();
        assert!(
            e.contains(
                "rfc868.listen: 0.0.0.0:9645 (tcp) clashes with 127.0.0.1:9645 of metrics.listen"
            ),
            "{e}"
        );
        let e =
            parse("[server]\nport = 9645\n[metrics]\nlisten = \"127.0.0.1:9645\"\n").unwrap_err();
        assert!(e.contains("metrics.listen: 127.0.0.1:9645 (tcp) clashes with 0.0.0.0:9645 of server.bind and server.port"), "{e}");
        // Another transport, another family, or port 0 (the kernel picks) is no clash.
        assert!(parse("[daytime]\nlisten = [\"127.0.0.1:13\", \"[::]:13\"]\nlisten_udp = [\"127.0.0.1:13\"]\n").is_ok());
        assert!(parse("[server]\nport = 0\nbind = [\"127.0.0.1\"]\n[daytime]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n").is_ok());
    }

    #[test]
    fn access_and_source_keys_are_read() {
        let c = parse(
            r#"
[server]
source_prefix_v4 = 24
source_prefix_v6 = 48
connection_rate_per_source = 5
connection_burst_per_source = 10
max_tracked_sources = 256
[access]
allow = ["10.0.0.0/8", "::ffff:192.0.2.7"]
deny = ["10.1.2.0/24"]
"#,
        )
        .unwrap();
        assert_eq!(c.server.source_prefix_v4, 24);
        assert_eq!(c.server.source_prefix_v6, 48);
        assert_eq!(c.server.connection_rate_per_source, NonZeroU32::new(5));
        assert_eq!(c.server.connection_burst_per_source, 10);
        assert_eq!(c.server.max_tracked_sources, 256);
        let list = c.access.list();
        assert!(list.decide("10.9.9.9".parse().unwrap()).is_allowed());
        assert!(!list.decide("10.1.2.9".parse().unwrap()).is_allowed());
        assert!(list.decide("192.0.2.7".parse().unwrap()).is_allowed());
        let shown = c.to_toml();
        assert!(
            shown.contains(
                "[access]\nallow = [\"10.0.0.0/8\", \"192.0.2.7\"]\ndeny = [\"10.1.2.0/24\"]"
            ),
            "{shown}"
        );
        assert!(shown.contains("max_tracked_sources = 256"), "{shown}");
    }

    #[test]
    fn proxy_keys_are_read() {
        let c =
            parse("[proxy]\ntrusted = [\"10.0.0.0/8\", \"::1\"]\nheader_timeout = 5\n").unwrap();
        assert_eq!(c.proxy.header_timeout, Duration::from_secs(5));
        assert!(c.proxy.trusts("10.9.8.7".parse().unwrap()));
        assert!(c.proxy.trusts("::ffff:10.0.0.1".parse().unwrap()));
        assert!(c.proxy.trusts("::1".parse().unwrap()));
        assert!(!c.proxy.trusts("192.0.2.1".parse().unwrap()));
        assert!(!Config::default().proxy.trusts("127.0.0.1".parse().unwrap()));
    }

    /// 0 and "off" in the file are kinds, not numbers, once read; `jamd -t`
    /// prints them back as the file gives them.
    #[test]
    fn zero_means_per_cpu_or_off_and_prints_back_as_zero() {
        let c = parse(
            "[server]\nworkers = 0\nidle_timeout = 0\nmax_connections_per_source = 0\nconnection_rate_per_source = 0\n",
        )
        .unwrap();
        assert_eq!(c.server.workers, Workers::PerCpu);
        assert!(c.server.worker_count() >= 1);
        assert_eq!(c.server.idle_timeout, None);
        assert_eq!(c.server.max_connections_per_source, None);
        assert_eq!(c.server.connection_rate_per_source, None);
        let toml = c.to_toml();
        for line in [
            "workers = 0\n",
            "idle_timeout = 0\n",
            "max_connections_per_source = 0\n",
            "connection_rate_per_source = 0\n",
        ] {
            assert!(toml.contains(line), "{line:?} not in:\n{toml}");
        }
        assert_eq!(parse(&toml).unwrap(), c);
    }

    #[test]
    fn log_level_warning_is_warn() {
        assert_eq!(
            parse("[log]\nlevel = \"warning\"\n").unwrap().log.level,
            Level::Warn
        );
        let e = parse("[log]\nlevel = \"trace\"\n").unwrap_err();
        assert!(e.contains("expected one of \"error\", \"warn\""), "{e}");
    }

    #[test]
    fn bad_values_are_errors_that_say_where_and_what_was_expected() {
        // (file, its whole error)
        let cases = [
            (
                "[metrics]\nlisten = 9645\n",
                "jamd.toml:2:10: metrics.listen: expected an address and port such as \"127.0.0.1:9645\", or \"\" for off, found 9645",
            ),
            (
                "[access]\ndeny = [\"192.0.2.7\", \"10.1.2.3/8\"]\n",
                "jamd.toml:2:22: access.deny: \"10.1.2.3/8\" has bits set past its length: did you mean 10.0.0.0/8?",
            ),
            (
                "[access]\nallow = [\"gateway.example\"]\n",
                "jamd.toml:2:10: access.allow: \"gateway.example\" is not an IP address or prefix: write an address like 192.0.2.7 or 2001:db8::1, or a prefix like 10.0.0.0/8 (host names are not resolved)",
            ),
            (
                "[access]\nallow = [\"::/200\"]\n",
                "jamd.toml:2:10: access.allow: \"::/200\": the prefix length must be 0-128 for an IPv6 address",
            ),
            (
                "[access]\nallow = \"10.0.0.0/8\"\n",
                "jamd.toml:2:9: access.allow: expected a list of addresses or prefixes, such as [\"10.0.0.0/8\", \"2001:db8::/32\"], found the string \"10.0.0.0/8\"",
            ),
            (
                "[server]\nsource_prefix_v4 = 33\n",
                "jamd.toml:2:20: server.source_prefix_v4: expected an IPv4 prefix length (0-32), found 33",
            ),
            (
                "[server]\nconnection_burst_per_source = 0\n",
                "jamd.toml:2:31: server.connection_burst_per_source: expected a number of connections (1-1000000), found 0",
            ),
            (
                "[proxy]\ntrusted = [\"10.1.2.3/8\"]\n",
                "jamd.toml:2:12: proxy.trusted: \"10.1.2.3/8\" has bits set past its length: did you mean 10.0.0.0/8?",
            ),
            (
                "[proxy]\nheader_timeout = 0\n",
                "jamd.toml:2:18: proxy.header_timeout: expected a number of seconds (1-3600), found 0",
            ),
            (
                "[server]\nport = \"45000\"\n",
                "jamd.toml:2:8: server.port: expected a port number (0-65535), found the string \"45000\"",
            ),
            (
                "[server]\nreuse_address = 1\n",
                "jamd.toml:2:17: server.reuse_address: expected true or false, found 1",
            ),
            (
                "[server]\nport = 70000\n",
                "jamd.toml:2:8: server.port: expected a port number (0-65535), found 70000",
            ),
            (
                "[server]\nport = -1\n",
                "jamd.toml:2:8: server.port: expected a port number (0-65535), found -1",
            ),
            (
                "[server]\nmax_line_bytes = 0\n",
                "jamd.toml:2:18: server.max_line_bytes: expected a number of bytes (4-65536), found 0",
            ),
            (
                "[server]\nmax_connections = 0\n",
                "jamd.toml:2:19: server.max_connections: expected a number of connections (1-10000000), found 0",
            ),
            (
                "[server]\nbacklog = 0\n",
                "jamd.toml:2:11: server.backlog: expected a listen backlog (1-2147483647), found 0",
            ),
            (
                "[server]\nidle_timeout = -5\n",
                "jamd.toml:2:16: server.idle_timeout: expected a number of seconds (0-31536000), found -5",
            ),
            (
                "[server]\nbind = [\"127.0.0.1\", \"localhost\"]\n",
                "jamd.toml:2:22: server.bind: \"localhost\" is a host name; host names are not allowed here, give an IP address such as \"127.0.0.1\" or \"::1\"",
            ),
            (
                "[time]\nformat = \"%H:%M:%\"\n",
                "jamd.toml:2:10: time.format: invalid strftime format \"%H:%M:%\"",
            ),
            (
                "[time]\ntimezone = \"Nowhere/Atlantis\"\n",
                "jamd.toml:2:12: time.timezone: unknown time zone \"Nowhere/Atlantis\"; expected \"local\", \"UTC\", an offset like \"+07:00\" or a name like \"Asia/Jakarta\"",
            ),
            (
                "[log]\ntarget = \"file\"\n",
                "jamd.toml:2:10: log.target: expected one of \"syslog\", \"stderr\", \"both\", found the string \"file\"",
            ),
            (
                "[log]\nfacility = \"kern\"\n",
                "jamd.toml:2:12: log.facility: expected one of \"daemon\", \"user\", \"local0\", \"local1\", \"local2\", \"local3\", \"local4\", \"local5\", \"local6\", \"local7\", found the string \"kern\"",
            ),
            (
                "[log]\nlevel = \"trace\"\n",
                "jamd.toml:2:9: log.level: expected one of \"error\", \"warn\", \"info\", \"debug\", found the string \"trace\"",
            ),
            (
                "[log]\nsyslog_socket = \"dev/log\"\n",
                "jamd.toml:2:17: log.syslog_socket: expected an absolute socket path (\"/dev/log\") or udp://HOST:PORT, found the string \"dev/log\"",
            ),
            (
                "[log]\nsyslog_socket = \"udp://host\"\n",
                "jamd.toml:2:17: log.syslog_socket: expected an absolute socket path (\"/dev/log\") or udp://HOST:PORT, found the string \"udp://host\"",
            ),
        ];
        for (file, error) in cases {
            assert_eq!(parse(file).expect_err(file), error, "{file:?}");
        }
    }
}
