//! The command line's own documentation in the forms shells and `man` read: completion
//! scripts and a manual page, both drawn from the same definitions as `--help`, so they
//! cannot disagree with it.

use clap::CommandFactory;

use super::Outcome;
use super::args::Cli;

/// `tenantform completions SHELL`: the completion script on stdout.
pub fn cmd_completions(shell: clap_complete::Shell) -> anyhow::Result<Outcome> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "tenantform", &mut script);
    // Through print!, so that a closed stdout ends the command quietly (main.rs).
    print!("{}", String::from_utf8_lossy(&script));
    Ok(Outcome::Ok)
}

/// `tenantform man`: the manual page (roff) on stdout, every command in it.
pub fn cmd_man() -> anyhow::Result<Outcome> {
    let command = Cli::command();
    let mut page = Vec::new();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    // One section per command, with its own flags: what `tenantform CMD --help` says.
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_name();
        roff_section(&mut page, &format!("TENANTFORM {}", name.to_uppercase()))?;
        let sub_man = clap_mangen::Man::new(sub.clone().bin_name(format!("tenantform {name}")));
        let mut body = Vec::new();
        sub_man.render_synopsis_section(&mut body)?;
        body.extend_from_slice(b".PP\n");
        sub_man.render_description_section(&mut body)?;
        sub_man.render_options_section(&mut body)?;
        if sub.has_subcommands() {
            sub_man.render_subcommands_section(&mut body)?;
        }
        page.extend(strip_headers(&body));
    }
    man.render_extra_section(&mut page)?;
    man.render_version_section(&mut page)?;
    print!("{}", String::from_utf8_lossy(&page));
    Ok(Outcome::Ok)
}

fn roff_section(out: &mut Vec<u8>, title: &str) -> std::io::Result<()> {
    std::io::Write::write_all(out, format!(".SH \"{title}\"\n").as_bytes())
}

/// A command's description and options without their own `.SH` headers, to sit under
/// the command's section.
fn strip_headers(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.starts_with(".SH "))
        .flat_map(|l| [l, "\n"])
        .collect::<String>()
        .into_bytes()
}
