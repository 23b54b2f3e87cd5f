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
    /// The report's JSON view, pretty-printed; its shape is documented in the README.
    Json,
    /// Markdown, for a pull-request comment, a chat message or an issue.
    Markdown,
}

/// A value the engine reports, printable in every [`OutputFormat`] it has.
pub trait Report {
    /// What the report is, for a message saying it has no form asked for ("a plan").
    const NAME: &'static str;

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
                let mut text =
                    serde_json::to_string_pretty(&self.json()).expect("a JSON value prints");
                text.push('\n');
                Some(text)
            }
            OutputFormat::Markdown => self.markdown(),
        }
    }
}

impl Report for crate::Plan {
    const NAME: &'static str = "a plan";

    fn human(&self, style: Style) -> String {
        crate::plan::render::human(self, style)
    }

    fn json(&self) -> Value {
        crate::plan::render::json(self)
    }

    fn markdown(&self) -> Option<String> {
        Some(crate::plan::render::markdown(self))
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
