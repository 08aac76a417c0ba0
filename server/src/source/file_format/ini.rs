//! The INI form of the configuration: the file that `konflux-build-cli` reads from
//! `PLATFORM_CONFIG_FILE` with gopkg.in/ini.v1 (`ini.Load`, default options), read the same way.
//!
//! ```ini
//! [cache-proxy]
//! allow-cache-proxy = true
//! http-proxy = squid.caching.svc.cluster.local:3128
//! no-proxy = .svc,.cluster.local
//!
//! [artifact-registry]
//! allow-package-registry-proxy = true
//! package-registry-proxy-npm-url = https://nexus.example/repository/npm-proxy/
//! ```
//!
//! ini.v1's rules, reproduced: lines starting (after blanks) with `#` or `;` are comments; a
//! `[name]` line opens a section (the name is taken as written, spaces included; a repeated
//! section continues the first); `key = value` or `key: value`, the first `=` or `:` ending the
//! key; key and value are trimmed of blanks; a value wholly in `'…'` or `"…"` loses those
//! quotes; a value in `"""…"""` or `` `…` `` is taken verbatim and may span lines; a value ending
//! in `\` continues on the next line; a later key replaces an earlier one; section and key names
//! are case-sensitive. Keys before the first section (ini.v1's `DEFAULT`) and keys of other
//! sections are not read, as by `konflux-build-cli`.
//!
//! **Where proxyconf differs on purpose: inline comments.** ini.v1 ends an unquoted value at the
//! first `#` or `;` anywhere in it, so `https://nexus/npm/#x` reads as `https://nexus/npm/` and
//! `https://nexus/a;b` as `https://nexus/a`: a URL silently cut short. proxyconf starts an inline
//! comment only at a `#` or `;` that begins the value or follows a blank (`url = https://n/ # npm`
//! means the same to both); any other `#` or `;` stays in the value, and a [`FormatNote`] records
//! what ini.v1 would have read instead, for `proxyconf-server check` to warn about. (ini.v1's
//! `%(name)s` substitution is not done either: such a value is taken literally, and noted.)

use std::collections::BTreeMap;

use super::{FormatNote, NoteKind};
use crate::resolve::{self, cache_proxy, proxy_url::redact};

/// The section holding the OCI cache proxy keys.
pub const CACHE_PROXY_SECTION: &str = "cache-proxy";
/// The section holding the package registry proxy keys.
pub const ARTIFACT_REGISTRY_SECTION: &str = "artifact-registry";

/// What ini.v1 (and so proxyconf) cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IniSyntax {
    #[error("unclosed section header {0:?}; write [name]")]
    UnclosedSection(String),
    #[error("empty section name []")]
    EmptySection,
    #[error("expected key = value, key: value or [section], found {0:?}")]
    NoDelimiter(String),
    #[error("a key name is missing before the '=' or ':'")]
    EmptyKey,
    #[error("the quoted key name has no closing quote")]
    KeyQuote,
    #[error("the value opened with {0} is never closed")]
    ValueQuote(&'static str),
}

/// An INI file read into ConfigMap data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IniFile {
    /// The keys proxyconf reads, under their ConfigMap names.
    pub data: BTreeMap<String, String>,
    /// The line (1-based) of each key of `data`.
    pub lines: BTreeMap<String, usize>,
    /// What the file says that `data` does not show.
    pub notes: Vec<FormatNote>,
}

/// The section a key proxyconf reads belongs in, or `None` for every other key.
fn section_of(key: &str) -> Option<&'static str> {
    if [
        cache_proxy::ALLOW_KEY,
        cache_proxy::HTTP_PROXY_KEY,
        cache_proxy::NO_PROXY_KEY,
    ]
    .contains(&key)
    {
        Some(CACHE_PROXY_SECTION)
    } else if key == resolve::ALLOW_KEY
        || (key.starts_with("package-registry-proxy-") && key.ends_with("-url"))
    {
        Some(ARTIFACT_REGISTRY_SECTION)
    } else {
        None
    }
}

/// A syntax error and its line (1-based).
pub type IniError = (usize, IniSyntax);

/// Parses `content` with ini.v1's default rules, but for inline comments (see the module doc).
pub fn parse(content: &str) -> Result<IniFile, IniError> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut lines = content.split_inclusive('\n').enumerate();
    let mut file = IniFile::default();
    // `None` is ini.v1's DEFAULT section: the keys before the first header (or under [DEFAULT]).
    let mut section: Option<String> = None;
    while let Some((index, raw)) = lines.next() {
        let number = index + 1;
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with('[') {
            section = section_header(line).map_err(|e| (number, e))?;
            continue;
        }
        let (key, offset) = key_name(line).map_err(|e| (number, e))?;
        let value = value(&line[offset..], &mut lines).map_err(|e| (number, e))?;
        file.add(section.as_deref(), key, value, number);
    }
    Ok(file)
}

/// The section a `[name]` line opens: `None` for `[DEFAULT]`. As ini.v1: up to the last `]`,
/// not trimmed; anything after it is ignored.
fn section_header(line: &str) -> Result<Option<String>, IniSyntax> {
    let close = line
        .rfind(']')
        .ok_or_else(|| IniSyntax::UnclosedSection(redact(line.trim_end())))?;
    match &line[1..close] {
        "" => Err(IniSyntax::EmptySection),
        "DEFAULT" => Ok(None),
        name => Ok(Some(name.to_owned())),
    }
}

/// The key of a `key = value` line and where its value starts (ini.v1's `readKeyName`; a key
/// may be quoted with `"`, `"""` or `` ` ``).
fn key_name(line: &str) -> Result<(&str, usize), IniSyntax> {
    const DELIMITERS: [char; 2] = ['=', ':'];
    let quote = if line.len() > 6 && line.starts_with("\"\"\"") {
        "\"\"\""
    } else if line.starts_with('"') {
        "\""
    } else if line.starts_with('`') {
        "`"
    } else {
        ""
    };
    let no_delimiter = || IniSyntax::NoDelimiter(redact(line.trim_end()));
    if quote.is_empty() {
        return match line.find(DELIMITERS) {
            None => Err(no_delimiter()),
            Some(0) => Err(IniSyntax::EmptyKey),
            Some(end) => Ok((line[..end].trim(), end + 1)),
        };
    }
    let start = quote.len();
    let close = start + line[start..].find(quote).ok_or(IniSyntax::KeyQuote)?;
    let after = close + quote.len();
    let delimiter = after + line[after..].find(DELIMITERS).ok_or_else(no_delimiter)?;
    match line[start..close].trim() {
        "" => Err(IniSyntax::EmptyKey),
        key => Ok((key, delimiter + 1)),
    }
}

/// A value as read: what proxyconf takes, and what ini.v1 would take when that differs.
struct Value {
    read: String,
    incumbent: Option<String>,
}

/// The value after the delimiter (ini.v1's `readValue`), reading on for multi-line values.
fn value<'a>(
    rest: &str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<Value, IniSyntax> {
    let text = rest.trim_start();
    let quote = if text.len() > 3 && text.starts_with("\"\"\"") {
        Some("\"\"\"")
    } else if text.starts_with('`') {
        Some("`")
    } else {
        None
    };
    if let Some(quote) = quote {
        return verbatim(&text[quote.len()..], quote, lines).map(|read| Value {
            read,
            incumbent: None,
        });
    }
    let text = text.trim();
    if let Some(first) = text.strip_suffix('\\') {
        return Ok(Value {
            read: continued(first, lines),
            incumbent: None,
        });
    }
    let read = unquote(before_comment(text, starts_comment_here));
    let incumbent = unquote(before_comment(text, |_, _| true));
    Ok(Value {
        incumbent: (incumbent != read).then(|| incumbent.to_owned()),
        read: read.to_owned(),
    })
}

/// A `"""…"""` or `` `…` `` value: verbatim up to the last closing quote on its line, or on a
/// later line (the line breaks are part of the value).
fn verbatim<'a>(
    first: &str,
    quote: &'static str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<String, IniSyntax> {
    if let Some(end) = first.rfind(quote) {
        return Ok(first[..end].to_owned());
    }
    let mut value = first.to_owned();
    for (_, next) in lines {
        if let Some(end) = next.rfind(quote) {
            value.push_str(&next[..end]);
            return Ok(value);
        }
        value.push_str(next);
    }
    Err(IniSyntax::ValueQuote(quote))
}

/// A value continued with a trailing `\`: the next lines, trimmed, joined without the `\`, up
/// to a line that does not end in one or a blank line. (ini.v1 looks for no comment or quotes in
/// such a value.)
fn continued<'a>(first: &str, lines: &mut impl Iterator<Item = (usize, &'a str)>) -> String {
    let mut value = first.to_owned();
    for (_, next) in lines {
        let next = next.trim();
        if next.is_empty() {
            break;
        }
        value.push_str(next);
        if !value.ends_with('\\') {
            break;
        }
        value.pop();
    }
    value
}

/// The value before its inline comment: the first `#` or `;` for which `starts` holds.
fn before_comment(text: &str, starts: impl Fn(&str, usize) -> bool) -> &str {
    text.match_indices(['#', ';'])
        .map(|(i, _)| i)
        .find(|&i| starts(text, i))
        .map_or(text, |i| text[..i].trim_end())
}

/// proxyconf's rule: a `#` or `;` starts a comment at the start of the value or after a blank.
fn starts_comment_here(text: &str, index: usize) -> bool {
    text[..index]
        .chars()
        .next_back()
        .is_none_or(char::is_whitespace)
}

/// Drops quotes around the whole value: `'…'` or `"…"` with no other such quote inside.
fn unquote(text: &str) -> &str {
    for quote in ['\'', '"'] {
        if let Some(inner) = text
            .strip_prefix(quote)
            .and_then(|t| t.strip_suffix(quote))
            .filter(|inner| !inner.contains(quote))
        {
            return inner;
        }
    }
    text
}

/// Whether ini.v1 would try to replace part of `value` by another key's (`%(name)s`).
fn has_interpolation(value: &str) -> bool {
    value.match_indices("%(").any(|(i, _)| {
        let rest = &value[i + 2..];
        rest.find(')')
            .is_some_and(|end| end > 0 && rest[end + 1..].starts_with('s'))
    })
}

impl IniFile {
    /// Takes `key = value` of line `line` in `section`: into the data when it is a key proxyconf
    /// reads in its section, otherwise into a note when proxyconf would have read it elsewhere.
    fn add(&mut self, section: Option<&str>, key: &str, value: Value, line: usize) {
        let note = |kind| FormatNote {
            line,
            key: key.to_owned(),
            value: redact(&value.read),
            kind,
        };
        let ours = [CACHE_PROXY_SECTION, ARTIFACT_REGISTRY_SECTION]
            .into_iter()
            .find(|s| Some(*s) == section);
        match (section_of(key), ours) {
            (Some(expected), _) if Some(expected) != section => {
                self.notes.push(note(NoteKind::Misplaced {
                    section: section.map(str::to_owned),
                    expected,
                }));
            }
            (None, Some(section)) => self.notes.push(note(NoteKind::UnknownKey { section })),
            (None, None) => {}
            (Some(_), _) => {
                if let Some(incumbent) = &value.incumbent {
                    self.notes.push(note(NoteKind::InlineComment {
                        incumbent: redact(incumbent),
                    }));
                }
                if has_interpolation(&value.read) {
                    self.notes.push(note(NoteKind::Interpolation));
                }
                self.lines.insert(key.to_owned(), line);
                self.data.insert(key.to_owned(), value.read);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(content: &str) -> BTreeMap<String, String> {
        parse(content).unwrap().data
    }

    fn one(value_line: &str) -> String {
        let content = format!("[artifact-registry]\npackage-registry-proxy-npm-url{value_line}\n");
        data(&content)
            .remove("package-registry-proxy-npm-url")
            .expect("the key is read")
    }

    #[test]
    fn the_incumbents_file() {
        let content = "\u{feff}; written by the cluster's installer\n\
                       [cache-proxy]\n\
                       allow-cache-proxy = false\n\
                       \thttp-proxy = some.proxy.net\n\
                       no-proxy: localhost:1234\n\
                       \n\
                       [artifact-registry]\n\
                       # npm and yarn share the npm-proxy repository\n\
                       allow-package-registry-proxy=true\n\
                       package-registry-proxy-npm-url = https://nexus.example/repository/npm-proxy/\n\
                       package-registry-proxy-yarn-url = \"https://nexus.example/repository/npm-proxy/\"\n";
        let file = parse(content).unwrap();
        assert_eq!(
            file.data,
            [
                ("allow-cache-proxy", "false"),
                ("http-proxy", "some.proxy.net"),
                ("no-proxy", "localhost:1234"),
                ("allow-package-registry-proxy", "true"),
                (
                    "package-registry-proxy-npm-url",
                    "https://nexus.example/repository/npm-proxy/"
                ),
                (
                    "package-registry-proxy-yarn-url",
                    "https://nexus.example/repository/npm-proxy/"
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
        );
        assert_eq!(file.lines["http-proxy"], 4);
        assert_eq!(file.lines["package-registry-proxy-yarn-url"], 11);
        assert!(file.notes.is_empty(), "{:?}", file.notes);
    }

    #[test]
    fn values_as_ini_v1_reads_them() {
        let table = [
            ("=https://n/npm/", "https://n/npm/"),
            (" :  https://n/npm/  \r", "https://n/npm/"),
            (" = 'https://n/npm/'", "https://n/npm/"),
            (" = \"https://n/npm/\"", "https://n/npm/"),
            (" = \"a\"b\"", "\"a\"b\""),
            (" = 'https://n/npm/\"", "'https://n/npm/\""),
            (" = `https://n/#x;y`", "https://n/#x;y"),
            (" = \"\"\"https://n/npm/\"\"\"", "https://n/npm/"),
            (" = https://n/npm/ # the npm proxy", "https://n/npm/"),
            (" = https://n/npm/\t; the npm proxy", "https://n/npm/"),
            (" = # nothing", ""),
            (" =", ""),
            (" = https://n/a=b:c", "https://n/a=b:c"),
        ];
        for (line, want) in table {
            assert_eq!(one(line), want, "{line:?}");
        }
    }

    #[test]
    fn multi_line_values() {
        let content = "[artifact-registry]\n\
                       package-registry-proxy-npm-url = https://nexus.example/\\\n\
                       \x20 repository/npm/\n\
                       package-registry-proxy-pip-url = `https://nexus.example/\n\
                       pypi/`\n\
                       allow-package-registry-proxy = true\n";
        let file = parse(content).unwrap();
        assert_eq!(
            file.data["package-registry-proxy-npm-url"],
            "https://nexus.example/repository/npm/"
        );
        assert_eq!(
            file.data["package-registry-proxy-pip-url"],
            "https://nexus.example/\npypi/"
        );
        assert_eq!(file.data["allow-package-registry-proxy"], "true");
        assert_eq!(file.lines["allow-package-registry-proxy"], 6);
    }

    #[test]
    fn inline_comments_do_not_cut_a_url() {
        let file = parse(
            "[artifact-registry]\n\
             package-registry-proxy-npm-url = https://n/npm/#frag\n\
             package-registry-proxy-pip-url = https://user:pw@n/a;b\n",
        )
        .unwrap();
        assert_eq!(
            file.data["package-registry-proxy-npm-url"],
            "https://n/npm/#frag"
        );
        assert_eq!(
            file.data["package-registry-proxy-pip-url"],
            "https://user:pw@n/a;b"
        );
        let kinds: Vec<_> = file.notes.iter().map(|n| (&n.key, &n.kind)).collect();
        assert_eq!(
            kinds,
            [
                (
                    &"package-registry-proxy-npm-url".to_owned(),
                    &NoteKind::InlineComment {
                        incumbent: "https://n/npm/".into()
                    }
                ),
                (
                    &"package-registry-proxy-pip-url".to_owned(),
                    &NoteKind::InlineComment {
                        incumbent: "https://***@n/a".into()
                    }
                ),
            ]
        );
        assert_eq!(file.notes[1].value, "https://***@n/a;b", "redacted");
    }

    #[test]
    fn keys_outside_their_section_are_not_read_but_noted() {
        let file = parse(
            "allow-package-registry-proxy = true\n\
             [artifact-registry]\n\
             http-proxy = squid:3128\n\
             package-registry-proxy-npm-uri = https://n/\n\
             [Cache-Proxy]\n\
             no-proxy = .svc\n\
             [ cache-proxy ]\n\
             allow-cache-proxy = true\n\
             [other]\n\
             name = value\n\
             [cache-proxy]\n\
             http-proxy = a:1\n\
             http-proxy = b:2\n\
             [DEFAULT]\n\
             package-registry-proxy-npm-url = https://n/\n",
        )
        .unwrap();
        assert_eq!(
            file.data,
            [("http-proxy".to_owned(), "b:2".to_owned())].into()
        );
        assert_eq!(file.lines["http-proxy"], 13);
        let notes: Vec<_> = file
            .notes
            .iter()
            .map(|n| (n.line, n.key.as_str(), &n.kind))
            .collect();
        let misplaced = |section: Option<&str>, expected| NoteKind::Misplaced {
            section: section.map(str::to_owned),
            expected,
        };
        assert_eq!(
            notes,
            [
                (
                    1,
                    "allow-package-registry-proxy",
                    &misplaced(None, ARTIFACT_REGISTRY_SECTION)
                ),
                (
                    3,
                    "http-proxy",
                    &misplaced(Some(ARTIFACT_REGISTRY_SECTION), CACHE_PROXY_SECTION)
                ),
                (
                    4,
                    "package-registry-proxy-npm-uri",
                    &NoteKind::UnknownKey {
                        section: ARTIFACT_REGISTRY_SECTION
                    }
                ),
                (
                    6,
                    "no-proxy",
                    &misplaced(Some("Cache-Proxy"), CACHE_PROXY_SECTION)
                ),
                (
                    8,
                    "allow-cache-proxy",
                    &misplaced(Some(" cache-proxy "), CACHE_PROXY_SECTION)
                ),
                (
                    15,
                    "package-registry-proxy-npm-url",
                    &misplaced(None, ARTIFACT_REGISTRY_SECTION)
                ),
            ]
        );
    }

    #[test]
    fn quoted_keys_and_interpolation() {
        let file =
            parse("[cache-proxy]\n\"http-proxy\" = squid:3128\n`no-proxy`: %(hosts)s\n").unwrap();
        assert_eq!(file.data["http-proxy"], "squid:3128");
        assert_eq!(file.data["no-proxy"], "%(hosts)s");
        assert_eq!(file.notes[0].kind, NoteKind::Interpolation);
        assert!(!has_interpolation("https://n/%28x%29s"));
        assert!(!has_interpolation("%()s"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let table: [(&str, IniError); 7] = [
            (
                "[cache-proxy\n",
                (1, IniSyntax::UnclosedSection("[cache-proxy".into())),
            ),
            ("\n[]\n", (2, IniSyntax::EmptySection)),
            (
                "[a]\ntoken@nexus/npm/\n",
                (2, IniSyntax::NoDelimiter("***@nexus/npm/".into())),
            ),
            ("[a]\n= x\n", (2, IniSyntax::EmptyKey)),
            ("[a]\n\"\" = x\n", (2, IniSyntax::EmptyKey)),
            ("\"key = x\n", (1, IniSyntax::KeyQuote)),
            (
                "[a]\nk = `open\nstill open\n",
                (2, IniSyntax::ValueQuote("`")),
            ),
        ];
        for (content, want) in table {
            assert_eq!(parse(content).unwrap_err(), want, "{content:?}");
        }
    }
}
