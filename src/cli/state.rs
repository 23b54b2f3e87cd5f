//! Commands that read specs and state, and those that change state but no resource:
//! `validate`, `show`, `output`, `state list|show|pull|history|rollback|migrate|rm|mv|rekey`,
//! `force-unlock`.

use std::io::IsTerminal;

use anyhow::bail;
use tenantform::report::Style;
use tenantform::spec::StateBackendKind;
use tenantform::{Engine, OutputFormat, ResourceAddress, TenantId};

use super::args::{OutputArgs, ShowArgs, StateCommand};
use super::{Outcome, confirm, plural, print_report};

/// The files: what a pull request changes. The registry's tenants are checked when
/// they are submitted and whenever a plan reads them.
pub fn cmd_validate(engine: &Engine, json: bool) -> anyhow::Result<Outcome> {
    let loaded = tenantform::spec::Specs::load(&engine.config().specs_dir);
    if json {
        let report = tenantform::spec::ValidationReport::new(loaded.as_ref().map(|_| ()));
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(if report.valid {
            Outcome::Ok
        } else {
            Outcome::Failed
        });
    }
    let specs = loaded?;
    println!(
        "The specs are valid: {} tenant{} on platform {:?} ({} tiers, {} regions).",
        specs.tenants.len(),
        plural(specs.tenants.len()),
        specs.platform.platform.name,
        specs.platform.tiers.len(),
        specs.platform.regions.len()
    );
    Ok(Outcome::Ok)
}

/// A saved plan, or the selected tenants' resources and outputs.
pub async fn cmd_show(engine: &Engine, args: &ShowArgs, style: Style) -> anyhow::Result<Outcome> {
    let format = args.format.format();
    if let Some(file) = &args.planfile {
        let plan = engine.load_plan(file)?;
        print_report(&plan, format, style)?;
    } else {
        let view = engine
            .tenants_view(&args.tenants, args.show_secrets)
            .await?;
        print_report(&view, format, style)?;
    }
    Ok(Outcome::Ok)
}

/// `state ...`.
pub async fn cmd_state(
    engine: &Engine,
    cmd: &StateCommand,
    style: Style,
) -> anyhow::Result<Outcome> {
    match cmd {
        StateCommand::List { tenants } => cmd_state_list(engine, tenants, style).await,
        StateCommand::Show {
            address,
            show_secrets,
        } => cmd_state_show(engine, address, *show_secrets, style).await,
        StateCommand::Pull {
            tenant,
            show_secrets,
        } => {
            let document = engine.state_document(tenant, *show_secrets).await?;
            print_report(&document, OutputFormat::Json, style)?;
            Ok(Outcome::Ok)
        }
        StateCommand::History { tenant, json } => {
            let history = engine.history_view(tenant).await?;
            print_report(&history, format(*json), style)?;
            Ok(Outcome::Ok)
        }
        StateCommand::Rollback { tenant, serial, .. } => {
            cmd_state_rollback(engine, tenant, *serial).await
        }
        StateCommand::Migrate { to, json, .. } => {
            cmd_state_migrate(engine, *to, *json, style).await
        }
        StateCommand::Rekey { .. } => {
            let tenants = engine.rekey_states().await?;
            let names: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
            println!(
                "Wrote the state of {} tenant{} again under the current [encryption] settings{}{}.",
                tenants.len(),
                plural(tenants.len()),
                if names.is_empty() { "" } else { ": " },
                names.join(", ")
            );
            Ok(Outcome::Ok)
        }
        StateCommand::Rm {
            addresses, dry_run, ..
        } => {
            let removed = engine.remove_from_state(addresses, *dry_run).await?;
            let verb = if *dry_run { "Would remove" } else { "Removed" };
            for a in &removed {
                println!("{verb} {a}");
            }
            if !*dry_run {
                println!(
                    "Successfully removed {} resource instance{}. They still exist; `tenantform import` adopts them again.",
                    removed.len(),
                    plural(removed.len())
                );
            }
            Ok(Outcome::Ok)
        }
        StateCommand::Mv {
            from, to, dry_run, ..
        } => {
            engine.move_in_state(from, to, *dry_run).await?;
            let (from, to) = (from.to_string(), to.to_string());
            if *dry_run {
                println!("Would move {from:?} to {to:?}");
            } else {
                println!("Move {from:?} to {to:?}\nSuccessfully moved 1 object.");
            }
            Ok(Outcome::Ok)
        }
    }
}

/// `output`: a tenant's outputs, all of them (`name = value`, as Terraform prints
/// them) or one. A sensitive value is redacted unless `--show-secrets`; asked for by
/// name it is refused instead, so that a script never takes the redaction for the value.
pub async fn cmd_output(engine: &Engine, args: &OutputArgs) -> anyhow::Result<Outcome> {
    let state = engine
        .states(std::slice::from_ref(&args.tenant))
        .await?
        .pop()
        .expect("states of a named tenant, or an error");
    let outputs = engine.outputs(&state);
    let Some(name) = &args.name else {
        let shown = tenantform::outputs::redact_outputs(&outputs, args.show_secrets);
        if args.json {
            let document: serde_json::Map<String, serde_json::Value> = outputs
                .iter()
                .map(|(k, o)| {
                    let value = shown[k].clone();
                    (
                        k.clone(),
                        serde_json::json!({"sensitive": o.sensitive, "value": value}),
                    )
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&document)?);
        } else {
            for (k, v) in &shown {
                println!("{k} = {v}");
            }
        }
        return Ok(Outcome::Ok);
    };
    let output = outputs.get(name).ok_or_else(|| {
        // Passwords were outputs before they went to the credentials secret.
        let hint = if name.contains("password") || name == "redis_url" {
            "; the tenant's passwords are in its credentials secret \
             (output credentials_secret_arn), which only the tenant's IAM role can read"
        } else {
            ""
        };
        anyhow::anyhow!(
            "tenant {} has no output {name:?}{hint}; its outputs are: {}",
            args.tenant,
            outputs.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    if output.sensitive && !args.show_secrets {
        anyhow::bail!(
            "output {name:?} of tenant {} is sensitive: pass --show-secrets to print it",
            args.tenant
        );
    }
    match (&output.value, args.raw) {
        (serde_json::Value::String(s), true) => println!("{s}"),
        (v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)), true) => println!("{v}"),
        (_, true) => anyhow::bail!(
            "--raw prints strings, numbers and booleans only; output {name:?} is a list or an object: use --json"
        ),
        (v, false) => println!("{v}"),
    }
    Ok(Outcome::Ok)
}

fn format(json: bool) -> OutputFormat {
    if json {
        OutputFormat::Json
    } else {
        OutputFormat::Human
    }
}

async fn cmd_state_list(
    engine: &Engine,
    tenants: &[TenantId],
    style: Style,
) -> anyhow::Result<Outcome> {
    let list = engine.resource_list(tenants).await?;
    print_report(&list, OutputFormat::Human, style)?;
    Ok(Outcome::Ok)
}

async fn cmd_state_show(
    engine: &Engine,
    address: &ResourceAddress,
    show_secrets: bool,
    style: Style,
) -> anyhow::Result<Outcome> {
    let view = engine.resource_view(address, show_secrets).await?;
    print_report(&view, OutputFormat::Human, style)?;
    Ok(Outcome::Ok)
}

/// `state rollback`: an earlier version written as the next serial.
async fn cmd_state_rollback(
    engine: &Engine,
    tenant: &TenantId,
    serial: u64,
) -> anyhow::Result<Outcome> {
    let restored = engine.restore_state(tenant, serial).await?;
    let n = restored.resources.len();
    println!(
        "Recovered version {serial} of tenant {tenant}: it is now serial {} (lineage {}), {n} resource{}. No resource was changed; `tenantform plan --tenant {tenant}` shows what apply would do from here.",
        restored.serial,
        restored.lineage,
        plural(n)
    );
    Ok(Outcome::Ok)
}

/// `state migrate`: every tenant's state to another backend.
async fn cmd_state_migrate(
    engine: &Engine,
    to: StateBackendKind,
    json: bool,
    style: Style,
) -> anyhow::Result<Outcome> {
    let report = engine.migrate_state(to).await?;
    print_report(&report, format(json), style)?;
    if !json {
        println!(
            "Use it from now on: set [state] backend = \"{to}\" in platform.toml (or export TENANTFORM_STATE_BACKEND={to})."
        );
    }
    Ok(Outcome::Ok)
}

pub async fn cmd_force_unlock(
    engine: &Engine,
    tenant: &TenantId,
    lock_id: &str,
    force: bool,
) -> anyhow::Result<Outcome> {
    // A live holder goes on changing the tenant after its lock is broken, beside the
    // next process: ask first, as `terraform force-unlock` does.
    let live = engine
        .lock_holder(tenant)
        .await?
        .filter(|h| h.id.to_string() == lock_id)
        .and_then(|h| h.alive().map(|why| (h, why)));
    if let Some((holder, why)) = live
        && !force
    {
        let question = format!(
            "break the lock of tenant {tenant}, held by {holder}, although its holder is alive: {why}; it would go on changing the tenant beside the next process"
        );
        if !std::io::stdin().is_terminal() {
            bail!(
                "the holder of tenant {tenant}'s lock is alive ({why}); nothing was changed: stop that process, wait for its lease to expire, or pass --force to break the lock anyway"
            );
        }
        if !confirm(&question)? {
            println!("Force-unlock cancelled.");
            return Ok(Outcome::Failed);
        }
    }
    let holder = engine.force_unlock(tenant, lock_id).await?;
    println!(
        "Broke the lock of tenant {tenant}, held by {holder}. If that process is still running, it no longer excludes others: make sure it is gone."
    );
    Ok(Outcome::Ok)
}
