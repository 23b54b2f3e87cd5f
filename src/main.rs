//! The `tenantform` command: parses arguments, calls the library, prints, and maps
//! the outcome to an exit code (0 success / no changes, 1 error, 2 changes present
//! with `--detailed-exitcode`, 130 interrupted).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use tenantform::apply::{ApplyReport, Progress, ProgressSink, StepOutcome, TenantOutcome};
use tenantform::drift::render as drift_render;
use tenantform::outputs::outputs_json;
use tenantform::plan::graph::StepKind;
use tenantform::plan::render::{self, Style};
use tenantform::runs::render as runs_render;
use tenantform::runs::{
    NewRun, ProvisionResult, Run, RunContext, RunEvent, RunFilter, RunQueue, RunStatus, RunView,
    Shutdown, Worker, follow, settle, view,
};
use tenantform::secret::REDACTED;
use tenantform::spec::RunExecutor;
use tenantform::workflow::Workflow;
use tenantform::workflow::render as wf_render;
use tenantform::workflow::status::RequestStatus;
use tenantform::{
    ApplyOptions, Engine, EngineConfig, Plan, PlanMode, PlanOptions, ResourceAddress, TenantId,
};

const EXAMPLES: &str = "\
Examples:
  tenantform validate
  tenantform plan --detailed-exitcode --out tenants.plan
  tenantform plan --json > plan.json          # Terraform-style machine-readable plan
  tenantform plan --markdown > comment.md     # for a pull-request comment
  tenantform apply tenants.plan               # apply exactly what was reviewed
  tenantform apply --tenant retail-chain --auto-approve
  tenantform destroy --tenant retail-chain --auto-approve
  tenantform show --tenant retail-chain
  tenantform state list
  tenantform force-unlock retail-chain 6c1f...
  tenantform drift --detailed-exitcode --markdown   # scheduled drift run: exit 2 on drift
  tenantform refresh --tenant retail-chain          # accept drift into state
  tenantform import retail-chain/postgres_schema.main tenant_retail_chain
  tenantform worker --concurrency 2                 # execute queued runs ([runs] executor = \"workers\")
  tenantform runs list                              # queue positions, who blocks whom
  tenantform runs show 6c1f2a3b --follow            # a run's steps as they happen

Environment: PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE (admin connection), as printed
by `scripts/stack env`. Log detail: TENANTFORM_LOG=info (or debug).";

/// Declarative tenant infrastructure: plan, apply, destroy.
#[derive(Parser)]
#[command(name = "tenantform", version, after_help = EXAMPLES)]
struct Cli {
    /// Directory with platform.toml and tenants/*.toml.
    #[arg(long, global = true, default_value = "specs", value_name = "DIR")]
    specs: PathBuf,
    /// Directory with the state files.
    #[arg(long, global = true, default_value = "state", value_name = "DIR")]
    state: PathBuf,
    /// No ANSI colours in output (also when NO_COLOR is set or output is not a terminal).
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every spec file; print every problem with its file, line, field and fix.
    Validate,
    /// Show what apply would do. Changes nothing.
    Plan(PlanArgs),
    /// Make the tenants match their specs (or apply a saved plan).
    Apply(ApplyArgs),
    /// Delete every resource of the selected tenants.
    Destroy(DestroyArgs),
    /// Show tenants' resources and outputs, or a saved plan.
    Show(ShowArgs),
    /// Inspect state.
    #[command(subcommand)]
    State(StateCommand),
    /// Read every managed resource back and report what changed behind tenantform's
    /// back (drift), apart from spec changes not yet applied. Changes nothing.
    Drift(DriftArgs),
    /// Accept reality into state (record drift instead of repairing it).
    Refresh(RefreshArgs),
    /// Adopt an existing resource (made by hand) into its tenant's state.
    Import(ImportArgs),
    /// Tenant requests: submit, approve, reject, status, list, retry.
    #[command(subcommand)]
    Request(RequestCommand),
    /// Run the validation suite on an active tenant (a daily check of its configuration).
    ValidateTenant {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Serve /metrics (Prometheus) and a read-only view of requests over HTTP.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
    },
    /// Execute queued runs (provisionings, plans, applies) from the platform database,
    /// up to --concurrency at once; any number of workers on any machines. SIGTERM:
    /// finish the runs in flight and exit; a second signal releases them at once.
    Worker(WorkerArgs),
    /// Runs: list, show (--follow), start, apply (a planned run), discard, cancel,
    /// resume.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Break a tenant's lock held by a stuck process.
    ForceUnlock {
        tenant: TenantId,
        /// The lock id shown in the "locked by" message.
        lock_id: String,
    },
}

#[derive(Args, Clone)]
struct Selection {
    /// Limit the run to this tenant (repeatable).
    #[arg(long = "tenant", value_name = "ID")]
    tenants: Vec<TenantId>,
    /// Provider calls in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    selection: Selection,
    /// Read managed resources back first (default true), so that drift shows up.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    refresh: bool,
    /// Save the plan for `tenantform apply FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the plan as JSON (Terraform's action vocabulary; see README).
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print the plan as Markdown, for a pull-request comment.
    #[arg(long)]
    markdown: bool,
    /// Exit 0 with no changes, 2 with changes, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Plan the deletion of the selected tenants.
    #[arg(long)]
    destroy: bool,
    /// Replace this resource even if unchanged (repeatable), e.g. acme/postgres_role.app.
    #[arg(long, value_name = "ADDR")]
    replace: Vec<ResourceAddress>,
}

#[derive(Args)]
struct ApplyArgs {
    /// A plan saved with `plan --out`; applied exactly, if state has not moved on.
    planfile: Option<PathBuf>,
    #[command(flatten)]
    selection: Selection,
    /// Read managed resources back first (default true), so that drift is repaired.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    refresh: bool,
    /// Replace this resource even if unchanged (repeatable).
    #[arg(long, value_name = "ADDR")]
    replace: Vec<ResourceAddress>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct DestroyArgs {
    #[command(flatten)]
    selection: Selection,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
    /// Wait this long for a tenant's lock (e.g. 30s, 2m); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    lock_timeout: Duration,
    /// Keep what a failed new tenant got, for debugging, instead of rolling it back.
    #[arg(long)]
    no_rollback: bool,
    /// Print the apply report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DriftArgs {
    #[command(flatten)]
    selection: Selection,
    /// Print the report as JSON (see README), for alerting.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print the report as Markdown, for a chat message or an issue.
    #[arg(long)]
    markdown: bool,
    /// Exit 0 without drift, 2 with drift, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
}

#[derive(Args)]
struct RefreshArgs {
    #[command(flatten)]
    selection: Selection,
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
    /// Wait this long for a tenant's lock (e.g. 30s, 2m); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    lock_timeout: Duration,
}

#[derive(Args)]
struct ImportArgs {
    /// Where the resource goes, e.g. acme/postgres_schema.main.
    address: ResourceAddress,
    /// The real object's identity, e.g. tenant_acme (a schema) or rag-acme-documents (a bucket).
    id: String,
    /// Wait this long for the tenant's lock (e.g. 30s, 2m); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    lock_timeout: Duration,
}

#[derive(Args)]
struct WorkerArgs {
    /// Runs executed at once by this worker (of different tenants).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Provider calls in flight at once within one run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
}

#[derive(Subcommand)]
enum RunsCommand {
    /// The newest runs, with queue positions and what blocks them, and the live workers.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only runs in this status (pending, planning, applied, errored, ...).
        #[arg(long)]
        status: Option<tenantform::runs::RunStatus>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One run: status, timestamps, lease, queue position, blocked by, result, events.
    Show {
        /// A run id, or its first characters.
        id: String,
        /// Print the run's events as they happen, until it is settled.
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Queue a run on a tenant: plan, apply, destroy, drift or refresh.
    Start {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        operation: tenantform::runs::Operation,
        /// Apply the plan at once (apply, destroy) instead of stopping at `planned`.
        #[arg(long)]
        auto_apply: bool,
        #[arg(long)]
        message: Option<String>,
        #[command(flatten)]
        action: RunAction,
    },
    /// Confirm a planned run: apply exactly its plan, if the tenant's state has not
    /// moved on since.
    Apply {
        id: String,
        #[command(flatten)]
        action: RunAction,
    },
    /// Discard a planned run: its plan is not applied.
    Discard {
        id: String,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// Cancel a run: a queued one at once, a running one after its steps in flight.
    Cancel {
        id: String,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
        #[arg(long)]
        json: bool,
    },
    /// Execute a run here: one whose executor was interrupted, or any queued run.
    Resume {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// Who acts on a run, and how the command waits for it.
#[derive(Args)]
struct RunAction {
    #[arg(long, env = "USER", default_value = "unknown")]
    by: String,
    /// Follow the run to its end (always so with the embedded executor).
    #[arg(long)]
    wait: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum RequestCommand {
    /// Submit a tenant request (a file in the format of specs/tenants/*.toml, or flags).
    /// Submitting the same tenant again returns the existing request. Without required
    /// approvals, provisioning starts at once.
    Submit(SubmitArgs),
    /// Record an approval; the last required one queues the provisioning.
    Approve(DecisionArgs),
    /// Reject a request; this ends it and notifies the requester.
    Reject(DecisionArgs),
    /// Where a request stands: approvals, validation checks, audit trail.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Every request, one line each.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Provision a rolled-back or failed request again.
    Retry {
        id: String,
        #[command(flatten)]
        action: RunAction,
    },
    /// Write a provisioned tenant's spec from the registry to specs/tenants/<id>.toml,
    /// to manage it as a file (in git) from now on.
    Export {
        id: String,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
}

#[derive(Args)]
struct SubmitArgs {
    /// The request as a tenant spec file.
    #[arg(conflicts_with_all = ["id", "name"])]
    file: Option<PathBuf>,
    #[arg(long, required_unless_present = "file")]
    id: Option<String>,
    #[arg(long, required_unless_present = "file")]
    name: Option<String>,
    #[arg(long, required_unless_present = "file")]
    tier: Option<String>,
    #[arg(long, required_unless_present = "file")]
    region: Option<String>,
    /// Monthly budget in INR.
    #[arg(long, required_unless_present = "file")]
    budget_inr: Option<i64>,
    #[arg(long, required_unless_present = "file")]
    owner_email: Option<String>,
    #[arg(long, required_unless_present = "file")]
    cost_center: Option<String>,
    #[arg(long, required_unless_present = "file")]
    data_classification: Option<String>,
    #[arg(long)]
    protected: bool,
    /// Who asks (a name or e-mail address; an address is notified of a rejection).
    #[arg(long, env = "USER", default_value = "unknown")]
    requester: String,
    #[arg(long)]
    notes: Option<String>,
    /// Follow the provisioning to its end (always so with the embedded executor).
    #[arg(long)]
    wait: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DecisionArgs {
    id: String,
    /// The approver role (cfo, cto, legal, compliance, dpo).
    #[arg(long = "as", value_name = "ROLE")]
    role: String,
    /// Who decides.
    #[arg(long, env = "USER", default_value = "unknown")]
    by: String,
    #[arg(long)]
    note: Option<String>,
    /// Follow the provisioning, if this decision starts it, to its end.
    #[arg(long)]
    wait: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ShowArgs {
    /// A saved plan to show instead of state.
    planfile: Option<PathBuf>,
    #[arg(long = "tenant", value_name = "ID")]
    tenants: Vec<TenantId>,
    #[arg(long)]
    json: bool,
    /// Print sensitive outputs (passwords) instead of redacting them.
    #[arg(long)]
    show_secrets: bool,
}

#[derive(Subcommand)]
enum StateCommand {
    /// List the resources in state.
    List {
        #[arg(long = "tenant", value_name = "ID")]
        tenants: Vec<TenantId>,
    },
    /// Show one resource's recorded attributes.
    Show {
        address: ResourceAddress,
        #[arg(long)]
        show_secrets: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 2m or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// What the run says about itself.
enum Outcome {
    Ok,
    Changes,
    Interrupted,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENANTFORM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Changes) => ExitCode::from(2),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let style = Style {
        color: !cli.no_color
            && std::env::var_os("NO_COLOR").is_none()
            && std::io::stdout().is_terminal(),
    };
    let config = |sel: Option<&Selection>, lock_timeout: Duration| EngineConfig {
        specs_dir: cli.specs.clone(),
        state_dir: cli.state.clone(),
        parallelism: sel.map_or(10, |s| s.parallelism as usize),
        lock_timeout,
    };
    match &cli.command {
        Command::Validate => {
            // The files: what a pull request changes. The registry's tenants are checked
            // when they are submitted and whenever a plan reads them.
            let specs = tenantform::spec::Specs::load(&cli.specs)?;
            println!(
                "The specs are valid: {} tenant{} on platform {:?} ({} tiers, {} regions).",
                specs.tenants.len(),
                if specs.tenants.len() == 1 { "" } else { "s" },
                specs.platform.platform.name,
                specs.platform.tiers.len(),
                specs.platform.regions.len()
            );
            Ok(Outcome::Ok)
        }
        Command::Plan(args) => {
            let engine = Engine::new(config(Some(&args.selection), Duration::ZERO));
            let plan = engine
                .plan(&PlanOptions {
                    tenants: args.selection.tenants.clone(),
                    refresh: args.refresh,
                    mode: if args.destroy {
                        PlanMode::Destroy
                    } else {
                        PlanMode::Normal
                    },
                    replace: args.replace.clone(),
                })
                .await?;
            print_plan(&plan, args.json, args.markdown, style);
            if let Some(out) = &args.out {
                engine.save_plan(&plan, out)?;
                if !args.json {
                    println!(
                        "Saved the plan to {}. Apply exactly this plan with:\n  tenantform apply {}",
                        out.display(),
                        out.display()
                    );
                }
            }
            let changes = plan.has_changes();
            // The process ends right after: freeing a plan of many thousand resources
            // one allocation at a time would only delay the exit.
            std::mem::forget(plan);
            Ok(if args.detailed_exitcode && changes {
                Outcome::Changes
            } else {
                Outcome::Ok
            })
        }
        Command::Apply(args) => {
            let engine = Engine::new(config(Some(&args.selection), args.run.lock_timeout));
            let (options, cancel) = apply_options(&args.run, &args.selection);
            let progress = progress_sink(args.run.json);
            if let Some(file) = &args.planfile {
                if !args.selection.tenants.is_empty() || !args.replace.is_empty() {
                    bail!(
                        "a saved plan is applied as it is: --tenant and --replace belong to `tenantform plan`"
                    );
                }
                let plan = engine.load_plan(file)?;
                if !plan.has_changes() {
                    println!("The saved plan has no changes. Nothing to do.");
                    return Ok(Outcome::Ok);
                }
                let report = engine.apply_plan(&plan, &options, Some(progress)).await?;
                return finish(&plan, &report, args.run.json, cancel);
            }
            let plan_options = PlanOptions {
                tenants: args.selection.tenants.clone(),
                refresh: args.refresh,
                mode: PlanMode::Normal,
                replace: args.replace.clone(),
            };
            run_interactive(
                &engine,
                plan_options,
                options,
                &args.run,
                progress,
                style,
                cancel,
            )
            .await
        }
        Command::Destroy(args) => {
            let engine = Engine::new(config(Some(&args.selection), args.run.lock_timeout));
            let (options, cancel) = apply_options(&args.run, &args.selection);
            let plan_options = PlanOptions {
                tenants: args.selection.tenants.clone(),
                refresh: false,
                mode: PlanMode::Destroy,
                replace: Vec::new(),
            };
            let progress = progress_sink(args.run.json);
            run_interactive(
                &engine,
                plan_options,
                options,
                &args.run,
                progress,
                style,
                cancel,
            )
            .await
        }
        Command::Show(args) => {
            let engine = Engine::new(config(None, Duration::ZERO));
            if let Some(file) = &args.planfile {
                let plan = engine.load_plan(file)?;
                print_plan(&plan, args.json, false, style);
                return Ok(Outcome::Ok);
            }
            let states = engine.states(&args.tenants)?;
            if args.json {
                let tenants: Vec<_> = states
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "tenant": s.tenant,
                            "serial": s.serial,
                            "lineage": s.lineage,
                            "protected": s.protected,
                            "resources": s.addresses().map(|a| a.to_string()).collect::<Vec<_>>(),
                            "outputs": outputs_json(&engine.outputs(s), args.show_secrets),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "tenants": tenants }))?
                );
                return Ok(Outcome::Ok);
            }
            if states.is_empty() {
                println!("No tenant has any state yet. Run `tenantform apply` first.");
            }
            for s in &states {
                let spec = s.applied_spec.as_ref();
                println!(
                    "Tenant {}{} (state serial {}{})",
                    s.tenant,
                    spec.map(|sp| format!(": {}, {}, {}", sp.name, sp.tier, sp.region))
                        .unwrap_or_default(),
                    s.serial,
                    if s.protected { ", protected" } else { "" }
                );
                println!("  Resources:");
                for (key, r) in &s.resources {
                    let status = match r.status {
                        tenantform::state::ResourceStatus::Created => "",
                        tenantform::state::ResourceStatus::Creating => "  (create interrupted)",
                    };
                    println!("    {key}{status}");
                }
                println!("  Outputs:");
                let outputs = engine.outputs(s);
                let width = outputs.keys().map(|k| k.len()).max().unwrap_or(0);
                for (k, o) in &outputs {
                    let v = if o.sensitive && !args.show_secrets {
                        REDACTED.to_owned()
                    } else {
                        match &o.value {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        }
                    };
                    println!("    {k:width$} = {v}");
                }
                println!();
            }
            Ok(Outcome::Ok)
        }
        Command::State(StateCommand::List { tenants }) => {
            let engine = Engine::new(config(None, Duration::ZERO));
            for s in engine.states(tenants)? {
                for a in s.addresses() {
                    println!("{a}");
                }
            }
            Ok(Outcome::Ok)
        }
        Command::State(StateCommand::Show {
            address,
            show_secrets,
        }) => {
            let engine = Engine::new(config(None, Duration::ZERO));
            let r = engine.state_resource(address)?;
            let attrs = if *show_secrets {
                r.attributes.clone()
            } else {
                tenantform::plan::redact(&r.attributes, r.resource_type)
            };
            println!("# {address} ({:?})", r.status);
            let width = attrs.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k, v) in &attrs {
                println!("{k:width$} = {v}");
            }
            if !r.depends_on.is_empty() {
                let deps: Vec<String> = r.depends_on.iter().map(|d| d.to_string()).collect();
                println!("{:width$} = {}", "depends_on", deps.join(", "));
            }
            Ok(Outcome::Ok)
        }
        Command::Drift(args) => {
            let engine = Engine::new(config(Some(&args.selection), Duration::ZERO));
            let report = engine.drift(&args.selection.tenants).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&drift_render::json(&report))?
                );
            } else if args.markdown {
                print!("{}", drift_render::markdown(&report));
            } else {
                print!("{}", drift_render::human(&report, style));
            }
            Ok(if args.detailed_exitcode && report.has_drift() {
                Outcome::Changes
            } else {
                Outcome::Ok
            })
        }
        Command::Refresh(args) => {
            let engine = Engine::new(config(Some(&args.selection), args.lock_timeout));
            let auto = args.auto_approve;
            let mut refused = None;
            let (report, written) = engine
                .refresh_state(&args.selection.tenants, |report| {
                    print!("{}", drift_render::human(report, style));
                    if auto {
                        return true;
                    }
                    match confirm(
                        "record this drift in state (the resources themselves are not changed)",
                    ) {
                        Ok(yes) => yes,
                        Err(e) => {
                            refused = Some(e);
                            false
                        }
                    }
                })
                .await?;
            if let Some(e) = refused {
                return Err(e);
            }
            if !report.has_drift() {
                print!("{}", drift_render::human(&report, style));
                println!("Nothing to record.");
            } else if written {
                let n = report.summary().tenants_with_drift;
                println!(
                    "Refresh complete! State of {n} tenant{} updated to match reality.",
                    if n == 1 { "" } else { "s" }
                );
            } else {
                println!("Cancelled: nothing was changed.");
            }
            Ok(Outcome::Ok)
        }
        Command::Import(args) => {
            let engine = Engine::new(config(None, args.lock_timeout));
            let r = engine.import(&args.address, &args.id).await?;
            println!(
                "Imported {} ({:?}) into the state of tenant {}. `tenantform plan` shows what, if anything, apply would still change.",
                args.address, args.id, args.address.tenant
            );
            if tenantform::resource::schema(r.resource_type)
                .attributes
                .iter()
                .any(|a| !a.readable && !r.attributes.contains_key(a.name))
            {
                println!(
                    "Note: attributes that cannot be read back (a password) are unknown to tenantform for this resource."
                );
            }
            Ok(Outcome::Ok)
        }
        Command::Request(cmd) => {
            let engine = Engine::new(config(None, Duration::from_secs(60)));
            let runs = RunsCli::load(&cli, 10)?;
            Box::pin(run_request(&engine, &runs, cmd)).await
        }
        Command::Worker(args) => Box::pin(run_worker(&cli, args)).await,
        Command::Runs(cmd) => Box::pin(run_runs(&cli, cmd)).await,
        Command::ValidateTenant { id, json } => {
            let engine = Engine::new(config(None, Duration::ZERO));
            let mut wf = Workflow::open(&engine).await?;
            let results = Box::pin(wf.validate_tenant(id)).await?;
            let failed = results.iter().filter(|r| !r.passed).count();
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"tenant": id, "checks": results})
                    )?
                );
            } else {
                let view = wf.view(id).await?;
                println!(
                    "Validation of tenant {id}: {} of {} checks passed",
                    results.len() - failed,
                    results.len()
                );
                print!("{}", wf_render::checks_table(&view.checks));
            }
            if failed > 0 {
                bail!("{failed} validation check(s) of tenant {id} failed");
            }
            Ok(Outcome::Ok)
        }
        Command::Serve { listen } => {
            let specs = tenantform::spec::Specs::load(&cli.specs)?;
            let pg =
                tenantform::provider::postgres::PostgresConfig::resolve(&specs.platform.postgres)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            eprintln!(
                "Serving /metrics, /healthz, /requests on http://{}",
                listener.local_addr()?
            );
            tenantform::server::serve(listener, pg).await?;
            Ok(Outcome::Ok)
        }
        Command::ForceUnlock { tenant, lock_id } => {
            let engine = Engine::new(config(None, Duration::ZERO));
            let holder = engine.force_unlock(tenant, lock_id)?;
            println!(
                "Broke the lock of tenant {tenant}, held by {holder}. If that process is still running, it no longer excludes others: make sure it is gone."
            );
            Ok(Outcome::Ok)
        }
    }
}

async fn run_request(
    engine: &Engine,
    runs: &RunsCli,
    cmd: &RequestCommand,
) -> anyhow::Result<Outcome> {
    let mut wf = Workflow::open(engine).await?;
    match cmd {
        RequestCommand::Submit(a) => {
            let outcome = match &a.file {
                Some(file) => {
                    Box::pin(wf.submit_file(file, &a.requester, a.notes.as_deref())).await?
                }
                None => {
                    let value = |v: &Option<String>| v.clone().unwrap_or_default();
                    let spec = serde_json::json!({
                        "id": value(&a.id), "name": value(&a.name), "tier": value(&a.tier),
                        "region": value(&a.region), "budget_inr": a.budget_inr.unwrap_or_default(),
                        "owner_email": value(&a.owner_email), "cost_center": value(&a.cost_center),
                        "data_classification": value(&a.data_classification), "protected": a.protected,
                    });
                    let source = toml::to_string(&spec)?;
                    Box::pin(wf.submit_source(
                        std::path::Path::new("<command line>"),
                        &source,
                        &a.requester,
                        a.notes.as_deref(),
                    ))
                    .await?
                }
            };
            let settled = settle_request(runs, &wf, &outcome, a.wait, a.json).await?;
            let r = &settled.request;
            if !a.json {
                if outcome.created {
                    println!("Submitted request {} ({}): {}", r.id, r.name, r.status);
                } else {
                    println!(
                        "Request {} already exists ({}); nothing new was recorded.",
                        r.id, r.status
                    );
                }
                if r.status == RequestStatus::PendingApproval {
                    let roles: Vec<&str> = r
                        .required_approvals
                        .iter()
                        .map(|a| a.role.as_str())
                        .collect();
                    println!("  waiting for: {}", roles.join(", "));
                }
            }
            settled.print(outcome.created, a.json)
        }
        RequestCommand::Approve(d) | RequestCommand::Reject(d) => {
            let approve = matches!(cmd, RequestCommand::Approve(_));
            let outcome = wf
                .decide(&d.id, &d.role, approve, &d.by, d.note.as_deref())
                .await?;
            let settled = settle_request(runs, &wf, &outcome, d.wait, d.json).await?;
            if !d.json {
                println!(
                    "Recorded: {} {} request {}. It is now {}.",
                    d.role,
                    if approve { "approved" } else { "rejected" },
                    d.id,
                    settled.request.status
                );
            }
            settled.print(false, d.json)
        }
        RequestCommand::Retry {
            id,
            action: RunAction { by, wait, json },
        } => {
            let outcome = Box::pin(wf.retry(id, by)).await?;
            let settled = settle_request(runs, &wf, &outcome, *wait, *json).await?;
            if !json {
                println!("Request {id} is now {}.", settled.request.status);
            }
            settled.print(false, *json)
        }
        RequestCommand::Export { id, by } => {
            let path = wf.export(id, by).await?;
            println!(
                "Wrote {}. From now on this file is tenant {id}'s spec (it wins over the registry's copy): commit it, and run workers and plans with this specs directory.",
                path.display()
            );
            Ok(Outcome::Ok)
        }
        RequestCommand::Status { id, json } => {
            let view = wf.view(id).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", wf_render::request_view(&view));
            }
            Ok(Outcome::Ok)
        }
        RequestCommand::List { json } => {
            let list = wf.list().await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"requests": list}))?
                );
            } else if list.is_empty() {
                println!("No requests yet. Submit one with `tenantform request submit FILE`.");
            } else {
                for r in &list {
                    println!("{}", wf_render::request_line(r));
                }
            }
            Ok(Outcome::Ok)
        }
    }
}

/// A request after its command, and the provisioning run the command queued or found.
struct SettledRequest {
    request: tenantform::workflow::registry::Request,
    run: Option<Run>,
    /// The validation suite's results, when the run ran it.
    checks: Vec<tenantform::workflow::registry::CheckRecord>,
    interrupted: bool,
}

impl SettledRequest {
    /// Prints the outcome (the checks table, or the JSON of the request, its checks and
    /// its run) and says how the command exits: 1 when the request ended `rolled_back`
    /// or `failed`, so that scripts notice.
    fn print(&self, created: bool, json: bool) -> anyhow::Result<Outcome> {
        let r = &self.request;
        if json {
            print_json(&serde_json::json!({
                "request": r, "created": created, "checks": self.checks, "run": self.run,
            }))?;
        } else {
            if !self.checks.is_empty() {
                println!(
                    "  validation: {} of {} checks passed",
                    self.checks.iter().filter(|c| c.passed).count(),
                    self.checks.len()
                );
                print!("{}", wf_render::checks_table(&self.checks));
            }
            if let Some(run) = self.run.as_ref().filter(|run| !run.status.is_final()) {
                println!(
                    "  provisioning run {} is {}: follow it with `tenantform runs show {} --follow`",
                    run.short_id(),
                    run.status,
                    run.short_id()
                );
            }
        }
        if self.interrupted {
            return Ok(Outcome::Interrupted);
        }
        match r.status {
            RequestStatus::RolledBack | RequestStatus::Failed => bail!(
                "request {} is {}: {} failed: {}",
                r.id,
                r.status,
                r.failure_step.as_deref().unwrap_or("a step"),
                r.failure_reason
                    .as_deref()
                    .unwrap_or("see `tenantform request status`")
            ),
            _ => Ok(Outcome::Ok),
        }
    }
}

/// After a lifecycle command: when a provisioning run of the request is open, the
/// embedded executor executes it here; with workers, `--wait` follows it to its end
/// (its events on stderr) and otherwise the command returns at once.
async fn settle_request(
    runs: &RunsCli,
    wf: &Workflow<'_>,
    outcome: &tenantform::workflow::Outcome,
    wait: bool,
    json: bool,
) -> anyhow::Result<SettledRequest> {
    let id = outcome.request.id.clone();
    let queue = RunQueue::open(&runs.pg).await?;
    let mut interrupted = false;
    let mut run = queue.open_provision(&id).await?;
    if let Some(open) = &run {
        if runs.cx.settings.executor == RunExecutor::Workers && !wait && !json {
            warn_without_workers(runs, &queue).await?;
        }
        match execute_or_follow(runs, &queue, open.id, wait, wait.then_some(Print::Stderr)).await? {
            Some(done) => run = Some(done),
            None => interrupted = true,
        }
    }
    let checks = run
        .as_ref()
        .filter(|r| r.status.is_final())
        .and_then(|r| r.result.clone())
        .and_then(|v| serde_json::from_value::<ProvisionResult>(v).ok())
        .map(|p| p.checks)
        .unwrap_or_default();
    Ok(SettledRequest {
        request: wf.registry().require(&id).await?,
        run: match run {
            Some(r) => Some(queue.require(r.id).await?),
            None => None,
        },
        checks,
        interrupted,
    })
}

/// Where followed events go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Print {
    Stdout,
    Stderr,
}

/// What the runs commands need: where runs execute and how.
struct RunsCli {
    cx: RunContext,
    pg: tenantform::provider::postgres::PostgresConfig,
    store: tenantform::state::StateStore,
}

impl RunsCli {
    fn load(cli: &Cli, parallelism: usize) -> anyhow::Result<RunsCli> {
        let specs = tenantform::spec::Specs::load(&cli.specs)?;
        let pg = tenantform::provider::postgres::PostgresConfig::resolve(&specs.platform.postgres)?;
        Ok(RunsCli {
            cx: RunContext {
                specs_dir: cli.specs.clone(),
                state_dir: cli.state.clone(),
                parallelism,
                settings: specs.platform.runs.clone(),
            },
            pg,
            store: tenantform::state::StateStore::new(&cli.state),
        })
    }
}

/// Settles a queued run ([`settle`]; Ctrl-C releases an embedded run for `runs
/// resume` or a worker). Events are printed as they happen when `print` says where.
async fn execute_or_follow(
    runs: &RunsCli,
    queue: &RunQueue,
    id: uuid::Uuid,
    wait: bool,
    print: Option<Print>,
) -> anyhow::Result<Option<Run>> {
    let on_event = move |e: &RunEvent| match print {
        Some(Print::Stdout) => println!("{}", runs_render::event_line(e)),
        Some(Print::Stderr) => eprintln!("{}", runs_render::event_line(e)),
        None => {}
    };
    let shutdown = Shutdown::default();
    let interrupt = shutdown.clone();
    let signals = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nInterrupt received: stopping the run and releasing it.");
            interrupt.drain.cancel();
            interrupt.stop.cancel();
        }
    });
    let settled = settle(&runs.cx, &runs.pg, queue, id, wait, shutdown, on_event).await;
    signals.abort();
    let settled = settled?;
    if settled.is_none() {
        eprintln!(
            "Run {id} was released: resume it with `tenantform runs resume {id}`, or a worker takes it over."
        );
    }
    Ok(settled)
}

/// With workers as the executor, says so when none is alive: the run waits.
async fn warn_without_workers(runs: &RunsCli, queue: &RunQueue) -> anyhow::Result<()> {
    let within = Duration::from_secs(runs.cx.settings.lease_secs);
    if queue.live_workers(within).await?.is_empty() {
        eprintln!(
            "Note: no worker has been alive in the last {} s; the run waits until `tenantform worker` runs.",
            within.as_secs()
        );
    }
    Ok(())
}

/// `tenantform worker`: executes queued runs until SIGTERM (or Ctrl-C): the first
/// signal finishes the runs in flight and exits 0, a second releases them at once.
async fn run_worker(cli: &Cli, args: &WorkerArgs) -> anyhow::Result<Outcome> {
    use tokio::signal::unix::{SignalKind, signal};
    let runs = RunsCli::load(cli, args.parallelism as usize)?;
    let worker = Worker::new(runs.cx.clone(), &runs.pg, args.concurrency as usize).await?;
    eprintln!(
        "Worker {} executing up to {} run(s) at once; SIGTERM finishes them and exits.",
        worker.id(),
        args.concurrency
    );
    let shutdown = Shutdown::default();
    let signals = shutdown.clone();
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        for step in 0..2 {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            if step == 0 {
                eprintln!(
                    "Stopping: finishing the runs in flight, claiming no new one (signal again to release them at once)."
                );
                signals.drain.cancel();
            } else {
                eprintln!("Releasing the runs in flight for other workers.");
                signals.stop.cancel();
            }
        }
    });
    worker.run(shutdown).await?;
    eprintln!("Worker stopped.");
    Ok(Outcome::Ok)
}

/// `tenantform runs ...`.
async fn run_runs(cli: &Cli, cmd: &RunsCommand) -> anyhow::Result<Outcome> {
    let runs = RunsCli::load(cli, 10)?;
    let queue = RunQueue::open(&runs.pg).await?;
    // A run that ended badly makes the command fail, so that scripts notice.
    let ended = |run: &Run| -> anyhow::Result<Outcome> {
        match run.status {
            RunStatus::Errored | RunStatus::RolledBack | RunStatus::Canceled => bail!(
                "run {} is {}: {}",
                run.id,
                run.status,
                run.error.as_deref().unwrap_or("see `tenantform runs show`")
            ),
            _ => Ok(Outcome::Ok),
        }
    };
    let show = |v: &RunView, json: bool| -> anyhow::Result<()> {
        if json {
            print_json(v)?;
        } else {
            print!("{}", runs_render::run_details(v));
        }
        Ok(())
    };
    let settle = |id: uuid::Uuid, wait: bool, json: bool| {
        let runs = &runs;
        let queue = &queue;
        async move {
            let print = (!json && (wait || runs.cx.settings.executor == RunExecutor::Embedded))
                .then_some(Print::Stdout);
            execute_or_follow(runs, queue, id, wait, print).await
        }
    };
    match cmd {
        RunsCommand::List {
            tenant,
            status,
            limit,
            json,
        } => {
            let list = queue
                .list(&RunFilter {
                    tenant: tenant.clone(),
                    status: *status,
                    limit: *limit,
                })
                .await?;
            let mut views = Vec::with_capacity(list.len());
            for r in list {
                views.push(view(&queue, &runs.store, r).await?);
            }
            let workers = queue
                .live_workers(Duration::from_secs(runs.cx.settings.lease_secs))
                .await?;
            if *json {
                print_json(&serde_json::json!({"runs": views, "workers": workers}))?;
            } else {
                if views.is_empty() {
                    println!("No runs yet.");
                } else {
                    println!("{}", runs_render::list_header());
                    for v in &views {
                        println!("{}", runs_render::run_line(v));
                    }
                }
                println!("{}", runs_render::workers_line(&workers));
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Show {
            id,
            follow: f,
            json,
        } => {
            let run = queue.find(id).await?;
            let run = if *f {
                let print = if *json { Print::Stderr } else { Print::Stdout };
                follow(&queue, run.id, |e| match print {
                    Print::Stdout => println!("{}", runs_render::event_line(e)),
                    Print::Stderr => eprintln!("{}", runs_render::event_line(e)),
                })
                .await?
            } else {
                run
            };
            let events = queue.events(run.id, 0).await?;
            let v = view(&queue, &runs.store, run).await?;
            if *json {
                let mut value = serde_json::to_value(&v)?;
                value["events"] = serde_json::to_value(&events)?;
                print_json(&value)?;
            } else {
                show(&v, false)?;
                if !*f {
                    println!("  events:");
                    for e in &events {
                        println!("    {}", runs_render::event_line(e));
                    }
                }
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Start {
            tenant,
            operation,
            auto_apply,
            message,
            action: RunAction { by, wait, json },
        } => {
            // Refuse a tenant that has neither a spec (file or registry) nor state now,
            // rather than when a worker gets to it.
            let engine = Engine::new(EngineConfig {
                specs_dir: cli.specs.clone(),
                state_dir: cli.state.clone(),
                ..EngineConfig::default()
            });
            engine.select_tenants(&engine.specs().await?, std::slice::from_ref(tenant))?;
            let run = queue
                .enqueue(&NewRun {
                    tenant: tenant.clone(),
                    operation: *operation,
                    requested_by: by.clone(),
                    message: message.clone(),
                    auto_apply: *auto_apply,
                })
                .await?;
            if !json {
                println!("Queued run {} ({operation} of tenant {tenant}).", run.id);
                if runs.cx.settings.executor == RunExecutor::Workers && !wait {
                    warn_without_workers(&runs, &queue).await?;
                }
            }
            let Some(run) = settle(run.id, *wait, *json).await? else {
                return Ok(Outcome::Interrupted);
            };
            show(&view(&queue, &runs.store, run.clone()).await?, *json)?;
            ended(&run)
        }
        RunsCommand::Apply {
            id,
            action: RunAction { by, wait, json },
        } => {
            let run = queue.find(id).await?;
            let run = queue.confirm(&run, by).await?;
            if !json {
                println!(
                    "Confirmed run {}: its plan is queued to be applied.",
                    run.id
                );
            }
            let Some(run) = settle(run.id, *wait, *json).await? else {
                return Ok(Outcome::Interrupted);
            };
            show(&view(&queue, &runs.store, run.clone()).await?, *json)?;
            ended(&run)
        }
        RunsCommand::Discard { id, by } => {
            let run = queue.find(id).await?;
            let run = queue.discard(&run, by).await?;
            println!("Discarded run {}: its plan will not be applied.", run.id);
            Ok(Outcome::Ok)
        }
        RunsCommand::Cancel { id, by, json } => {
            let run = queue.find(id).await?;
            let run = queue.cancel(&run, by).await?;
            if *json {
                print_json(&run)?;
            } else if run.status.is_active() {
                println!(
                    "Cancel requested for run {}: its worker starts no new step and ends it after the steps in flight.",
                    run.id
                );
            } else {
                println!("Run {} is {}.", run.id, run.status);
            }
            Ok(Outcome::Ok)
        }
        RunsCommand::Resume { id, json } => {
            let run = queue.find(id).await?;
            let mut cx = runs.cx.clone();
            cx.settings.executor = RunExecutor::Embedded;
            let here = RunsCli {
                cx,
                pg: runs.pg.clone(),
                store: runs.store.clone(),
            };
            let print = (!json).then_some(Print::Stdout);
            let Some(run) = execute_or_follow(&here, &queue, run.id, true, print).await? else {
                return Ok(Outcome::Interrupted);
            };
            show(&view(&queue, &runs.store, run.clone()).await?, *json)?;
            ended(&run)
        }
    }
}

fn apply_options(run: &RunArgs, sel: &Selection) -> (ApplyOptions, CancellationToken) {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nInterrupt received: no new step starts; waiting for the steps in flight and saving state. Press Ctrl-C again to quit at once (state stays consistent)."
            );
            token.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("Second interrupt: quitting now.");
                std::process::exit(130);
            }
        }
    });
    (
        ApplyOptions {
            parallelism: sel.parallelism as usize,
            rollback: !run.no_rollback,
            cancel: cancel.clone(),
        },
        cancel,
    )
}

async fn run_interactive(
    engine: &Engine,
    plan_options: PlanOptions,
    options: ApplyOptions,
    run: &RunArgs,
    progress: ProgressSink,
    style: Style,
    cancel: CancellationToken,
) -> anyhow::Result<Outcome> {
    let auto = run.auto_approve;
    let json = run.json;
    let destroy = plan_options.mode == PlanMode::Destroy;
    let mut refused = None;
    let (plan, report) = engine
        .plan_and_apply(
            &plan_options,
            &options,
            |plan| {
                if !json {
                    print!("{}", render::human(plan, style));
                }
                if auto {
                    return true;
                }
                let what = if destroy {
                    "destroy these resources"
                } else {
                    "perform these actions"
                };
                match confirm(what) {
                    Ok(yes) => yes,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                }
            },
            Some(progress),
        )
        .await?;
    if let Some(e) = refused {
        return Err(e);
    }
    match report {
        Some(report) => finish(&plan, &report, json, cancel),
        None if !plan.has_changes() => {
            if json {
                println!("{}", serde_json::json!({"changes": false}));
            } else {
                print!("{}", render::human(&plan, style));
            }
            Ok(Outcome::Ok)
        }
        None => {
            println!("Cancelled: nothing was changed.");
            Ok(Outcome::Ok)
        }
    }
}

fn confirm(what: &str) -> anyhow::Result<bool> {
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
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_plan(plan: &Plan, json: bool, markdown: bool, style: Style) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render::json(plan)).expect("JSON")
        );
    } else if markdown {
        print!("{}", render::markdown(plan));
    } else {
        print!("{}", render::human(plan, style));
    }
}

fn progress_sink(json: bool) -> ProgressSink {
    Arc::new(move |p: &Progress| {
        let line = match p {
            Progress::Started { address, kind } => format!(
                "{address}: {}...",
                match kind {
                    StepKind::Create => "Creating",
                    StepKind::Update => "Modifying",
                    StepKind::Delete => "Destroying",
                }
            ),
            Progress::Finished {
                address,
                kind,
                elapsed,
            } => format!(
                "{address}: {} complete after {:.2}s",
                match kind {
                    StepKind::Create => "Creation",
                    StepKind::Update => "Modifications",
                    StepKind::Delete => "Destruction",
                },
                elapsed.as_secs_f64()
            ),
            Progress::Failed { address, error, .. } => format!("{address}: failed: {error}"),
            Progress::RollbackStarted { tenant, resources } => format!(
                "{tenant}: provisioning failed; rolling back {resources} resource{} created by this run",
                if *resources == 1 { "" } else { "s" }
            ),
        };
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    })
}

fn finish(
    plan: &Plan,
    report: &ApplyReport,
    json: bool,
    cancel: CancellationToken,
) -> anyhow::Result<Outcome> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        let done = |step: &str| report.count(step);
        let replaced = plan.count(tenantform::Action::Replace);
        println!(
            "\nApply {}! Resources: {} added, {} changed, {} destroyed.",
            if report.succeeded() {
                "complete"
            } else {
                "finished with errors"
            },
            done("create"),
            done("update"),
            done("delete"),
        );
        if replaced > 0 {
            println!("({replaced} of them replaced: destroyed, then created.)");
        }
        for t in &report.tenants {
            match t.outcome {
                TenantOutcome::Failed => println!(
                    "Tenant {} failed: {}",
                    t.tenant,
                    t.first_error().unwrap_or_default()
                ),
                TenantOutcome::RolledBack => println!(
                    "Tenant {} failed and was rolled back completely: {}",
                    t.tenant,
                    t.first_error().unwrap_or_default()
                ),
                TenantOutcome::RollbackFailed => {
                    println!(
                        "Tenant {} failed and its rollback failed too; state keeps what is left, run `tenantform destroy --tenant {}` or apply again: {}",
                        t.tenant,
                        t.tenant,
                        t.first_error().unwrap_or_default()
                    );
                    for s in &t.rollback {
                        if let StepOutcome::Failed { error, .. } = &s.outcome {
                            println!("  rollback of {} failed: {error}", s.address);
                        }
                    }
                }
                TenantOutcome::Interrupted => println!(
                    "Tenant {} was interrupted; state is saved, apply again to finish.",
                    t.tenant
                ),
                TenantOutcome::Applied | TenantOutcome::Unchanged => {}
            }
        }
    }
    if cancel.is_cancelled() {
        return Ok(Outcome::Interrupted);
    }
    if !report.succeeded() {
        bail!("the apply did not complete for every tenant (see above)");
    }
    Ok(Outcome::Ok)
}
