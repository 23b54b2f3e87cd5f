//! Errors in spec files, each pointing at a file, a line and a field, with a fix.

use std::fmt;
use std::path::{Path, PathBuf};

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
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
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
    let message = err.message().trim().to_owned();
    let fix = if message.starts_with("unknown field") {
        "remove the key or correct its spelling".to_owned()
    } else if message.starts_with("missing field") {
        "add the key; see the example specs in specs/ and the README's spec format".to_owned()
    } else if message.starts_with("unknown variant") {
        "use one of the values the message lists".to_owned()
    } else if message.starts_with("invalid type") {
        "write the value with the type the message expects (strings in quotes, numbers without)"
            .to_owned()
    } else {
        "fix the TOML syntax at this place".to_owned()
    };
    // In "unknown variant `x`, expected ..." the quoted word is the value, not a key.
    let field = if message.starts_with("unknown variant") {
        None
    } else {
        field_in_message(&message)
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
}
