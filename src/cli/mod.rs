//! The binary's side of tenantform: argument parsing ([`args`]) and one function per
//! command, grouped by what the commands work on. Each command calls the library and
//! prints what it returns; the texts of plans, drift reports and views of state are
//! the library's ([`tenantform::Report`]), so that every user of the library gets the
//! same.

pub mod advice;
pub mod api;
pub mod apply;
pub mod args;
pub mod drift;
pub mod machine;
pub mod manual;
pub mod progress;
pub mod request;
pub mod runs;
pub mod state;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use tenantform::report::Style;
use tenantform::{OutputFormat, Report};

/// What a command says about the run, beyond success; mapped to the exit code.
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 2: there are changes (`plan`) or drift (`drift`), with `--detailed-exitcode`.
    Changes,
    /// Exit 130: interrupted; state is saved.
    Interrupted,
    /// Exit 1, the failure already reported on stdout (`validate --json`).
    Failed,
}

/// Prints `report` in `format`; an error if the report has no such form.
pub fn print_report<R: Report>(
    report: &R,
    format: OutputFormat,
    style: Style,
) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match report.write(format, style, &mut out) {
        Some(written) => {
            written?;
            out.flush()?;
            Ok(())
        }
        None => bail!(
            "{} has no {format:?} form; print it as text (the default) or with --json",
            R::NAME
        ),
    }
}

/// Asks on the terminal whether to `what`; only `yes` is yes. Refuses (an error) when
/// stdin is not a terminal, so that nothing runs unreviewed in a script.
pub fn confirm(what: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "confirmation needed but stdin is not a terminal; nothing was changed: review the plan and pass --auto-approve"
        );
    }
    print!("\nDo you want to {what}? Only 'yes' is accepted: ");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(line.trim() == "yes")
}

/// Prints `value` as indented JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// "s" unless there is one.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
