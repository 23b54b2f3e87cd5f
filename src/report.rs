//! One switch between the forms of everything the engine reports: a plan, a drift
//! report, a view of state. Each report keeps its renderings beside it
//! ([`crate::plan::render`], [`crate::drift::render`], [`crate::show`]); [`Report`] is
//! what they have in common, so that the CLI, a server and a library user print the
//! same text and the same JSON for the same value.

use serde_json::Value;

pub use crate::plan::render::Style;

/// The form a person or a machine asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Text for a terminal (coloured if the [`Style`] says so).
    #[default]
    Human,
    /// The report's JSON view (pretty-printed, but a plan on one line); its shape is
    /// documented in the README.
    Json,
    /// Markdown, for a pull-request comment, a chat message or an issue.
    Markdown,
}

/// A value the engine reports, printable in every [`OutputFormat`] it has.
pub trait Report {
    /// What the report is, for a message saying it has no form asked for ("a plan").
    const NAME: &'static str;

    /// Whether the JSON form is printed on one line rather than pretty-printed.
    const ONE_LINE_JSON: bool = false;

    /// The text a person reads in a terminal.
    fn human(&self, style: Style) -> String;

    /// The machine-readable view.
    fn json(&self) -> Value;

    /// The Markdown form, if the report has one.
    fn markdown(&self) -> Option<String> {
        None
    }

    /// The report in `format`, ending with a newline; `None` if it has no such form.
    fn render(&self, format: OutputFormat, style: Style) -> Option<String> {
        match format {
            OutputFormat::Human => Some(self.human(style)),
            OutputFormat::Json => {
                let json = self.json();
                let mut text = if Self::ONE_LINE_JSON {
                    serde_json::to_string(&json)
                } else {
                    serde_json::to_string_pretty(&json)
                }
                .expect("a JSON value prints");
                text.push('\n');
                Some(text)
            }
            OutputFormat::Markdown => self.markdown(),
        }
    }

    /// Writes the report in `format` to `out`, what [`Report::render`] returns;
    /// `None` if it has no such form. A report whose JSON form is large writes it in
    /// parts rather than building it whole first.
    fn write(
        &self,
        format: OutputFormat,
        style: Style,
        out: &mut dyn std::io::Write,
    ) -> Option<std::io::Result<()>> {
        self.render(format, style)
            .map(|text| out.write_all(text.as_bytes()))
    }
}

impl Report for crate::Plan {
    const NAME: &'static str = "a plan";
    // terraform-compliance reads only the second line of a multi-line plan file.
    const ONE_LINE_JSON: bool = true;

    fn human(&self, style: Style) -> String {
        crate::plan::render::human(self, style)
    }

    fn json(&self) -> Value {
        crate::plan::render::json(self)
    }

    fn markdown(&self) -> Option<String> {
        Some(crate::plan::render::markdown(self))
    }

    /// The JSON form tenant by tenant and resource by resource
    /// ([`crate::plan::render::write_json`]): a plan of thousands of tenants keeps
    /// near the memory of its other forms.
    fn write(
        &self,
        format: OutputFormat,
        style: Style,
        out: &mut dyn std::io::Write,
    ) -> Option<std::io::Result<()>> {
        match format {
            OutputFormat::Json => {
                Some(crate::plan::render::write_json(self, out).and_then(|()| out.write_all(b"\n")))
            }
            _ => self
                .render(format, style)
                .map(|text| out.write_all(text.as_bytes())),
        }
    }
}

impl Report for crate::DriftReport {
    const NAME: &'static str = "a drift report";

    fn human(&self, style: Style) -> String {
        crate::drift::render::human(self, style)
    }

    fn json(&self) -> Value {
        crate::drift::render::json(self)
    }

    fn markdown(&self) -> Option<String> {
        Some(crate::drift::render::markdown(self))
    }
}

/// Snapshot tests of whole renderings: one `check` per report, comparing with an inline
/// `expect![[..]]` or an `expect_file![..]` (`UPDATE_EXPECT=1 cargo test` rewrites them).
#[cfg(test)]
pub(crate) mod snapshot {
    use super::{OutputFormat, Report, Style};

    /// An inline or a file snapshot.
    pub(crate) trait Snapshot {
        fn assert_eq(&self, actual: &str);
    }

    impl Snapshot for expect_test::Expect {
        fn assert_eq(&self, actual: &str) {
            expect_test::Expect::assert_eq(self, actual)
        }
    }

    impl Snapshot for expect_test::ExpectFile {
        fn assert_eq(&self, actual: &str) {
            expect_test::ExpectFile::assert_eq(self, actual)
        }
    }

    /// `report` in `format`, without colours, with what differs from run to run
    /// replaced (see [`stable`]; the checkout's own path becomes `<repo>`).
    pub(crate) fn rendered<R: Report>(report: &R, format: OutputFormat) -> String {
        let text = match format {
            // Through the JSON value, so that every string is seen whole.
            OutputFormat::Json => {
                let mut v = report.json();
                stable(&mut v);
                let mut text = serde_json::to_string_pretty(&v).expect("a JSON value prints");
                text.push('\n');
                text
            }
            _ => report
                .render(format, Style { color: false })
                .unwrap_or_else(|| panic!("{} has no {format:?} form", R::NAME)),
        };
        // Paths under the checkout (a dashboard's file) differ from clone to clone.
        let text = text.replace(env!("CARGO_MANIFEST_DIR"), "<repo>");
        assert!(
            !text.contains("s3cret"),
            "a secret of the fixtures is in the output:\n{text}"
        );
        text
    }

    /// Replaces the values that differ from run to run: timestamps (`<timestamp>`),
    /// UUIDs such as a state's lineage (`<uuid>`), and this build's version
    /// (`<version>`).
    pub(crate) fn stable(v: &mut serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::String(s) => {
                if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
                    *s = "<timestamp>".into();
                } else if uuid::Uuid::try_parse(s).is_ok() {
                    *s = "<uuid>".into();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(stable),
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    if k == "tenantform_version" {
                        *item = Value::String("<version>".into());
                    } else {
                        stable(item);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}
