//! Packaging and the docs that must agree with the program (README.md,
//! Running as a service): `-V` build information, the jamd@.service template,
//! and drift checks on README, jamd.8, the shipped configuration and the
//! units. (The socket-activation notice is checked in tests/service.rs, the
//! trigger limit of jamd-conn.socket in tests/packaging.rs.)

mod common;

use std::process::Command;
use std::time::Duration;

use common::{repo_file, require_tool, run_bounded, run_jamd, TempDir, JAMC, JAMD};

const T: Duration = Duration::from_secs(10);

/// `jamd -V` and `jamc -V` name the commit and its date in a git checkout.
#[test]
fn version_names_the_commit_and_date_when_built_from_git() {
    let head = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=10",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let version = env!("CARGO_PKG_VERSION");
    for (name, bin) in [("jamd", JAMD), ("jamc", JAMC)] {
        let out = run_bounded(Command::new(bin).arg("-V"), T);
        assert_eq!(out.code, 0, "{name} -V: {}", out.stderr);
        let text = out.stdout.trim().to_owned();
        match &head {
            Some(commit) => {
                let rest = text
                    .strip_prefix(&format!("{name} {version} ({commit} "))
                    .unwrap_or_else(|| panic!("{text:?} names {commit}"));
                let date = rest.strip_suffix(')').expect("closing parenthesis");
                assert!(
                    date.len() == 10
                        && date.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 {
                            c == '-'
                        } else {
                            c.is_ascii_digit()
                        }),
                    "{text:?}"
                );
            }
            // Not a checkout (a tarball): the version, nothing invented.
            None => assert!(text.starts_with(&format!("{name} {version}")), "{text:?}"),
        }
    }
}

#[test]
fn the_instance_template_reads_the_instance_config() {
    let unit = repo_file("packaging/systemd/jamd@.service");
    assert!(
        unit.lines()
            .any(|l| l == "ExecStart=/usr/bin/jamd -c /etc/jamd/%i.toml"),
        "{unit}"
    );
    // That the package installs it (through systemd-units) is checked on the
    // built .deb in .ci/run.
    // It keeps every hardening line of jamd.service.
    let main = repo_file("packaging/systemd/jamd.service");
    for line in main.lines().filter(|l| {
        l.starts_with("Protect")
            || l.starts_with("Private")
            || l.starts_with("Restrict")
            || l.starts_with("SystemCall")
    }) {
        assert!(
            unit.lines().any(|l| l == line),
            "jamd@.service lacks {line}"
        );
    }
    let Some(analyze) = require_tool("systemd-analyze") else {
        return;
    };
    // Verified as an instance, with the binary cargo built.
    let dir = TempDir::new("template");
    let copy = dir.join("jamd@lab.service");
    std::fs::write(&copy, unit.replace("/usr/bin/jamd", JAMD)).unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let all =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let ours: Vec<&str> = all.lines().filter(|l| l.contains("jamd")).collect();
    assert!(ours.is_empty(), "{all}");
}

/// The texts a user sees quote the program's own words.
#[test]
fn docs_quote_the_address_in_use_error_as_the_program_says_it() {
    for doc in ["README.md", "man/jamd.8"] {
        let text = repo_file(doc);
        assert!(!text.contains("Address in use"), "{doc}");
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let dir = TempDir::new("inuse");
    let cfg = dir.join("jamd.toml");
    std::fs::write(&cfg, "[server]\nreuse_address = false\n").unwrap();
    let (_, _, err) = run_jamd(
        &["-c", cfg.to_str().unwrap(), "-p", &port, "-b", "127.0.0.1"],
        T,
    );
    assert!(err.contains("Address already in use"), "{err}");
    assert!(repo_file("README.md").contains("Address already in use"));
    assert!(repo_file("man/jamd.8").contains("Address already in use"));
}

/// Every key reload treats as restart-only is named where the docs list them.
#[test]
fn the_restart_only_keys_are_listed_everywhere() {
    let reload = repo_file("src/daemon/reload.rs");
    let list = reload
        .split("restart_only!(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the restart_only! invocation");
    let keys: Vec<&str> = list
        .split(',')
        .map(|k| k.trim().split('.').next_back().unwrap_or(""))
        .filter(|k| !k.is_empty())
        .collect();
    assert!(
        keys.contains(&"workers") && keys.contains(&"port"),
        "{keys:?}"
    );
    let readme = repo_file("README.md");
    let readme_line = readme
        .split("\n\n")
        .find(|p| p.contains("Signals:") && p.contains("needing a restart"))
        .expect("README's signals paragraph");
    let config = repo_file("config/jamd.toml");
    let config_head: String = config.lines().take_while(|l| l.starts_with('#')).collect();
    for key in &keys {
        assert!(
            readme_line.contains(key),
            "README omits {key}: {readme_line}"
        );
        assert!(config_head.contains(key), "config/jamd.toml omits {key}");
    }
}

#[test]
fn jamd_8_names_where_the_package_installs_the_units_and_its_neighbours() {
    let page = repo_file("man/jamd.8");
    let cargo = repo_file("Cargo.toml");
    assert!(!page.contains("Pa /lib/systemd"), "FILES says /lib/systemd");
    for unit in [
        "jamd.service",
        "jamd.socket",
        "jamd-conn.socket",
        "jamd-conn@.service",
        "jamd@.service",
    ] {
        assert!(
            page.contains(&format!("Pa /usr/lib/systemd/system/{unit}")),
            "FILES lacks {unit}"
        );
    }
    assert!(cargo.contains("usr/lib/systemd/system/"));
    let see_also = page.split(".Sh SEE ALSO").nth(1).expect("SEE ALSO");
    for xr in [
        ".Xr xinetd 8",
        ".Xr inetd.conf 5",
        ".Xr services 5",
        ".Xr inetd 8",
    ] {
        assert!(see_also.contains(xr), "SEE ALSO lacks {xr}");
    }
}
