//! TOML syntax errors in words: toml's message on one line, and a
//! duplicate key or section named.

use std::ops::Range;
/// A TOML syntax error in words, naming the key for a duplicate.
pub(super) fn syntax_message(text: &str, message: &str, span: Option<Range<usize>>) -> String {
    let message = message
        .trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(span) = span.filter(|_| message.starts_with("duplicate key")) else {
        return message;
    };
    let key = text
        .get(span.clone())
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    if text[line_start..].trim_start().starts_with('[') {
        return format!("the section [{key}] is given twice; give each section once");
    }
    // The section the key is in: the last header above it.
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l.trim_start_matches('[').split(']').next())
        .map(|s| format!("{}.", s.trim()))
        .unwrap_or_default();
    format!("{section}{key} is given twice; give each key once")
}

#[cfg(test)]
mod tests {
    use crate::config::parse_for_tests as parse;

    #[test]
    fn syntax_errors_have_a_place() {
        let e = parse("[server]\nport = = 1\n").unwrap_err();
        assert!(e.starts_with("jamd.toml:2:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
