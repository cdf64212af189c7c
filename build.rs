//! Build information for `jamd -V` and `jamc -V`: the package version, and
//! the commit and its date when the source is a git checkout
//! (`0.1.0 (1a2b3c4d5e 2026-11-29)`). Outside git (a tarball, `cargo
//! package`) it is the version alone, or the version and the date of
//! `SOURCE_DATE_EPOCH` when a reproducible build sets it. The date is the
//! commit's, not the clock's, so that building the same commit twice gives
//! the same binary.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "unknown".into());
    let commit = git(&["rev-parse", "--short=10", "HEAD"]);
    let date = source_date_epoch().or_else(|| git(&["log", "-1", "--format=%cs", "HEAD"]));
    let extra: Vec<String> = commit.clone().into_iter().chain(date).collect();
    let full = if extra.is_empty() {
        version
    } else {
        format!("{version} ({})", extra.join(" "))
    };
    println!("cargo:rustc-env=JAMD_VERSION={full}");
    // jamd_build_info{revision}: the commit, as Prometheus's own build_info.
    println!(
        "cargo:rustc-env=JAMD_REVISION={}",
        commit.as_deref().unwrap_or("unknown")
    );
    watch_git();
}

/// One line of git's output, or None (no git, not a checkout, any failure).
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// `SOURCE_DATE_EPOCH` as YYYY-MM-DD (UTC).
fn source_date_epoch() -> Option<String> {
    let secs: i64 = std::env::var("SOURCE_DATE_EPOCH")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

/// Rebuilds when HEAD moves: a new commit, a checkout.
fn watch_git() {
    let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) else {
        return;
    };
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let git_dir = root.join(git_dir);
    let common = root.join(common);
    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    println!(
        "cargo:rerun-if-changed={}",
        common.join("packed-refs").display()
    );
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={}", common.join(branch).display());
    }
}
