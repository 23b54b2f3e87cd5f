//! `plan`, `apply` and `destroy`: make a plan, show it, ask, apply it, and say how
//! it went.

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use tenantform::apply::{ApplyReport, StepOutcome, TenantOutcome};
use tenantform::report::Style;
use tenantform::{Action, ApplyOptions, Engine, OutputFormat, Plan, PlanMode, PlanOptions, Report};

use super::args::{ApplyArgs, DestroyArgs, PlanArgs, RunArgs, Selection};
use super::machine;
use super::progress::{ProgressView, View};
use super::request::record_destroyed;
use super::{Outcome, confirm, print_report};

pub async fn cmd_plan(engine: &Engine, args: &PlanArgs, style: Style) -> anyhow::Result<Outcome> {
    let format = args.format.format();
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
            rotate: args.rotate.clone(),
        })
        .await?;
    print_report(&plan, format, style)?;
    if let Some(report) = &plan.policy
        && let Err(refused) = report.enforce()
    {
        if format == OutputFormat::Json {
            // The document says so (`policy.passed`, `policy_results`); a second JSON
            // value after it would make stdout unparseable.
            eprintln!("Error: {refused}");
            return Ok(Outcome::Failed);
        }
        return Err(refused.into());
    }
    if let Some(out) = &args.out {
        engine.save_plan(&plan, out)?;
        if format != OutputFormat::Json {
            println!(
                "Saved the plan to {}. Apply exactly this plan with:\n  tenantform apply {}",
                out.display(),
                out.display()
            );
        }
    }
    let changes = plan.has_changes();
    // The process ends right after: freeing a plan of many thousand resources one
    // allocation at a time would only delay the exit.
    std::mem::forget(plan);
    Ok(if args.detailed_exitcode && changes {
        Outcome::Changes
    } else {
        Outcome::Ok
    })
}

pub async fn cmd_apply(engine: &Engine, args: &ApplyArgs, style: Style) -> anyhow::Result<Outcome> {
    start_stream(&args.run, args.planfile.is_some())?;
    let Some(file) = &args.planfile else {
        let plan_options = PlanOptions {
            tenants: args.selection.tenants.clone(),
            refresh: args.refresh,
            mode: PlanMode::Normal,
            replace: args.replace.clone(),
            rotate: args.rotate.clone(),
        };
        return plan_confirm_apply(engine, plan_options, &args.run, &args.selection, style).await;
    };
    if !args.selection.tenants.is_empty() || !args.replace.is_empty() || !args.rotate.is_empty() {
        bail!(
            "a saved plan is applied as it is: --tenant, --replace and --rotate belong to `tenantform plan`"
        );
    }
    let (options, cancel) = apply_options(&args.run, &args.selection);
    let plan = engine.load_plan(file)?;
    let progress = ProgressView::new(View::choose(args.run.json, style));
    if args.run.json {
        plan_messages(&plan);
    }
    if !plan.has_changes() {
        if args.run.json {
            no_changes(engine, &plan).await;
        } else {
            println!("The saved plan has no changes. Nothing to do.");
        }
        return Ok(Outcome::Ok);
    }
    progress.know(&plan);
    let report = engine
        .apply_plan(&plan, &options, Some(progress.sink()))
        .await?;
    drop(progress);
    let outcome = print_apply_report(engine, &plan, &report, args.run.json, &cancel).await?;
    if plan.mode == PlanMode::Destroy {
        record_destroyed(engine, &plan, args.run.json).await?;
    }
    Ok(outcome)
}

pub async fn cmd_destroy(
    engine: &Engine,
    args: &DestroyArgs,
    style: Style,
) -> anyhow::Result<Outcome> {
    start_stream(&args.run, false)?;
    let plan_options = PlanOptions {
        tenants: args.selection.tenants.clone(),
        refresh: false,
        mode: PlanMode::Destroy,
        replace: Vec::new(),
        rotate: Vec::new(),
    };
    plan_confirm_apply(engine, plan_options, &args.run, &args.selection, style).await
}

/// The apply options of the flags, and the token that Ctrl-C cancels: the first one
/// lets the steps in flight finish, a second one quits at once.
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

/// `apply` and `destroy` without a saved plan: lock, plan, show, ask, apply.
async fn plan_confirm_apply(
    engine: &Engine,
    plan_options: PlanOptions,
    run: &RunArgs,
    selection: &Selection,
    style: Style,
) -> anyhow::Result<Outcome> {
    let (options, cancel) = apply_options(run, selection);
    let progress = ProgressView::new(View::choose(run.json, style));
    let sink = progress.sink();
    let auto = run.auto_approve;
    let json = run.json;
    let destroy = plan_options.mode == PlanMode::Destroy;
    let mut refused = None;
    let (plan, report) = engine
        .plan_and_apply(
            &plan_options,
            &options,
            |plan| {
                progress.know(plan);
                if json {
                    plan_messages(plan);
                } else {
                    print!("{}", plan.human(style));
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
            Some(sink),
        )
        .await?;
    drop(progress);
    if let Some(e) = refused {
        return Err(e);
    }
    let outcome = match report {
        Some(report) => print_apply_report(engine, &plan, &report, json, &cancel).await,
        None if !plan.has_changes() => {
            if json {
                // The plan was not shown: nothing was to be confirmed.
                plan_messages(&plan);
                no_changes(engine, &plan).await;
            } else {
                print!("{}", plan.human(style));
            }
            Ok(Outcome::Ok)
        }
        // Terraform exits 1 when the answer is not "yes": the run did not do what was
        // asked, and a script must not read it as success.
        None => Err(anyhow::anyhow!(
            "{} cancelled: nothing was changed",
            if destroy { "Destroy" } else { "Apply" }
        )),
    }?;
    if destroy {
        record_destroyed(engine, &plan, json).await?;
    }
    Ok(outcome)
}

/// Says how the apply went, per failed tenant, and maps it to the outcome: an error
/// unless every tenant succeeded, `Interrupted` after Ctrl-C.
async fn print_apply_report(
    engine: &Engine,
    plan: &Plan,
    report: &ApplyReport,
    json: bool,
    cancel: &CancellationToken,
) -> anyhow::Result<Outcome> {
    if json {
        machine::emit(machine::applied_summary(
            plan.mode,
            report.count("create"),
            report.count("update"),
            report.count("delete"),
            report.succeeded(),
        ));
        if plan.mode != PlanMode::Destroy {
            emit_outputs(engine, plan, report).await;
        }
        emit_report(Some(report));
    } else {
        let done = |step: &str| report.count(step);
        let replaced = plan.count(Action::Replace);
        let verb = if plan.mode == PlanMode::Destroy {
            "Destroy"
        } else {
            "Apply"
        };
        let how = if report.succeeded() {
            "complete"
        } else {
            "finished with errors"
        };
        if plan.mode == PlanMode::Destroy {
            println!("\n{verb} {how}! Resources: {} destroyed.", done("delete"));
        } else {
            println!(
                "\n{verb} {how}! Resources: {} added, {} changed, {} destroyed.",
                done("create"),
                done("update"),
                done("delete"),
            );
        }
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

/// Under `--json`: refuses a run that would have to ask (a prompt cannot be answered
/// on a JSON stream; Terraform refuses the same), then starts the stream with its
/// `version` message.
fn start_stream(run: &RunArgs, saved_plan: bool) -> anyhow::Result<()> {
    if !run.json {
        return Ok(());
    }
    machine::emit(machine::version());
    if !run.auto_approve && !saved_plan {
        bail!(
            "--json needs --auto-approve (or a saved plan): the confirmation prompt cannot be answered on a JSON stream; nothing was changed"
        );
    }
    Ok(())
}

/// The plan on the stream: a `planned_change` per change and its `change_summary`.
fn plan_messages(plan: &Plan) {
    for m in machine::plan_messages(plan) {
        machine::emit(m);
    }
}

/// The end of the stream of a run with nothing to do.
async fn no_changes(engine: &Engine, plan: &Plan) {
    machine::emit(machine::applied_summary(plan.mode, 0, 0, 0, true));
    let tenants = plan_tenants(plan);
    if plan.mode != PlanMode::Destroy && !tenants.is_empty() {
        for state in engine.states(&tenants).await.unwrap_or_default() {
            machine::emit(machine::outputs(
                &state.tenant.to_string(),
                &engine.outputs(&state),
            ));
        }
    }
    emit_report(None);
}

fn plan_tenants(plan: &Plan) -> Vec<tenantform::TenantId> {
    plan.tenants.iter().map(|t| t.tenant.clone()).collect()
}

/// The `outputs` of every tenant of the plan that the apply left whole.
async fn emit_outputs(engine: &Engine, plan: &Plan, report: &ApplyReport) {
    let whole: Vec<tenantform::TenantId> = report
        .tenants
        .iter()
        .filter(|t| matches!(t.outcome, TenantOutcome::Applied | TenantOutcome::Unchanged))
        .map(|t| t.tenant.clone())
        .filter(|t| plan.tenants.iter().any(|p| &p.tenant == t))
        .collect();
    if whole.is_empty() {
        return;
    }
    // Outputs are a courtesy of the stream: a state that cannot be read now leaves
    // them out rather than failing an apply that succeeded.
    for state in engine.states(&whole).await.unwrap_or_default() {
        machine::emit(machine::outputs(
            &state.tenant.to_string(),
            &engine.outputs(&state),
        ));
    }
}

/// The last message of the stream: the apply report (`null` when nothing ran), as
/// `apply --json` printed it before the stream, under `report`.
fn emit_report(report: Option<&ApplyReport>) {
    let text = match report {
        Some(r) if r.succeeded() => "Apply report: every tenant succeeded",
        Some(_) => "Apply report: not every tenant succeeded",
        None => "Apply report: nothing to do",
    };
    machine::emit(machine::message(
        "info",
        text,
        "apply_report",
        serde_json::json!({ "report": report }),
    ));
}
