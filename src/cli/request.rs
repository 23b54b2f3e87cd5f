//! The tenant lifecycle: `request submit|approve|reject|status|list|retry|export`,
//! `validate-tenant`. A command that queues a provisioning run settles it
//! ([`settle_request`]): executes it here with the embedded executor, or follows it.

use anyhow::{Context, bail};

use tenantform::resource::TenantId;
use tenantform::runs::{ProvisionResult, Run, RunQueue};
use tenantform::spec::RunExecutor;
use tenantform::workflow::registry::{CheckRecord, Request};
use tenantform::workflow::render as wf_render;
use tenantform::workflow::status::RequestStatus;
use tenantform::workflow::{self, Workflow};
use tenantform::{Engine, Plan};

use super::Outcome;
use super::args::{Cli, DecisionArgs, RequestCommand, RunAction, SubmitArgs};
use super::runs::{Print, RunsCli, execute_or_follow, warn_without_workers};

/// The workflow, queuing provisionings as runs, with the metrics its checks scrape
/// when `[validation] metrics_url` names no endpoint ([`RunsCli::load`]).
async fn open_workflow<'a>(engine: &'a Engine, runs: &RunsCli) -> anyhow::Result<Workflow<'a>> {
    let mut wf = Workflow::open(engine).await?;
    wf.set_provisioning(std::sync::Arc::new(RunQueue::open(&runs.pg).await?));
    if let Some(url) = &runs.cx.metrics_url {
        wf.set_metrics_url(url);
    }
    Ok(wf)
}

pub async fn cmd_request(
    cli: &Cli,
    engine: &Engine,
    cmd: &RequestCommand,
) -> anyhow::Result<Outcome> {
    let runs = RunsCli::load(cli, 10, true).await?;
    let mut wf = open_workflow(engine, &runs).await?;
    match cmd {
        RequestCommand::Submit(a) => Box::pin(cmd_submit(&mut wf, &runs, a)).await,
        RequestCommand::Approve(d) => Box::pin(cmd_decide(&mut wf, &runs, d, true)).await,
        RequestCommand::Reject(d) => Box::pin(cmd_decide(&mut wf, &runs, d, false)).await,
        RequestCommand::Retry {
            id,
            action: RunAction { by, wait, json },
        } => {
            let outcome = Box::pin(wf.retry(id, by)).await?;
            let settled = settle_request(&runs, &wf, &outcome, *wait, *json).await?;
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

async fn cmd_submit(
    wf: &mut Workflow<'_>,
    runs: &RunsCli,
    a: &SubmitArgs,
) -> anyhow::Result<Outcome> {
    let outcome = match &a.file {
        Some(file) => Box::pin(wf.submit_file(file, &a.requester, a.notes.as_deref())).await?,
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
    let settled = settle_request(runs, wf, &outcome, a.wait, a.json).await?;
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

async fn cmd_decide(
    wf: &mut Workflow<'_>,
    runs: &RunsCli,
    d: &DecisionArgs,
    approve: bool,
) -> anyhow::Result<Outcome> {
    let outcome = wf
        .decide(&d.id, &d.role, approve, &d.by, d.note.as_deref())
        .await?;
    let settled = settle_request(runs, wf, &outcome, d.wait, d.json).await?;
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

/// A request after its command, and the provisioning run the command queued or found.
struct SettledRequest {
    request: Request,
    run: Option<Run>,
    /// The validation suite's results, when the run ran it.
    checks: Vec<CheckRecord>,
    interrupted: bool,
}

impl SettledRequest {
    /// Prints the outcome (the checks table, or the JSON of the request, its checks and
    /// its run) and says how the command exits: 1 when the request ended `rolled_back`
    /// or `failed`, so that scripts notice.
    fn print(&self, created: bool, json: bool) -> anyhow::Result<Outcome> {
        let r = &self.request;
        if json {
            super::print_json(&serde_json::json!({
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

/// After a destroy: the request of each tenant of `plan` that has no state any more
/// says `destroyed` ([`Workflow::record_destroyed`]). Opens the registry only when a
/// tenant is gone, and never creates one. A failure here is an error although the
/// destroy itself succeeded; running the destroy again records it.
pub async fn record_destroyed(engine: &Engine, plan: &Plan, json: bool) -> anyhow::Result<()> {
    let store = engine.state_store().await?;
    let mut gone: Vec<&TenantId> = Vec::new();
    for t in plan.tenants.iter().map(|t| &t.tenant) {
        if matches!(store.load(t).await, Ok(None)) {
            gone.push(t);
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    let Some(mut wf) = Workflow::open_existing(engine).await? else {
        return Ok(());
    };
    for tenant in gone {
        let moved = wf
            .record_destroyed(tenant, "tenantform destroy")
            .await
            .with_context(|| {
                format!(
                    "tenant {tenant} was destroyed, but its request could not be marked destroyed; \
                     run `tenantform destroy --tenant {tenant}` again to record it"
                )
            })?;
        if let Some(r) = moved {
            let line = format!(
                "Request {} is now destroyed; its spec is out of the registry.",
                r.id
            );
            // stdout carries JSON with --json.
            if json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// After a lifecycle command: when a provisioning run of the request is open, the
/// embedded executor executes it here; with workers, `--wait` follows it to its end
/// (its events on stderr) and otherwise the command returns at once.
async fn settle_request(
    runs: &RunsCli,
    wf: &Workflow<'_>,
    outcome: &workflow::Outcome,
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

/// Runs the validation suite on an active tenant; an error if a check failed.
pub async fn cmd_validate_tenant(
    cli: &Cli,
    engine: &Engine,
    id: &str,
    json: bool,
) -> anyhow::Result<Outcome> {
    let mut wf = open_workflow(engine, &RunsCli::load(cli, 10, true).await?).await?;
    let results = Box::pin(wf.validate_tenant(id)).await?;
    let failed = results.iter().filter(|r| !r.passed).count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"tenant": id, "checks": results}))?
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
