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
use tenantform::secret::REDACTED;
use tenantform::spec::StateBackendKind;
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
  tenantform state history retail-chain             # versions kept, who wrote them
  tenantform state rollback retail-chain --serial 12
  tenantform state migrate --to postgres            # then set [state] backend = \"postgres\"
  tenantform force-unlock retail-chain 6c1f...
  tenantform drift --detailed-exitcode --markdown   # scheduled drift run: exit 2 on drift
  tenantform refresh --tenant retail-chain          # accept drift into state
  tenantform import retail-chain/postgres_schema.main tenant_retail_chain

Environment: PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE (admin connection), as printed
by `scripts/stack env`. TENANTFORM_STATE_BACKEND=local|postgres overrides [state] backend.
Log detail: TENANTFORM_LOG=info (or debug).";

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
    /// Inspect, recover and move state.
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

#[derive(Subcommand)]
enum RequestCommand {
    /// Submit a tenant request (a file in the format of specs/tenants/*.toml, or flags).
    /// Submitting the same tenant again returns the existing request. Without required
    /// approvals, provisioning starts at once.
    Submit(SubmitArgs),
    /// Record an approval; the last required one starts provisioning.
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
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
        #[arg(long)]
        json: bool,
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
    /// Print a tenant's whole state document as JSON (sensitive values redacted
    /// unless --show-secrets).
    Pull {
        tenant: TenantId,
        #[arg(long)]
        show_secrets: bool,
    },
    /// List the versions of a tenant's state that are kept: serial, lineage, when and
    /// by whom each was written.
    History {
        tenant: TenantId,
        #[arg(long)]
        json: bool,
    },
    /// Recover an earlier version of a tenant's state: its content is written as the
    /// next serial, under the tenant's lock. No resource is changed.
    Rollback {
        tenant: TenantId,
        /// The serial to recover (see `state history`).
        #[arg(long)]
        serial: u64,
        /// Wait this long for the tenant's lock (e.g. 30s, 2m); default: fail at once.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
        lock_timeout: Duration,
    },
    /// Move every tenant's state (serial, lineage, history) to another backend, under
    /// each tenant's lock. Nothing is moved when a tenant is locked.
    Migrate {
        /// The backend to move to: postgres or local (from the other one).
        #[arg(long, value_name = "BACKEND")]
        to: StateBackendKind,
        /// Wait this long for each tenant's lock; default: fail at once.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
        lock_timeout: Duration,
        #[arg(long)]
        json: bool,
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
        run: None,
    };
    match &cli.command {
        Command::Validate => {
            let engine = Engine::new(config(None, Duration::ZERO));
            let specs = engine.specs()?;
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
            let states = engine.states(&args.tenants).await?;
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
            for s in engine.states(tenants).await? {
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
            let r = engine.state_resource(address).await?;
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
        Command::State(StateCommand::Pull {
            tenant,
            show_secrets,
        }) => {
            state_pull(
                &Engine::new(config(None, Duration::ZERO)),
                tenant,
                *show_secrets,
            )
            .await
        }
        Command::State(StateCommand::History { tenant, json }) => {
            state_history(&Engine::new(config(None, Duration::ZERO)), tenant, *json).await
        }
        Command::State(StateCommand::Rollback {
            tenant,
            serial,
            lock_timeout,
        }) => state_rollback(&Engine::new(config(None, *lock_timeout)), tenant, *serial).await,
        Command::State(StateCommand::Migrate {
            to,
            lock_timeout,
            json,
        }) => state_migrate(&Engine::new(config(None, *lock_timeout)), *to, *json).await,
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
            Box::pin(run_request(&engine, cmd)).await
        }
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
            let holder = engine.force_unlock(tenant, lock_id).await?;
            println!(
                "Broke the lock of tenant {tenant}, held by {holder}. If that process is still running, it no longer excludes others: make sure it is gone."
            );
            Ok(Outcome::Ok)
        }
    }
}

/// `state pull`: the tenant's state document, as stored.
async fn state_pull(
    engine: &Engine,
    tenant: &TenantId,
    show_secrets: bool,
) -> anyhow::Result<Outcome> {
    let mut state = engine.states(std::slice::from_ref(tenant)).await?.remove(0);
    if !show_secrets {
        for r in state.resources.values_mut() {
            r.attributes = tenantform::plan::redact(&r.attributes, r.resource_type);
        }
    }
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(Outcome::Ok)
}

/// `state history`: the versions kept, newest first.
async fn state_history(engine: &Engine, tenant: &TenantId, json: bool) -> anyhow::Result<Outcome> {
    let versions = engine.state_history(tenant).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"tenant": tenant, "versions": versions})
            )?
        );
        return Ok(Outcome::Ok);
    }
    if versions.is_empty() {
        println!("Tenant {tenant} has no state versions.");
        return Ok(Outcome::Ok);
    }
    println!(
        "{:>7}  {:36}  {:20}  written by",
        "serial", "lineage", "written at"
    );
    for v in &versions {
        let by = v.written_by.as_ref().map_or_else(
            || "(not recorded in local state)".to_owned(),
            |w| w.to_string(),
        );
        println!(
            "{:>7}  {:36}  {:20}  {by}{}",
            v.serial,
            v.lineage.to_string(),
            v.written_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            if v.current { "  (current)" } else { "" }
        );
    }
    Ok(Outcome::Ok)
}

/// `state rollback`: an earlier version written as the next serial.
async fn state_rollback(
    engine: &Engine,
    tenant: &TenantId,
    serial: u64,
) -> anyhow::Result<Outcome> {
    let restored = engine.restore_state(tenant, serial).await?;
    println!(
        "Recovered version {serial} of tenant {tenant}: it is now serial {} (lineage {}), {} resource{}. No resource was changed; `tenantform plan --tenant {tenant}` shows what apply would do from here.",
        restored.serial,
        restored.lineage,
        restored.resources.len(),
        if restored.resources.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    Ok(Outcome::Ok)
}

/// `state migrate`: every tenant's state to another backend.
async fn state_migrate(
    engine: &Engine,
    to: StateBackendKind,
    json: bool,
) -> anyhow::Result<Outcome> {
    let report = engine.migrate_state(to).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(Outcome::Ok);
    }
    println!(
        "Moved the state of {} tenant{} from {} to {}:",
        report.tenants.len(),
        if report.tenants.len() == 1 { "" } else { "s" },
        report.from,
        report.to
    );
    for t in &report.tenants {
        print!(
            "  {}: serial {}, lineage {}, {} version{}",
            t.tenant,
            t.serial,
            t.lineage,
            t.versions,
            if t.versions == 1 { "" } else { "s" }
        );
        if t.versions_left > 0 {
            print!(
                " ({} older version{} stay in the source: local state keeps one backup)",
                t.versions_left,
                if t.versions_left == 1 { "" } else { "s" }
            );
        }
        println!();
    }
    println!(
        "Use it from now on: set [state] backend = \"{to}\" in platform.toml (or export TENANTFORM_STATE_BACKEND={to})."
    );
    Ok(Outcome::Ok)
}

async fn run_request(engine: &Engine, cmd: &RequestCommand) -> anyhow::Result<Outcome> {
    let mut wf = Workflow::open(engine).await?;
    let print_outcome = |o: &tenantform::workflow::Outcome, json: bool| -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(o)?);
        } else if !o.checks.is_empty() {
            let records: Vec<tenantform::workflow::registry::CheckRecord> =
                o.checks.iter().map(Into::into).collect();
            println!(
                "  validation: {} of {} checks passed",
                records.iter().filter(|c| c.passed).count(),
                records.len()
            );
            print!("{}", wf_render::checks_table(&records));
        }
        Ok(())
    };
    // A request that ended in a failure makes the command fail, so that scripts notice.
    let finish = |o: &tenantform::workflow::Outcome| -> anyhow::Result<Outcome> {
        let r = &o.request;
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
    };
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
            let r = &outcome.request;
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
            print_outcome(&outcome, a.json)?;
            finish(&outcome)
        }
        RequestCommand::Approve(d) | RequestCommand::Reject(d) => {
            let approve = matches!(cmd, RequestCommand::Approve(_));
            let outcome = wf
                .decide(&d.id, &d.role, approve, &d.by, d.note.as_deref())
                .await?;
            if !d.json {
                println!(
                    "Recorded: {} {} request {}. It is now {}.",
                    d.role,
                    if approve { "approved" } else { "rejected" },
                    d.id,
                    outcome.request.status
                );
            }
            print_outcome(&outcome, d.json)?;
            finish(&outcome)
        }
        RequestCommand::Retry { id, by, json } => {
            let outcome = Box::pin(wf.retry(id, by)).await?;
            if !json {
                println!("Request {id} is now {}.", outcome.request.status);
            }
            print_outcome(&outcome, *json)?;
            finish(&outcome)
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
