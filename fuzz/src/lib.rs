//! What the fuzz targets share: running a target's check without AFL.

/// Runs `check` on each file named on the command line, or on standard
/// input when none is, as a plain program (the seed corpus goes through it
/// in `scripts/test`).
pub fn replay(check: fn(&[u8])) {
    use std::io::Read;
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .expect("read standard input");
        check(&data);
    } else {
        for f in &files {
            check(&std::fs::read(f).unwrap_or_else(|e| panic!("{f}: {e}")));
        }
        eprintln!("{} input(s) checked", files.len());
    }
}
