//! The `tenantform` command: parses arguments, runs the command (one function each, in
//! [`cli`]), and maps the outcome to an exit code (0 success / no changes, 1 error, 2
//! changes present with `--detailed-exitcode`, 130 interrupted).

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tenantform::Engine;
use tenantform::report::Style;

use cli::Outcome;
use cli::api::{cmd_serve, cmd_token};
use cli::apply::{cmd_apply, cmd_destroy, cmd_plan};
use cli::args::{Cli, Command};
use cli::drift::{cmd_adopt, cmd_drift, cmd_import, cmd_refresh};
use cli::manual::{cmd_completions, cmd_man};
use cli::request::{cmd_request, cmd_validate_tenant};
use cli::runs::{cmd_runs, cmd_worker};
use cli::state::{cmd_force_unlock, cmd_output, cmd_show, cmd_state, cmd_validate};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are answers; a usage error exits 1, as Terraform's do:
            // with `--detailed-exitcode`, 2 means only "changes present".
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Every `--json` flag of every command means "a tool reads stdout": an error is
    // then JSON there too (and text on stderr for the person watching).
    let json = std::env::args_os().any(|a| a == "--json");
    quiet_on_closed_pipe();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("TENANTFORM_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                // The SDK's credential chain warns, with a raw dump, of every source it
                // tried; a missing credential is reported once, by the engine.
                "warn,aws_config::meta::credentials=error,aws_config::imds=error",
            )
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Test builds only: `FAILPOINTS` arms the crash harness's failpoints (tests/crash.rs).
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Changes) => ExitCode::from(2),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e) => {
            // Errors quote input back (names, paths, values): never let a terminal act
            // on a control character in them.
            let mut message = format!("{e:#}");
            if let Some(hint) = cli::advice::advice(&e) {
                message = format!("{message}\n\nHint: {hint}");
            }
            eprintln!("Error: {}", tenantform::spec::printable_lines(&message));
            if json {
                cli::machine::emit(cli::machine::diagnostic(&message, None));
            }
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let style = Style {
        color: cli.color(std::io::stdout().is_terminal()),
    };
    let engine = Engine::new(cli.engine_config());
    match &cli.command {
        Command::Validate { json } => cmd_validate(&engine, *json),
        Command::Plan(args) => cmd_plan(&engine, args, style).await,
        Command::Apply(args) => cmd_apply(&engine, args, style).await,
        Command::Destroy(args) => cmd_destroy(&engine, args, style).await,
        Command::Show(args) => cmd_show(&engine, args, style).await,
        Command::Output(args) => cmd_output(&engine, args).await,
        Command::State(cmd) => cmd_state(&engine, cmd, style).await,
        Command::Drift(args) => cmd_drift(&engine, args, style).await,
        Command::Refresh(args) => cmd_refresh(&engine, args, style).await,
        Command::Import(args) => cmd_import(&engine, args).await,
        Command::Adopt(args) => cmd_adopt(&engine, args, style).await,
        Command::Request(cmd) => Box::pin(cmd_request(&cli, &engine, cmd)).await,
        Command::Worker(args) => Box::pin(cmd_worker(&cli, args)).await,
        Command::Runs(cmd) => Box::pin(cmd_runs(&cli, cmd)).await,
        Command::ValidateTenant { id, json } => {
            Box::pin(cmd_validate_tenant(&cli, &engine, id, *json)).await
        }
        Command::Serve { listen } => Box::pin(cmd_serve(&cli, *listen)).await,
        Command::Token(cmd) => cmd_token(cmd),
        Command::Completions { shell } => cmd_completions(*shell),
        Command::Man => cmd_man(),
        Command::ForceUnlock {
            tenant,
            lock_id,
            force,
        } => cmd_force_unlock(&engine, tenant, lock_id, *force).await,
    }
}

/// A closed stdout (`tenantform state list | head -1`) ends the command quietly with
/// 141 (128 + SIGPIPE: what a shell reports for a tool that the closed pipe stopped),
/// instead of a panic message. Rust reports the closed pipe as a panic of `print!`;
/// this hook recognizes it and exits, as the signal would. Every other panic is
/// reported as before. State is safe either way: it is checkpointed after every step.
fn quiet_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}
