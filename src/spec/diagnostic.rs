//! Errors in spec files, each pointing at a file, a line and a field, with a fix.
//!
//! A diagnostic never shows a control character as it is: input is quoted back to the
//! person who wrote it, and a terminal would act on an escape sequence or a NUL instead
//! of showing it ([`printable`]).

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem in one spec file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecDiagnostic {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key the problem is about (`tier`, `tiers.gold.sla_latency_ms`).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl SpecDiagnostic {
    /// A problem with `file` as a whole (no line, column or field yet).
    pub fn new(file: &Path, message: impl Into<String>, fix: impl Into<String>) -> Self {
        SpecDiagnostic {
            file: file.to_owned(),
            line: None,
            column: None,
            field: None,
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// The same diagnostic, about key `field`.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Places the diagnostic at byte `offset` of `source`.
    pub fn at(mut self, source: &str, offset: usize) -> Self {
        let (line, column) = line_and_column(source, offset);
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", printable(&self.file.display().to_string()))?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{}`: ", printable(field))?;
        }
        write!(f, "{}", printable(&self.message))?;
        if !self.fix.is_empty() {
            write!(f, "; {}", printable(&self.fix))?;
        }
        Ok(())
    }
}

/// Whether `c` must not reach a terminal as it is: a control character (C0, DEL, C1),
/// or a bidirectional formatting character, which reorders what a reader sees.
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unprintable character ([`is_unprintable`]) written as an escape
/// (`\u{1b}`, `\0` as `\u{0}`, a newline as `\n`), so that it can be shown on one line.
pub fn printable(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Like [`printable`], but keeps newlines: for messages of several lines.
pub fn printable_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let bad = |c: char| is_unprintable(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The result of `validate --json`, in the shape of `terraform validate -json`
/// (`format_version`, `valid`, `error_count`, `warning_count`, `diagnostics` with
/// `severity`, `summary`, `detail` and `range`), each diagnostic also with its `field`
/// and `fix`, so that an editor or a CI annotator reads it as it reads Terraform's.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ValidationReport {
    pub format_version: &'static str,
    pub valid: bool,
    pub error_count: usize,
    pub warning_count: usize,
    pub diagnostics: Vec<serde_json::Value>,
}

impl ValidationReport {
    /// The report of specs that loaded (`Ok`) or of the problems found.
    pub fn new(result: Result<(), &SpecErrors>) -> Self {
        let diagnostics: Vec<serde_json::Value> = match result {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0.iter().map(SpecDiagnostic::to_json).collect(),
        };
        ValidationReport {
            format_version: "1.0",
            valid: diagnostics.is_empty(),
            error_count: diagnostics.len(),
            warning_count: 0,
            diagnostics,
        }
    }
}

impl SpecDiagnostic {
    fn to_json(&self) -> serde_json::Value {
        let file = self.file.display().to_string();
        let mut d = serde_json::json!({
            "severity": "error",
            "summary": self.message,
            "detail": self.fix,
            "field": self.field,
            "fix": self.fix,
            "range": {"filename": file},
        });
        if let Some(line) = self.line {
            d["range"]["start"] = serde_json::json!({"line": line, "column": self.column});
        }
        d
    }
}

/// All the problems found in a set of spec files. Loading reports every problem it
/// can find in one go, so that a person fixes them all before the next run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecDiagnostic>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the specs; nothing was changed:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let mut cut = offset;
    while !source.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &source[..cut];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Turns a TOML parse or type error into a diagnostic with a fix a person can act on.
pub fn from_toml_error(file: &Path, source: &str, err: &toml::de::Error) -> SpecDiagnostic {
    let message = shorten_literals(err.message().trim());
    let fix = if message.starts_with("unknown field") {
        "remove the key or correct its spelling".to_owned()
    } else if message.starts_with("missing field") {
        "add the key; see the example specs in specs/ and the README's spec format".to_owned()
    } else if message.starts_with("unknown variant") {
        "use one of the values the message lists".to_owned()
    } else if message.starts_with("invalid type") {
        "write the value with the type the message expects (strings in quotes, numbers without)"
            .to_owned()
    } else if message.starts_with("invalid value") || message.contains("out of range") {
        "write a value in the range the message names".to_owned()
    } else {
        "fix the TOML syntax at this place".to_owned()
    };
    // Only "unknown field" and "missing field" quote a key; the others ("invalid type:
    // floating point `1.5`", "unknown variant `x`") quote the value. There the key is the
    // one whose value sits at the error's place.
    let field = if message.starts_with("unknown field") || message.starts_with("missing field") {
        field_in_message(&message)
    } else {
        err.span()
            .and_then(|span| SourceMap::new(source).key_at(span.start))
    };
    let mut d = SpecDiagnostic::new(file, message, fix);
    if let Some(field) = field {
        d = d.field(field);
    }
    match err.span() {
        Some(span) => d.at(source, span.start),
        None => d,
    }
}

/// The key named in a serde message like "unknown field `tire`, expected ...".
fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// A message with every quoted literal of more than 40 characters cut short: a value of
/// hundreds of digits helps nobody find the mistake.
fn shorten_literals(message: &str) -> String {
    const MAX: usize = 40;
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            let n = part.chars().count();
            if i % 2 == 1 && n > MAX {
                Cow::Owned(format!(
                    "{}… ({n} characters)",
                    part.chars().take(MAX).collect::<String>()
                ))
            } else {
                Cow::Borrowed(part)
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// Where keys and values are in a TOML source, to place a diagnostic found after parsing
/// (a semantic problem) on the line that defines the key, and to name the key of a value
/// that had the wrong type.
pub struct SourceMap<'s> {
    root: Option<Spanned<DeTable<'s>>>,
}

impl<'s> SourceMap<'s> {
    /// The map of `source`. Never fails: a source with a syntax error still maps the keys
    /// around it.
    pub fn new(source: &'s str) -> Self {
        // Best effort: a source with a syntax error still maps the keys around it.
        SourceMap {
            root: Some(DeTable::parse_recoverable(source).0),
        }
    }

    /// The byte offset of the key at `path` (`["tiers", "gold", "s3_glacier_days"]`), or
    /// of the deepest part of the path that exists.
    pub fn offset_of(&self, path: &[&str]) -> Option<usize> {
        let mut table = self.root.as_ref()?.get_ref();
        let mut found = None;
        for (i, part) in path.iter().enumerate() {
            let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == *part) else {
                break;
            };
            found = Some(key.span().start);
            if i + 1 == path.len() {
                break;
            }
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                _ => break,
            }
        }
        found
    }

    /// The dotted path of the deepest key whose value holds byte `offset`.
    pub fn key_at(&self, offset: usize) -> Option<String> {
        fn walk(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
            for (key, value) in table.iter() {
                path.push(key.get_ref().to_string());
                // A table holds the offset through one of its keys, or (its header)
                // itself.
                match value.get_ref() {
                    DeValue::Table(t) if walk(t, offset, path) => return true,
                    _ if value.span().contains(&offset) => return true,
                    _ => {}
                }
                path.pop();
            }
            false
        }
        let mut path = Vec::new();
        walk(self.root.as_ref()?.get_ref(), offset, &mut path).then(|| path.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_columns() {
        let s = "a = 1\nbé = 2\n";
        assert_eq!(line_and_column(s, 0), (1, 1));
        assert_eq!(line_and_column(s, 6), (2, 1));
        // 'é' is two bytes but one character: byte 9 is the third character.
        assert_eq!(line_and_column(s, 9), (2, 3));
        assert_eq!(line_and_column(s, 999), (3, 1));
    }

    #[test]
    fn display_names_file_line_field_and_fix() {
        let d = SpecDiagnostic::new(Path::new("specs/tenants/x.toml"), "bad", "do this")
            .field("tier")
            .at("a\nb", 2);
        assert_eq!(
            d.to_string(),
            "specs/tenants/x.toml:2:1: field `tier`: bad; do this"
        );
    }

    #[test]
    fn control_characters_are_shown_as_escapes() {
        let d = SpecDiagnostic::new(
            Path::new("x.toml"),
            "name \"a\u{1b}[31mb\0c\u{202E}\" is bad",
            "fix\n it",
        );
        let text = d.to_string();
        assert!(!text.chars().any(is_unprintable), "{text:?}");
        assert!(text.contains(r"a\u{1b}[31mb\u{0}c\u{202e}"), "{text}");
        assert!(text.contains(r"fix\n it"), "{text}");
        assert_eq!(printable_lines("a\nb\u{7}"), "a\nb\\u{7}");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn type_errors_name_the_key_not_the_value() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: String,
            inner: Inner,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inner {
            n: i64,
        }
        let big = "9".repeat(309);
        for (source, field) in [
            ("a = \"x\"\n[inner]\nn = 1.5\n".to_owned(), "inner.n"),
            (format!("a = \"x\"\n[inner]\nn = {big}\n"), "inner.n"),
            ("a = 3\n[inner]\nn = 1\n".to_owned(), "a"),
        ] {
            let err = toml::from_str::<T>(&source).unwrap_err();
            let d = from_toml_error(Path::new("p.toml"), &source, &err);
            assert_eq!(d.field.as_deref(), Some(field), "{d}");
            assert!(!d.to_string().contains(&big), "{d}");
            assert!(d.line.is_some(), "{d}");
        }
    }

    #[test]
    fn long_quoted_literals_are_cut() {
        let long = "1".repeat(100);
        let m = shorten_literals(&format!("invalid type: `{long}`, expected `i64`"));
        assert!(m.len() < 100, "{m}");
        assert!(m.contains("(100 characters)"), "{m}");
        assert!(m.ends_with("expected `i64`"), "{m}");
    }

    #[test]
    fn source_map_finds_keys_and_their_lines() {
        let source = "[tiers.gold]\ns3_glacier_days = 40\n[regions.x]\ncost = 1\n";
        let map = SourceMap::new(source);
        let at = map
            .offset_of(&["tiers", "gold", "s3_glacier_days"])
            .unwrap();
        assert_eq!(line_and_column(source, at).0, 2);
        let at = map.offset_of(&["regions", "x", "nope"]).unwrap();
        assert_eq!(line_and_column(source, at).0, 3);
        assert_eq!(
            map.key_at(source.find("40").unwrap()).as_deref(),
            Some("tiers.gold.s3_glacier_days")
        );
    }
}
