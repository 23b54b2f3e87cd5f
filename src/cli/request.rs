//! The tenant lifecycle: `request submit|approve|reject|status|list|retry`,
//! `validate-tenant`, and `serve`.

use anyhow::{Context, bail};

use tenantform::connect::postgres::PostgresConfig;
use tenantform::resource::TenantId;
use tenantform::workflow::registry::CheckRecord;
use tenantform::workflow::render as wf_render;
use tenantform::workflow::status::RequestStatus;
use tenantform::workflow::{self, Workflow};
use tenantform::{Engine, Plan};

use super::Outcome;
use super::args::{DecisionArgs, RequestCommand, SubmitArgs};

/// The workflow, with tenantform's own metrics served on a loopback port for its
/// metrics check while this process runs, unless `[validation] metrics_url` names the
/// platform's endpoint.
async fn open_workflow(engine: &Engine) -> anyhow::Result<Workflow<'_>> {
    let mut wf = Workflow::open(engine).await?;
    let specs = engine.specs()?;
    if specs.platform.validation.metrics_url.is_none() {
        let pg = PostgresConfig::resolve(&specs.platform.postgres)?;
        // The handle is dropped, not aborted: the server runs until the process ends.
        let (addr, _) = tenantform::server::serve_metrics_on_loopback(pg)
            .await
            .context("serving metrics on a loopback port for the validation checks")?;
        wf.set_metrics_url(format!("http://{addr}/metrics"));
    }
    Ok(wf)
}

pub async fn cmd_request(engine: &Engine, cmd: &RequestCommand) -> anyhow::Result<Outcome> {
    let mut wf = open_workflow(engine).await?;
    match cmd {
        RequestCommand::Submit(a) => Box::pin(cmd_submit(&mut wf, a)).await,
        RequestCommand::Approve(d) => Box::pin(cmd_decide(&mut wf, d, true)).await,
        RequestCommand::Reject(d) => Box::pin(cmd_decide(&mut wf, d, false)).await,
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

async fn cmd_submit(wf: &mut Workflow<'_>, a: &SubmitArgs) -> anyhow::Result<Outcome> {
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

async fn cmd_decide(
    wf: &mut Workflow<'_>,
    d: &DecisionArgs,
    approve: bool,
) -> anyhow::Result<Outcome> {
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

/// The outcome as JSON, or its validation checks as a table.
fn print_outcome(o: &workflow::Outcome, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(o)?);
    } else if !o.checks.is_empty() {
        let records: Vec<CheckRecord> = o.checks.iter().map(Into::into).collect();
        println!(
            "  validation: {} of {} checks passed",
            records.iter().filter(|c| c.passed).count(),
            records.len()
        );
        print!("{}", wf_render::checks_table(&records));
    }
    Ok(())
}

/// A request that ended in a failure makes the command fail, so that scripts notice.
fn finish(o: &workflow::Outcome) -> anyhow::Result<Outcome> {
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
}

/// After a destroy: the request of each tenant of `plan` that has no state any more
/// says `destroyed` ([`Workflow::record_destroyed`]). Opens the registry only when a
/// tenant is gone, and never creates one. A failure here is an error although the
/// destroy itself succeeded; running the destroy again records it.
pub async fn record_destroyed(engine: &Engine, plan: &Plan, json: bool) -> anyhow::Result<()> {
    let store = engine.state_store();
    let gone: Vec<&TenantId> = plan
        .tenants
        .iter()
        .map(|t| &t.tenant)
        .filter(|t| matches!(store.load(t), Ok(None)))
        .collect();
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
                "Request {} is now destroyed; specs/tenants/{}.toml, which it had written, was removed.",
                r.id, r.id
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

/// Runs the validation suite on an active tenant; an error if a check failed.
pub async fn cmd_validate_tenant(engine: &Engine, id: &str, json: bool) -> anyhow::Result<Outcome> {
    let mut wf = open_workflow(engine).await?;
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

pub async fn cmd_serve(engine: &Engine, listen: std::net::SocketAddr) -> anyhow::Result<Outcome> {
    let specs = engine.specs()?;
    let pg = PostgresConfig::resolve(&specs.platform.postgres)?;
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
