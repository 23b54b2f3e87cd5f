//! The command line: every command, flag and help text of `tenantform`, and the
//! engine configuration each command runs with.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tenantform::spec::StateBackendKind;
use tenantform::{EngineConfig, OutputFormat, ResourceAddress, TenantId};

const EXAMPLES: &str = "\
Examples:
  tenantform validate
  tenantform plan --detailed-exitcode --out tenants.plan
  tenantform plan --json > plan.json          # Terraform-style machine-readable plan
  tenantform plan --policy specs/policies     # check the plan against Rego policies
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
  tenantform worker --concurrency 2                 # execute queued runs ([runs] executor = \"workers\")
  tenantform runs list                              # queue positions, who blocks whom
  tenantform runs show 6c1f2a3b --follow            # a run's steps as they happen

Environment: PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE (admin connection), as printed
by `scripts/stack env`. TENANTFORM_STATE_BACKEND=local|postgres overrides [state] backend.
Log detail: TENANTFORM_LOG=info (or debug).";

/// Declarative tenant infrastructure: plan, apply, destroy.
#[derive(Parser)]
#[command(name = "tenantform", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Directory with platform.toml and tenants/*.toml.
    #[arg(long, global = true, default_value = "specs", value_name = "DIR")]
    pub specs: PathBuf,
    /// Directory with the state files (the `local` state backend).
    #[arg(long, global = true, default_value = "state", value_name = "DIR")]
    pub state: PathBuf,
    /// No ANSI colours in output: the same as `--color never`.
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Colours in output: `auto` colours a terminal, unless NO_COLOR is set (or
    /// CLICOLOR_FORCE is, which colours whatever the output is).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// Check plans (plan, apply, destroy) against the Rego policies in DIR: `deny`
    /// rules refuse a plan, `warn` rules warn. Default: [policy] dir in platform.toml.
    #[arg(long, global = true, value_name = "DIR")]
    pub policy: Option<PathBuf>,
    /// How refresh reads the families that can read in bulk: `auto` (in bulk when a
    /// run covers more than a few tenants), `always`, `never` (one read per resource).
    /// The answers are the same either way.
    #[arg(
        long,
        global = true,
        hide = true,
        env = "TENANTFORM_BULK_READ",
        default_value = "auto",
        value_parser = ["auto", "always", "never"]
    )]
    pub bulk_read: String,
    #[command(subcommand)]
    pub command: Command,
}

/// When output is coloured (`--color`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check every spec file; print every problem with its file, line, field and fix.
    Validate {
        /// Print the result as JSON (the shape of `terraform validate -json`) on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show what apply would do. Changes nothing.
    Plan(PlanArgs),
    /// Make the tenants match their specs (or apply a saved plan).
    Apply(ApplyArgs),
    /// Delete every resource of the selected tenants.
    Destroy(DestroyArgs),
    /// Show tenants' resources and outputs, or a saved plan.
    Show(ShowArgs),
    /// Print a tenant's outputs (endpoints, names, credentials redacted).
    Output(OutputArgs),
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
    /// Take over tenants that Terraform manages today, without recreating anything:
    /// maps a Terraform state's tenant module instances onto tenants, reads every
    /// object back and plans; writes the tenants' states only when that plan deletes
    /// and replaces nothing adopted. Never writes Terraform's state.
    Adopt(AdoptArgs),
    /// Tenant requests: submit, approve, reject, status, list, retry.
    #[command(subcommand)]
    Request(RequestCommand),
    /// Run the validation suite on an active tenant (a daily check of its configuration).
    ValidateTenant {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Serve the HTTP API (/v1: tenants, runs, requests; Bearer JWTs), /metrics
    /// (Prometheus), /healthz and /readyz. Needs TENANTFORM_JWT_SECRET (HS256) or
    /// TENANTFORM_JWT_PUBLIC_KEY (an RS256/ES256 public key file).
    Serve {
        /// Address to listen on (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
    },
    /// API tokens: `token create` signs one with TENANTFORM_JWT_SECRET.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Execute queued runs (provisionings, plans, applies) from the platform database,
    /// up to --concurrency at once; any number of workers on any machines. SIGTERM:
    /// finish the runs in flight and exit; a second signal releases them at once.
    Worker(WorkerArgs),
    /// Runs: list, show (--follow), start, apply (a planned run), discard, cancel,
    /// resume.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Print a shell completion script: `tenantform completions bash >
    /// /etc/bash_completion.d/tenantform` (or zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `tenantform man | man -l -`.
    Man,
    /// Break a tenant's lock held by a stuck process. A holder that is alive (its
    /// lease renewed, or its process holding the lock file) is broken only after a
    /// `yes` at the prompt, or with --force.
    ForceUnlock {
        tenant: TenantId,
        /// The lock id shown in the "locked by" message.
        lock_id: String,
        /// Break a live holder's lock without asking.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Clone)]
pub struct Selection {
    /// Limit the run to this tenant (repeatable).
    #[arg(long = "tenant", value_name = "ID")]
    pub tenants: Vec<TenantId>,
    /// Provider calls in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Read managed resources back first (default true), so that drift shows up.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub refresh: bool,
    /// Save the plan for `tenantform apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub format: FormatArgs,
    /// Exit 0 with no changes, 2 with changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan the deletion of the selected tenants.
    #[arg(long)]
    pub destroy: bool,
    /// Replace this resource even if unchanged (repeatable), e.g. acme/postgres_role.app.
    #[arg(long, value_name = "ADDR")]
    pub replace: Vec<ResourceAddress>,
    /// Set new generated passwords for this tenant (repeatable): its PostgreSQL role
    /// and Redis user, in place; the old passwords stop working.
    #[arg(long, value_name = "TENANT", conflicts_with = "destroy")]
    pub rotate: Vec<TenantId>,
}

#[derive(Args)]
pub struct ApplyArgs {
    /// A plan saved with `plan --out`; applied exactly, if state has not moved on.
    pub planfile: Option<PathBuf>,
    #[command(flatten)]
    pub selection: Selection,
    /// Read managed resources back first (default true), so that drift is repaired.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub refresh: bool,
    /// Replace this resource even if unchanged (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub replace: Vec<ResourceAddress>,
    /// Set new generated passwords for this tenant (repeatable); the old ones stop
    /// working.
    #[arg(long, value_name = "TENANT")]
    pub rotate: Vec<TenantId>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub selection: Selection,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args)]
pub struct RunArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Wait this long for a tenant's lock (e.g. 30s, 2m); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
    /// Keep what a failed new tenant got, for debugging, instead of rolling it back.
    #[arg(long)]
    pub no_rollback: bool,
    /// Print the apply report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub selection: Selection,
    #[command(flatten)]
    pub format: FormatArgs,
    /// Exit 0 without drift, 2 with drift, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Wait this long for a tenant's lock (e.g. 30s, 2m); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Where the resource goes, e.g. acme/postgres_schema.main.
    pub address: ResourceAddress,
    /// The real object's identity, e.g. tenant_acme (a schema) or rag-acme-documents (a bucket).
    pub id: String,
    /// Wait this long for the tenant's lock (e.g. 30s, 2m); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
}

#[derive(Args)]
pub struct AdoptArgs {
    /// The Terraform state to adopt from (format version 4): a local terraform.tfstate,
    /// or s3://BUCKET/KEY (read through the S3 API with the platform's [aws] settings).
    #[arg(long, value_name = "PATH")]
    pub from_tfstate: String,
    /// `--tenant ID` (repeatable): adopt only these; default: every tenant module instance.
    #[command(flatten)]
    pub selection: Selection,
    /// The module instance of a tenant in the Terraform state, {id} standing for its id.
    #[arg(long, value_name = "TEMPLATE", default_value = tenantform::adopt::DEFAULT_MODULE_ADDRESS)]
    pub module_address: String,
    /// Map, read back and plan, and print it all; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Wait this long for a tenant's lock (e.g. 30s, 2m); default: fail at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub lock_timeout: Duration,
}

#[derive(Subcommand)]
pub enum RequestCommand {
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
pub struct WorkerArgs {
    /// Runs executed at once by this worker (of different tenants).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Provider calls in flight at once within one run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Sign an API token (HS256, with TENANTFORM_JWT_SECRET); prints it on the last
    /// line, alone.
    Create {
        /// Who the token is for: recorded as the actor of everything done with it.
        #[arg(long)]
        subject: String,
        /// Roles, comma-separated: requester, cfo, cto, legal, compliance, dpo,
        /// platform-admin.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Scopes, comma-separated: tenants:read, runs:plan, runs:apply,
        /// requests:submit, approvals:decide.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// How long the token is valid: a number with s, m, h or d (30d, 12h).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
}

/// `30d`, `12h`, `15m`, `90s`.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration; write a number with s, m, h or d (e.g. 30d)");
    let text = text.trim();
    let unit = text.chars().last().ok_or_else(bad)?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
    match n.checked_mul(seconds) {
        Some(s) if s > 0 && s <= 366 * 86_400 => Ok(Duration::from_secs(s)),
        _ => Err(format!("{text:?}: a token lives from 1 s to 366 days")),
    }
}

#[derive(Subcommand)]
pub enum RunsCommand {
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
        /// Set the tenant's generated passwords anew (plan and apply runs), as
        /// `apply --rotate` does.
        #[arg(long)]
        rotate: bool,
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
pub struct RunAction {
    #[arg(long, env = "USER", default_value = "unknown")]
    pub by: String,
    /// Follow the run to its end (always so with the embedded executor).
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SubmitArgs {
    /// The request as a tenant spec file.
    #[arg(conflicts_with_all = ["id", "name"])]
    pub file: Option<PathBuf>,
    #[arg(long, required_unless_present = "file")]
    pub id: Option<String>,
    #[arg(long, required_unless_present = "file")]
    pub name: Option<String>,
    #[arg(long, required_unless_present = "file")]
    pub tier: Option<String>,
    #[arg(long, required_unless_present = "file")]
    pub region: Option<String>,
    /// Monthly budget in INR.
    #[arg(long, required_unless_present = "file")]
    pub budget_inr: Option<i64>,
    #[arg(long, required_unless_present = "file")]
    pub owner_email: Option<String>,
    #[arg(long, required_unless_present = "file")]
    pub cost_center: Option<String>,
    #[arg(long, required_unless_present = "file")]
    pub data_classification: Option<String>,
    #[arg(long)]
    pub protected: bool,
    /// Who asks (a name or e-mail address; an address is notified of a rejection).
    #[arg(long, env = "USER", default_value = "unknown")]
    pub requester: String,
    #[arg(long)]
    pub notes: Option<String>,
    /// Follow the provisioning to its end (always so with the embedded executor).
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DecisionArgs {
    pub id: String,
    /// The approver role (cfo, cto, legal, compliance, dpo).
    #[arg(long = "as", value_name = "ROLE")]
    pub role: String,
    /// Who decides.
    #[arg(long, env = "USER", default_value = "unknown")]
    pub by: String,
    #[arg(long)]
    pub note: Option<String>,
    /// Follow the provisioning, if this decision starts it, to its end.
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// A saved plan to show instead of state.
    pub planfile: Option<PathBuf>,
    #[arg(long = "tenant", value_name = "ID")]
    pub tenants: Vec<TenantId>,
    #[command(flatten)]
    pub format: FormatArgs,
    /// Print sensitive outputs (passwords) instead of redacting them.
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Subcommand)]
pub enum StateCommand {
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
    /// Forget resources without deleting them: they go on existing, unmanaged, until
    /// `tenantform import` adopts them again (a plan would create them anew).
    Rm {
        /// Addresses (TENANT/TYPE.NAME), as `state list` shows them.
        #[arg(required = true, value_name = "ADDRESS")]
        addresses: Vec<ResourceAddress>,
        /// Only check and say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Wait this long for the tenant's lock; default: fail at once.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
        lock_timeout: Duration,
    },
    /// Record a resource under another name of the same tenant and type (after a
    /// rename in the blueprint), so that apply neither deletes nor re-creates it.
    Mv {
        #[arg(value_name = "SOURCE")]
        from: ResourceAddress,
        #[arg(value_name = "DESTINATION")]
        to: ResourceAddress,
        /// Only check and say what would be moved.
        #[arg(long)]
        dry_run: bool,
        /// Wait this long for the tenant's lock; default: fail at once.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
        lock_timeout: Duration,
    },
    /// Write every tenant's state again under the current [encryption] key: after a
    /// rotation (the previous key as fallback_passphrase_env or fallback_kms_key_id),
    /// or to encrypt states written as plain text. Each under its tenant's lock.
    Rekey {
        /// Wait this long for each tenant's lock; default: fail at once.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
        lock_timeout: Duration,
    },
}

/// `output`: a tenant's outputs.
#[derive(Args)]
pub struct OutputArgs {
    #[arg(long, value_name = "ID")]
    pub tenant: TenantId,
    /// One output only (all of them if none is named).
    pub name: Option<String>,
    /// All outputs as one JSON object (`{name: {value, sensitive}}`), or the named
    /// one's value as JSON.
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// The named output's value as plain text, for a shell variable.
    #[arg(long, requires = "name")]
    pub raw: bool,
    /// Print sensitive values (passwords) instead of redacting them.
    #[arg(long)]
    pub show_secrets: bool,
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

/// How a report is printed: text for a terminal by default, or one of these. Shared
/// by every command that prints a plan, a drift report or a view of state.
#[derive(Args, Clone, Copy)]
#[group(multiple = false)]
pub struct FormatArgs {
    /// Print as JSON (the shape is in the README), for tools and alerting.
    #[arg(long)]
    json: bool,
    /// Print as Markdown, for a pull-request comment, a chat message or an issue.
    #[arg(long)]
    markdown: bool,
}

impl FormatArgs {
    pub fn format(self) -> OutputFormat {
        if self.json {
            OutputFormat::Json
        } else if self.markdown {
            OutputFormat::Markdown
        } else {
            OutputFormat::Human
        }
    }
}

impl Cli {
    /// Whether output is coloured: `--no-color` and `--color never|always` first,
    /// then the conventions of `NO_COLOR` (no-color.org) and `CLICOLOR_FORCE`, then
    /// whether stdout is a terminal.
    pub fn color(&self, stdout_is_terminal: bool) -> bool {
        self.color_in(stdout_is_terminal, |name| std::env::var_os(name))
    }

    fn color_in(
        &self,
        stdout_is_terminal: bool,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> bool {
        let set = |name: &str| env(name).is_some_and(|v| !v.is_empty() && v != "0");
        match (self.no_color, self.color) {
            (true, _) | (false, ColorChoice::Never) => false,
            (false, ColorChoice::Always) => true,
            (false, ColorChoice::Auto) => {
                env("NO_COLOR").is_none_or(|v| v.is_empty())
                    && (set("CLICOLOR_FORCE") || stdout_is_terminal)
            }
        }
    }

    /// The engine this command runs with: its parallelism and how long it waits for a
    /// tenant's lock.
    pub fn engine_config(&self) -> EngineConfig {
        let defaults = EngineConfig::default();
        let (selection, lock_timeout) = match &self.command {
            Command::Plan(a) => (Some(&a.selection), Duration::ZERO),
            Command::Apply(a) => (Some(&a.selection), a.run.lock_timeout),
            Command::Destroy(a) => (Some(&a.selection), a.run.lock_timeout),
            Command::Drift(a) => (Some(&a.selection), Duration::ZERO),
            Command::Refresh(a) => (Some(&a.selection), a.lock_timeout),
            Command::Import(a) => (None, a.lock_timeout),
            Command::Adopt(a) => (Some(&a.selection), a.lock_timeout),
            Command::State(
                StateCommand::Rollback { lock_timeout, .. }
                | StateCommand::Migrate { lock_timeout, .. }
                | StateCommand::Rm { lock_timeout, .. }
                | StateCommand::Mv { lock_timeout, .. }
                | StateCommand::Rekey { lock_timeout },
            ) => (None, *lock_timeout),
            // Provisioning a request waits a while for its tenant's lock rather than
            // failing the request at once.
            Command::Request(_) => (None, Duration::from_secs(60)),
            Command::Validate { .. }
            | Command::Show(_)
            | Command::Output(_)
            | Command::State(_)
            | Command::ValidateTenant { .. }
            | Command::Serve { .. }
            | Command::Token(_)
            | Command::Worker(_)
            | Command::Runs(_)
            | Command::Completions { .. }
            | Command::Man
            | Command::ForceUnlock { .. } => (None, Duration::ZERO),
        };
        EngineConfig {
            specs_dir: self.specs.clone(),
            state_dir: self.state.clone(),
            parallelism: selection.map_or(defaults.parallelism, |s| s.parallelism as usize),
            lock_timeout,
            policy_dir: self.policy.clone(),
            run: None,
            // The CLI's edge: the library reads variables only through this.
            environment: tenantform::Environment::process(),
            bulk_read: self.bulk_read.parse().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("tenantform").chain(args.iter().copied())).unwrap()
    }

    fn colour(args: &[&str], terminal: bool, vars: &[(&str, &str)]) -> bool {
        cli(args).color_in(terminal, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| std::ffi::OsString::from(v))
        })
    }

    #[test]
    fn flags_decide_colour_before_the_environment_and_the_terminal() {
        assert!(colour(&["validate"], true, &[]));
        assert!(!colour(&["validate"], false, &[]));
        assert!(colour(
            &["validate", "--color", "always"],
            false,
            &[("NO_COLOR", "1")]
        ));
        assert!(!colour(&["validate", "--color", "never"], true, &[]));
        assert!(!colour(
            &["validate", "--no-color", "--color", "always"],
            true,
            &[]
        ));
        assert!(Cli::try_parse_from(["tenantform", "validate", "--color", "nope"]).is_err());
    }

    #[test]
    fn no_color_and_clicolor_force_are_honoured_in_auto() {
        assert!(colour(&["validate"], false, &[("CLICOLOR_FORCE", "1")]));
        assert!(!colour(&["validate"], false, &[("CLICOLOR_FORCE", "0")]));
        assert!(!colour(&["validate"], true, &[("NO_COLOR", "1")]));
        assert!(!colour(
            &["validate"],
            true,
            &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]
        ));
        // An empty NO_COLOR is not set (no-color.org).
        assert!(colour(&["validate"], true, &[("NO_COLOR", "")]));
    }
}
