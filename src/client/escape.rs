//! Server text made safe to print, wherever jamc shows it: a reply, an
//! error quoting one, a `--check` line.

use std::fmt::Write as _;

/// Server text made safe to print: a server must not forge a status line or
/// perfdata, or drive the terminal (jamc(1), SECURITY).
///
/// Control characters become `\x1b` (or `\u{85}` above ASCII), bytes that are
/// not UTF-8 `\xff`, `|` (the perfdata bar) `\|`, and `\` itself `\\`, so the
/// escaping cannot be mistaken for text. Bidirectional overrides, which can
/// make a terminal show text in another order than it is, become `\u{202e}`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '|' => out.push_str("\\|"),
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() || is_bidi_control(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn server_text_is_escaped() {
        assert_eq!(escape(b"JAM 14:03:27"), "JAM 14:03:27");
        assert_eq!(escape(b"\x1b[2J"), "\\x1b[2J");
        assert_eq!(escape(b"a\rJAM OK"), "a\\x0dJAM OK");
        assert_eq!(escape(b"x | offset=0.000s"), "x \\| offset=0.000s");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape(b"\xff\xfe!"), "\\xff\\xfe!");
        assert_eq!(escape("\u{85}\u{202e}é".as_bytes()), "\\u{85}\\u{202e}é");
        assert_eq!(escape(b"\x7f\t"), "\\x7f\\x09");
    }
}
