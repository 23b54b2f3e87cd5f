//! Commands that read specs and state and change nothing but a lock: `validate`,
//! `show`, `state list`, `state show`, `force-unlock`.

use tenantform::report::Style;
use tenantform::{Engine, OutputFormat, ResourceAddress, TenantId};

use super::args::ShowArgs;
use super::{Outcome, plural, print_report};

pub fn cmd_validate(engine: &Engine) -> anyhow::Result<Outcome> {
    let specs = engine.specs()?;
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
pub fn cmd_show(engine: &Engine, args: &ShowArgs, style: Style) -> anyhow::Result<Outcome> {
    let format = args.format.format();
    if let Some(file) = &args.planfile {
        let plan = engine.load_plan(file)?;
        print_report(&plan, format, style)?;
    } else {
        let view = engine.tenants_view(&args.tenants, args.show_secrets)?;
        print_report(&view, format, style)?;
    }
    Ok(Outcome::Ok)
}

pub fn cmd_state_list(
    engine: &Engine,
    tenants: &[TenantId],
    style: Style,
) -> anyhow::Result<Outcome> {
    let list = engine.resource_list(tenants)?;
    print_report(&list, OutputFormat::Human, style)?;
    Ok(Outcome::Ok)
}

pub fn cmd_state_show(
    engine: &Engine,
    address: &ResourceAddress,
    show_secrets: bool,
    style: Style,
) -> anyhow::Result<Outcome> {
    let view = engine.resource_view(address, show_secrets)?;
    print_report(&view, OutputFormat::Human, style)?;
    Ok(Outcome::Ok)
}

pub fn cmd_force_unlock(
    engine: &Engine,
    tenant: &TenantId,
    lock_id: &str,
) -> anyhow::Result<Outcome> {
    let holder = engine.force_unlock(tenant, lock_id)?;
    println!(
        "Broke the lock of tenant {tenant}, held by {holder}. If that process is still running, it no longer excludes others: make sure it is gone."
    );
    Ok(Outcome::Ok)
}
