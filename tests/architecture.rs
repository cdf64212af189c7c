//! ARCHITECTURE.md stays true: every source file and directory it names
//! exists, and every thread it names is one jamd starts.

mod common;

use std::path::{Path, PathBuf};

use common::repo;

fn architecture() -> String {
    std::fs::read_to_string(repo().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md")
}

/// The words the page puts in backticks.
fn code_spans(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("```"))
        .flat_map(|l| l.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

/// Where a name the page uses may live: from the repository root
/// (`tests/common`, `config/jamd.toml`) or from `src/` (`server/conn.rs`).
fn exists(name: &str) -> bool {
    let root = repo();
    [root.to_path_buf(), root.join("src")]
        .iter()
        .any(|base| Path::new(base).join(name.trim_end_matches('/')).exists())
}

#[test]
fn every_file_the_architecture_names_exists() {
    let text = architecture();
    let paths: Vec<String> = code_spans(&text)
        .into_iter()
        .filter_map(|span| {
            // `daemon/startup.rs::start` names the file daemon/startup.rs.
            let path = span.split("::").next()?.to_owned();
            let is_path = !path.contains('*')
                && (path.ends_with(".rs")
                    || path.ends_with('/')
                    || (path.contains('/') && !path.contains(' ')));
            is_path.then_some(path)
        })
        .collect();
    assert!(paths.len() >= 20, "too few paths found: {paths:?}");
    let missing: Vec<&String> = paths.iter().filter(|p| !exists(p)).collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names missing files: {missing:?}"
    );
}

#[test]
fn every_thread_the_architecture_names_is_started_by_jamd() {
    let text = architecture();
    let threads: Vec<String> = code_spans(&text)
        .into_iter()
        .filter(|s| s.starts_with("jamd-"))
        .collect();
    assert!(threads.len() >= 3, "{threads:?}");
    let mut sources = String::new();
    for dir in ["src", "src/server", "src/metrics", "src/daemon"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    for thread in threads {
        // `jamd-worker-N` is spawned as format!("jamd-worker-{id}").
        let stem = thread.trim_end_matches('N');
        assert!(
            sources.contains(&format!("\"{stem}")),
            "no thread named {thread} in src/"
        );
    }
}

/// Every Rust source file under `src/`, as one text per file.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("src"), &mut out);
    out
}

/// A file's code before its unit tests.
fn code_of(rel: &str) -> String {
    let text = std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Whether `name` is defined somewhere in `src/`: a type, a trait, a
/// variant, a function, a constant or a macro.
fn defined(all: &str, name: &str) -> bool {
    let item = [
        "enum ",
        "struct ",
        "trait ",
        "type ",
        "fn ",
        "const ",
        "macro_rules! ",
        "mod ",
    ]
    .iter()
    .any(|k| all.contains(&format!("{k}{name}")));
    let variant = [",", "(", " {", " ="]
        .iter()
        .any(|end| all.contains(&format!("    {name}{end}")));
    item || variant
}

/// Names the page uses that come from the standard library or a
/// dependency, not from jamd.
const NOT_OURS: &[&str] = &["Arc", "Poll", "Mutex", "Vec", "Box", "Option"];

#[test]
fn every_type_and_item_the_architecture_names_exists() {
    let mut all: String = sources().into_iter().map(|(_, t)| t).collect();
    for entry in std::fs::read_dir(repo().join("tests/common")).unwrap() {
        all.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    let mut checked = 0;
    let mut missing = Vec::new();
    for span in code_spans(&architecture()) {
        // `Conn`, `Then::Linger`, `Worker::admit`, `labels!`.
        let span = span.trim_end_matches("()");
        let is_rust = span.split("::").all(|part| {
            let part = part.trim_end_matches('!');
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }) && span.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            || span.ends_with('!');
        if !is_rust
            || span
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c == '=')
        {
            continue; // not Rust, or a constant-looking word such as `STATUS=`
        }
        if NOT_OURS.contains(&span) {
            continue;
        }
        for part in span.split("::") {
            checked += 1;
            if !defined(&all, part.trim_end_matches('!')) {
                missing.push(span.to_owned());
            }
        }
    }
    assert!(checked >= 30, "too few names checked: {checked}");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what src/ does not define: {missing:?}"
    );
}

#[test]
fn a_request_takes_no_lock() {
    // The page says so of these files: a line in, a reply out.
    let text = architecture();
    assert!(
        text.contains("a request (a line in, a reply out"),
        "the claim moved"
    );
    for file in [
        "src/server/conn.rs",
        "src/server/session.rs",
        "src/protocol.rs",
        "src/clock.rs",
    ] {
        let code = code_of(file);
        for lock in ["Mutex", "RwLock", ".lock()", "Condvar"] {
            assert!(!code.contains(lock), "{file} uses {lock}");
        }
    }
}

#[test]
fn the_size_of_a_connection_is_the_one_the_page_gives_and_the_build_checks() {
    let text = architecture();
    let bytes: usize = text
        .split("`Conn` (")
        .nth(1)
        .and_then(|rest| rest.split(" bytes").next())
        .and_then(|n| n.parse().ok())
        .expect("ARCHITECTURE.md gives the size of a Conn: `Conn` (N bytes");
    let conn = code_of("src/server/conn.rs");
    assert!(
        conn.contains(&format!("assert!(std::mem::size_of::<Conn>() <= {bytes})")),
        "server/conn.rs does not check that a Conn is at most {bytes} bytes"
    );
}

#[test]
fn the_lists_of_names_the_page_gives_are_written_with_labels() {
    let text = architecture();
    let claim = text
        .split("Lists of names (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the page lists the enums written with labels!");
    let claim = claim.split_whitespace().collect::<Vec<_>>().join(" ");
    let names: Vec<&str> = claim.split(", ").map(|n| n.trim_matches('`')).collect();
    assert!(names.len() >= 5, "{names:?}");
    let sources = sources();
    for name in names {
        // Another module may have an enum of the same name (sources.rs has
        // its own `Refusal`): one of them must be the labels! list.
        let enum_at = format!("enum {name} {{");
        let mut found = 0;
        let mut in_labels = false;
        for (_, text) in &sources {
            for (at, _) in text.match_indices(&enum_at) {
                found += 1;
                let before = &text[..at];
                let opened = before.rfind("labels! {");
                let closed = before.rfind("\n}\n");
                in_labels |= opened.is_some() && opened > closed;
            }
        }
        assert!(found > 0, "no enum {name}");
        assert!(in_labels, "enum {name} is not written with labels!");
    }
}

#[test]
fn unsafe_code_is_in_sys_rs_only() {
    for (path, text) in sources() {
        if path.ends_with("sys.rs") {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            assert!(
                !code.contains("unsafe ") && !code.contains("unsafe{"),
                "{}:{}: unsafe outside sys.rs: {line}",
                path.display(),
                i + 1
            );
        }
    }
}
