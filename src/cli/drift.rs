//! `drift`, `refresh`, `import` and `adopt`: what changed behind tenantform's back,
//! accepting it into state, adopting what was made by hand, and taking over what
//! Terraform manages.

use tenantform::report::Style;
use tenantform::{Engine, Report};

use super::args::{AdoptArgs, DriftArgs, ImportArgs, RefreshArgs};
use super::{Outcome, confirm, machine, plural, print_report};

pub async fn cmd_drift(engine: &Engine, args: &DriftArgs, style: Style) -> anyhow::Result<Outcome> {
    let report = engine.drift(&args.selection.tenants).await?;
    if args.format.format() == tenantform::OutputFormat::Json {
        machine::emit(machine::version());
        machine::drift_messages(&report)
            .into_iter()
            .for_each(machine::emit);
    } else {
        print_report(&report, args.format.format(), style)?;
    }
    Ok(if args.detailed_exitcode && report.has_drift() {
        Outcome::Changes
    } else {
        Outcome::Ok
    })
}

pub async fn cmd_refresh(
    engine: &Engine,
    args: &RefreshArgs,
    style: Style,
) -> anyhow::Result<Outcome> {
    let auto = args.auto_approve;
    let mut refused = None;
    let (report, written) = engine
        .refresh_state(&args.selection.tenants, |report| {
            print!("{}", report.human(style));
            if auto {
                return true;
            }
            match confirm("record this drift in state (the resources themselves are not changed)") {
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
        print!("{}", report.human(style));
        println!("Nothing to record.");
    } else if written {
        let n = report.summary().tenants_with_drift;
        println!(
            "Refresh complete! State of {n} tenant{} updated to match reality.",
            plural(n)
        );
    } else {
        anyhow::bail!("refresh cancelled: nothing was changed");
    }
    Ok(Outcome::Ok)
}

pub async fn cmd_import(engine: &Engine, args: &ImportArgs) -> anyhow::Result<Outcome> {
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

pub async fn cmd_adopt(engine: &Engine, args: &AdoptArgs, style: Style) -> anyhow::Result<Outcome> {
    let options = tenantform::adopt::AdoptOptions {
        tenants: args.selection.tenants.clone(),
        module_address: args.module_address.clone(),
        dry_run: args.dry_run,
    };
    let report = engine.adopt(&args.from_tfstate, &options).await?;
    let format = if args.json {
        tenantform::OutputFormat::Json
    } else {
        tenantform::OutputFormat::Human
    };
    print_report(&report, format, style)?;
    Ok(if report.refused() {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}
