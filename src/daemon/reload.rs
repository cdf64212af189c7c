//! SIGHUP: re-read the configuration and put it in effect. A broken file
//! keeps the previous configuration. Keys that only a restart can apply keep
//! their running values, so that what is running stays described truthfully,
//! and a warning names each one that changed.
//!
//! At `level = "debug"` each step is logged: the file read, every key that
//! changed with its old and new value, and the generation put in effect.

use crate::config::Config;
use crate::log::Logger;
use crate::metrics::Reload;
use crate::server::Server;

use super::config_file::ConfigFile;

/// Re-reads the configuration and puts it in effect, logging what happened.
pub fn reload(file: &ConfigFile, server: &Server, log: &Logger, stdio_is_client: bool) {
    #[cfg(debug_assertions)]
    super::confine::debug_probe(log);
    log.debug(format!("reload: reading {}", file.path().display()));
    let mut new = match file.load() {
        Ok(loaded) => {
            if loaded.missing_default {
                log.debug(format!(
                    "reload: no configuration file at {}; using built-in defaults",
                    file.path().display()
                ));
            }
            loaded.config
        }
        Err(why) => {
            server.count_reload(Reload::Failed);
            log.error(format!(
                "reload failed: {why}; keeping the previous configuration"
            ));
            return;
        }
    };
    let running = server.runtime();
    let needs_restart = keep_running(&mut new, &running.config);
    for warning in new.warnings() {
        log.warn(warning);
    }
    // After the new `[log]` is in effect, so that turning debug on shows them.
    log.reconfigure(&new.log, stdio_is_client);
    if log.enabled(crate::config::Level::Debug) {
        for change in changes(&running.config, &new) {
            log.debug(format!("reload: {change}"));
        }
    }
    let generation = server.swap(new);
    log.debug(format!(
        "reload: configuration generation {generation} in effect, {} worker(s) told",
        server.workers()
    ));
    server.count_reload(Reload::Ok);
    log.info("configuration reloaded");
    for key in needs_restart {
        log.warn(format!("{key} changed: restart jamd for it to take effect"));
    }
}

/// Puts back the running value of each key that needs a restart (the
/// sockets, bound once at start, the worker count, and what jamd gave up at
/// start: root, system calls) and returns those that changed.
fn keep_running(new: &mut Config, running: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    // A new restart-only key goes into this list.
    macro_rules! restart_only {
        ($($section:ident . $key:ident),*) => {$(
            if new.$section.$key != running.$section.$key {
                changed.push(concat!(stringify!($section), ".", stringify!($key)));
                new.$section.$key = running.$section.$key.clone();
            }
        )*};
    }
    restart_only!(
        server.port,
        server.bind,
        server.backlog,
        server.reuse_address,
        server.workers,
        server.user,
        server.group,
        server.sandbox,
        metrics.listen,
        daytime.listen,
        daytime.listen_udp,
        rfc868.listen,
        rfc868.listen_udp
    );
    changed
}

/// `section.key: old -> new` for each key whose value differs, by name.
fn changes(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(old), Ok(new)) = (toml::Value::try_from(old), toml::Value::try_from(new)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    diff("", &old, &new, &mut out);
    out
}

fn diff(at: &str, old: &toml::Value, new: &toml::Value, out: &mut Vec<String>) {
    match (old, new) {
        (toml::Value::Table(o), toml::Value::Table(n)) => {
            let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for key in keys {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match (o.get(key), n.get(key)) {
                    (Some(a), Some(b)) => diff(&path, a, b, out),
                    (Some(a), None) => out.push(format!("{path}: {a} -> (unset)")),
                    (None, Some(b)) => out.push(format!("{path}: (unset) -> {b}")),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => out.push(format!("{at}: {a} -> {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    #[test]
    fn restart_only_keys_keep_their_running_values_and_are_named() {
        let running = Config::default();
        let mut new = running.clone();
        new.server.port = running.server.port + 1;
        new.server.backlog = running.server.backlog + 1;
        new.server.workers = crate::config::Workers::Count(std::num::NonZeroUsize::new(3).unwrap());
        new.server.max_connections = running.server.max_connections + 1;
        new.metrics.listen = Some("127.0.0.1:9645".parse().unwrap());
        let changed = keep_running(&mut new, &running);
        assert_eq!(
            changed,
            [
                "server.port",
                "server.backlog",
                "server.workers",
                "metrics.listen"
            ]
        );
        assert_eq!(
            new.server,
            ServerConfig {
                max_connections: running.server.max_connections + 1,
                ..running.server.clone()
            }
        );
        assert_eq!(new.metrics.listen, running.metrics.listen);
    }

    #[test]
    fn changes_name_each_changed_key_with_both_values() {
        let old = Config::default();
        let mut new = old.clone();
        new.server.max_connections = old.server.max_connections + 5;
        new.log.connections = !old.log.connections;
        let changes = changes(&old, &new);
        assert_eq!(
            changes,
            [
                format!(
                    "log.connections: {} -> {}",
                    old.log.connections, new.log.connections
                ),
                format!(
                    "server.max_connections: {} -> {}",
                    old.server.max_connections, new.server.max_connections
                ),
            ]
        );
        assert!(super::changes(&old, &old).is_empty());
    }
}
