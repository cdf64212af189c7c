//! The spanned TOML reader: a table's keys ([`Keys`]) and one key's value
//! ([`Value`]), read as the type the key takes; every error ([`Invalid`])
//! names the key and its place in the file and says what the key takes.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

/// A value the file gives that its key cannot take: where it is (byte offsets
/// into the file) and what is wrong, in a user's words, key first.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invalid {
    /// None: the problem is not at one place (a default that cannot work).
    pub(super) span: Option<Range<usize>>,
    pub(super) message: String,
}

impl Invalid {
    /// An error at `span` of the file.
    pub(crate) fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Invalid {
            span: Some(span),
            message: message.into(),
        }
    }
}

/// The keys of one table of the file (a section such as `[server]`, or the
/// top level), read one by one with [`Keys::read`]. [`Keys::finish`] rejects
/// any key that no `read` asked for.
pub(crate) struct Keys<'a, 'i> {
    /// `server.` for `[server]`, empty for the top level.
    prefix: String,
    /// The table's entries in the order the file gives them.
    entries: Vec<(&'a Spanned<DeString<'i>>, &'a Spanned<DeValue<'i>>)>,
    taken: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'a, 'i> Keys<'a, 'i> {
    pub(super) fn new(prefix: String, table: &'a DeTable<'i>) -> Self {
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        Keys {
            prefix,
            taken: vec![false; entries.len()],
            entries,
            known: Vec::new(),
        }
    }

    /// Reads `key` into `into` with `how` when the file gives it; leaves the
    /// default otherwise.
    pub(crate) fn read<T>(
        &mut self,
        key: &'static str,
        into: &mut T,
        how: impl FnOnce(&Value<'a, 'i>) -> Result<T, Invalid>,
    ) -> Result<(), Invalid> {
        self.known.push(key);
        if let Some(i) = self.entries.iter().position(|(k, _)| k.get_ref() == key) {
            self.taken[i] = true;
            let value = Value {
                key: format!("{}{key}", self.prefix),
                value: self.entries[i].1,
            };
            *into = how(&value)?;
        }
        Ok(())
    }

    /// Whether the file gives `key` in this table.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.get_ref() == key)
    }

    /// Fails on the first key (in file order) that no [`Keys::read`] took,
    /// naming the keys this table does take.
    pub(crate) fn finish(self) -> Result<(), Invalid> {
        let Some(i) = self.taken.iter().position(|t| !t) else {
            return Ok(());
        };
        let (key, value) = self.entries[i];
        let known = self.known.join(", ");
        let is_section = self.prefix.is_empty() && value.get_ref().is_table();
        let hint = nearest(key.get_ref(), &self.known)
            .map(|near| {
                if is_section {
                    format!("; did you mean [{near}]?")
                } else {
                    format!("; did you mean {near}?")
                }
            })
            .unwrap_or_default();
        let message = if self.prefix.is_empty() {
            if value.get_ref().is_table() {
                format!(
                    "unknown section [{}]; the sections are {known}",
                    key.get_ref()
                )
            } else {
                format!(
                    "{}: unknown key outside any section; the sections are {known}",
                    key.get_ref()
                )
            }
        } else {
            let section = self.prefix.trim_end_matches('.');
            format!(
                "{}{}: unknown key; [{section}] takes {known}",
                self.prefix,
                key.get_ref()
            )
        };
        Err(Invalid::at(key.span(), message + &hint))
    }
}

/// The known name closest to `word` when one is close enough to be a typing
/// mistake (`max_line_byte`, `prot`, `sever`): at most one edit in three
/// characters, and at most three.
fn nearest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let word = word.to_ascii_lowercase();
    let most = word.chars().count().div_ceil(3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(&word, k), *k))
        .filter(|(d, _)| *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edits (insert, delete, replace, swap two neighbours) that turn `a` into
/// `b`: the optimal string alignment distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the table.
    let mut before: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut prev, row);
    }
    prev[b.len()]
}

/// One key's value and its place in the file, read as the type the key takes.
/// Every error names the key (`server.port`) and says what it takes.
pub(crate) struct Value<'a, 'i> {
    key: String,
    pub(super) value: &'a Spanned<DeValue<'i>>,
}

impl<'a, 'i> Value<'a, 'i> {
    /// The key's full name, such as `server.port`.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// An error about this value: `KEY: what`.
    pub(crate) fn error(&self, what: impl fmt::Display) -> Invalid {
        Invalid::at(self.value.span(), format!("{}: {what}", self.key))
    }

    /// `KEY: expected WHAT, found …` (what the file gives, in words).
    pub(crate) fn expected(&self, what: impl fmt::Display) -> Invalid {
        self.error(format_args!("expected {what}, found {}", self.found()))
    }

    /// What the file gives, in words: `the string "x"`, `-5`, `a list`.
    fn found(&self) -> String {
        match self.value.get_ref() {
            DeValue::String(s) => format!("the string {:?}", s.as_ref()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n.to_string(),
                Err(_) => format!("the number {i} (too large)"),
            },
            DeValue::Float(f) => format!("the number {f}"),
            DeValue::Boolean(b) => b.to_string(),
            DeValue::Datetime(d) => format!("the date {d}"),
            DeValue::Array(a) if !a.is_empty() && a.iter().all(|v| v.get_ref().is_table()) => {
                format!("a list of tables ([[{}]])", self.key)
            }
            DeValue::Array(_) => "a list".into(),
            DeValue::Table(_) => "a table".into(),
        }
    }

    /// A whole number from `min` to `max`, as the type the setting is kept
    /// in (`u8`, `u32`, `usize`…); `what` says what it counts ("a number of
    /// seconds"), and the range is added to the message. A range wider than
    /// the type is the same error, never a value cut short.
    pub(crate) fn integer<T: TryFrom<i64>>(
        &self,
        min: i64,
        max: i64,
        what: &str,
    ) -> Result<T, Invalid> {
        let n = match self.value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        n.filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.expected(format_args!("{what} ({min}-{max})")))
    }

    /// A TCP port number.
    pub(crate) fn port(&self) -> Result<u16, Invalid> {
        self.integer(0, 65_535, "a port number")
    }

    /// A number of seconds, up to a year.
    pub(crate) fn seconds(&self) -> Result<Duration, Invalid> {
        self.integer(0, 86_400 * 365, "a number of seconds")
            .map(Duration::from_secs)
    }

    /// A number of seconds up to a year, 0 for off (`None`).
    pub(crate) fn seconds_or_off(&self) -> Result<Option<Duration>, Invalid> {
        Ok(Some(self.seconds()?).filter(|d| !d.is_zero()))
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&self) -> Result<bool, Invalid> {
        match self.value.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.expected("true or false")),
        }
    }

    /// Any string; `what` says what it should be, for the error.
    pub(crate) fn string(&self, what: &str) -> Result<&'a str, Invalid> {
        match self.value.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.expected(what)),
        }
    }

    /// A string turned into a `T` by `parse`, whose error (already in a
    /// user's words) follows the key. `what` is for a value that is not a
    /// string at all.
    pub(crate) fn parse_str<T>(
        &self,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, Invalid> {
        let s = self.string(what)?;
        parse(s).map_err(|why| self.error(why))
    }

    /// One of a few words.
    pub(crate) fn one_of<T: Copy>(&self, choices: &[(&str, T)]) -> Result<T, Invalid> {
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
        let what = format!("one of {}", names.join(", "));
        let s = self.string(&what)?;
        choices
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| self.expected(&what))
    }

    /// A list; each item is a [`Value`] under the same key. `what` describes
    /// the whole list, for a value that is not one.
    pub(crate) fn list(&self, what: &str) -> Result<Vec<Value<'a, 'i>>, Invalid> {
        match self.value.get_ref() {
            DeValue::Array(items) => Ok(items
                .iter()
                .map(|value| Value {
                    key: self.key.clone(),
                    value,
                })
                .collect()),
            _ => Err(self.expected(what)),
        }
    }

    /// A section (`[server]`), to read its keys.
    pub(crate) fn table(&self) -> Result<Keys<'a, 'i>, Invalid> {
        match self.value.get_ref() {
            DeValue::Table(t) => Ok(Keys::new(format!("{}.", self.key), t)),
            _ => Err(self.expected(format_args!("one [{}] section", self.key))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_for_tests as parse;

    /// `Value::integer` checks the range and the setting's type together:
    /// a range wider than the type is refused with the same message, never
    /// cut short to fit.
    #[test]
    fn an_integer_is_read_as_the_settings_type() {
        let read = |text: &str, max: i64| -> Result<Option<u8>, String> {
            let doc = DeTable::parse(text).unwrap();
            let mut keys = Keys::new("t.".into(), doc.get_ref());
            let mut n = None;
            keys.read("n", &mut n, |v| v.integer(0, max, "a number").map(Some))
                .map_err(|e| e.message)?;
            Ok(n)
        };
        assert_eq!(read("n = 255", 255), Ok(Some(255)));
        assert_eq!(read("n = 0x10", 255), Ok(Some(16)));
        let refused = "t.n: expected a number (0-300), found 256";
        assert_eq!(read("n = 256", 300).unwrap_err(), refused);
        assert_eq!(
            read("n = 256", 255).unwrap_err(),
            "t.n: expected a number (0-255), found 256"
        );
        assert_eq!(
            read("n = -1", 255).unwrap_err(),
            "t.n: expected a number (0-255), found -1"
        );
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        let cases = [
            (
                "[server]\nmax_line_byte = 9\n",
                Some("did you mean max_line_bytes?"),
            ),
            ("[server]\nprot = 9\n", Some("did you mean port?")),
            ("[sever]\n", Some("did you mean [server]?")),
            ("[proxy]\ntrust = []\n", Some("did you mean trusted?")),
            ("[log]\nLevel = \"info\"\n", Some("did you mean level?")),
            ("[metrics]\nport = 9645\n", None),
            ("[server]\ncolour = 1\n", None),
        ];
        for (file, hint) in cases {
            let e = parse(file).expect_err(file);
            match hint {
                Some(hint) => assert!(e.ends_with(&format!("; {hint}")), "{file:?}: {e}"),
                None => assert!(!e.contains("did you mean"), "{file:?}: {e}"),
            }
        }
        assert_eq!(edit_distance("prot", "port"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key_and_place() {
        // (file, how its error starts: the list of what is known goes on)
        let cases = [
            (
                "[server]\nport = 1\nprot = 2\n",
                "jamd.toml:3:1: server.prot: unknown key; [server] takes port, bind",
            ),
            (
                "[sever]\n",
                "jamd.toml:1:2: unknown section [sever]; the sections are server, time, log",
            ),
            (
                "[metrics]\nport = 9645\n",
                "jamd.toml:2:1: metrics.port: unknown key; [metrics] takes listen",
            ),
            (
                "[access]\nallowed = []\n",
                "jamd.toml:2:1: access.allowed: unknown key; [access] takes allow, deny",
            ),
            (
                "[proxy]\ntrust = []\n",
                "jamd.toml:2:1: proxy.trust: unknown key; [proxy] takes trusted, header_timeout",
            ),
        ];
        for (file, start) in cases {
            let e = parse(file).expect_err(file);
            assert!(e.starts_with(start), "{file:?}: {e}");
        }
    }
}
