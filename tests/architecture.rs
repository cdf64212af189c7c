//! ARCHITECTURE.md stays true: every source file and directory it names
//! exists, and every thread it names is one jamd starts.

mod common;

use std::path::Path;

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
