//! Drift reports for people and machines: terminal text, Markdown (a chat message or
//! an issue), and JSON for alerting (documented in the README, versioned by
//! `format_version`).

use std::fmt::Write;

use serde_json::{Value, json};

use super::{DRIFT_FORMAT_VERSION, DriftKind, DriftReport, TenantDrift};
use crate::plan::Action;
use crate::plan::render::{Style, value};

fn shown(v: &Option<Value>) -> String {
    v.as_ref().map(value).unwrap_or_else(|| "(not set)".into())
}

/// What to run next, for the tenants with drift.
fn next_steps(report: &DriftReport) -> Option<String> {
    let drifted: Vec<&str> = report
        .tenants
        .iter()
        .filter(|t| !t.drift.is_empty())
        .map(|t| t.tenant.as_str())
        .collect();
    if drifted.is_empty() {
        return None;
    }
    let flags: String = drifted.iter().map(|t| format!(" --tenant {t}")).collect();
    Some(format!(
        "Repair it back to the spec with `tenantform apply{flags}`, or accept it into state with `tenantform refresh{flags}`."
    ))
}

fn summary_line(report: &DriftReport) -> String {
    let s = report.summary();
    if s.tenants_with_drift == 0 {
        format!(
            "No drift: {} resource{} of {} tenant{} match their state.",
            s.resources_checked,
            if s.resources_checked == 1 { "" } else { "s" },
            s.tenants,
            if s.tenants == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "Drift in {} of {} tenants: {} deleted, {} changed outside tenantform ({} resources checked).",
            s.tenants_with_drift, s.tenants, s.deleted, s.changed, s.resources_checked
        )
    }
}

/// The report as a person reads it in a terminal.
pub fn human(report: &DriftReport, style: Style) -> String {
    let mut out = String::new();
    for t in &report.tenants {
        let status = match t.status() {
            "drifted" => style.action(Action::Delete, "drifted"),
            "pending" => style.action(Action::Update, "no drift; spec changes not yet applied"),
            _ => "clean".to_owned(),
        };
        let _ = writeln!(
            out,
            "{}: {status} ({} resources checked)",
            style.bold(t.tenant.as_str()),
            t.resources_checked
        );
        human_tenant(&mut out, t, style);
    }
    let _ = writeln!(out, "\n{}", style.bold(&summary_line(report)));
    if let Some(next) = next_steps(report) {
        let _ = writeln!(out, "{next}");
    }
    let pending = report.summary().pending_changes;
    if pending > 0 {
        let _ = writeln!(
            out,
            "{pending} spec change{} not yet applied (not drift): `tenantform plan` shows {}.",
            if pending == 1 { " is" } else { "s are" },
            if pending == 1 { "it" } else { "them" }
        );
    }
    out
}

fn human_tenant(out: &mut String, t: &TenantDrift, style: Style) {
    for d in &t.drift {
        match d.kind {
            DriftKind::Deleted => {
                let _ = writeln!(
                    out,
                    "  {} {}: deleted outside tenantform",
                    style.action(Action::Delete, "-"),
                    d.address
                );
            }
            DriftKind::Changed => {
                let _ = writeln!(
                    out,
                    "  {} {}: changed outside tenantform",
                    style.action(Action::Update, "~"),
                    d.address
                );
                let width = d.attributes.iter().map(|a| a.name.len()).max().unwrap_or(0);
                for a in &d.attributes {
                    let _ = writeln!(
                        out,
                        "      {:width$}: {} -> {}",
                        a.name,
                        shown(&a.recorded),
                        shown(&a.actual)
                    );
                }
            }
        }
    }
    if !t.pending.is_empty() {
        let _ = writeln!(out, "  spec changes not yet applied (not drift):");
        for p in &t.pending {
            let mut line = format!(
                "    {} {} ({})",
                style.action(p.action, p.action.symbol()),
                p.address,
                p.reason
            );
            if !p.changed_attributes.is_empty() && p.action != Action::Create {
                let _ = write!(line, " [{}]", p.changed_attributes.join(", "));
            }
            let _ = writeln!(out, "{line}");
        }
    }
}

/// The report as Markdown, for a chat message or an issue.
pub fn markdown(report: &DriftReport) -> String {
    let mut out = String::new();
    let s = report.summary();
    let title = if s.tenants_with_drift == 0 {
        "no drift"
    } else {
        "drift found"
    };
    let _ = writeln!(out, "### tenantform drift: {title}\n");
    let _ = writeln!(out, "{}\n", summary_line(report));
    out.push_str("| Tenant | Status | Checked | Deleted | Changed | Pending spec changes |\n");
    out.push_str("|---|---|---:|---:|---:|---:|\n");
    for t in &report.tenants {
        let count = |k: DriftKind| t.drift.iter().filter(|d| d.kind == k).count();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            t.tenant,
            t.status(),
            t.resources_checked,
            count(DriftKind::Deleted),
            count(DriftKind::Changed),
            t.pending.len()
        );
    }
    for t in report.tenants.iter().filter(|t| !t.drift.is_empty()) {
        let _ = writeln!(out, "\n**`{}`**\n", t.tenant);
        for d in &t.drift {
            match d.kind {
                DriftKind::Deleted => {
                    let _ = writeln!(out, "- `{}`: deleted outside tenantform", d.address);
                }
                DriftKind::Changed => {
                    let _ = writeln!(out, "- `{}`: changed outside tenantform", d.address);
                    for a in &d.attributes {
                        let _ = writeln!(
                            out,
                            "  - `{}`: `{}` → `{}`",
                            a.name,
                            shown(&a.recorded),
                            shown(&a.actual)
                        );
                    }
                }
            }
        }
    }
    if let Some(next) = next_steps(report) {
        let _ = writeln!(out, "\n{next}");
    }
    out
}

/// The report as JSON, for alerting. Shape documented in the README.
pub fn json(report: &DriftReport) -> Value {
    let s = report.summary();
    let tenants: Vec<Value> = report
        .tenants
        .iter()
        .map(|t| {
            json!({
                "tenant": t.tenant,
                "status": t.status(),
                "state_serial": t.state_serial,
                "resources_checked": t.resources_checked,
                "drift": t.drift.iter().map(|d| json!({
                    "address": d.address.to_string(),
                    "type": d.address.resource_type.as_str(),
                    "name": d.address.name,
                    "kind": d.kind,
                    "attributes": d.attributes.iter().map(|a| json!({
                        "name": a.name, "recorded": a.recorded, "actual": a.actual,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "pending": t.pending.iter().map(|p| json!({
                    "address": p.address.to_string(),
                    "actions": p.action.terraform_actions(),
                    "reason": p.reason,
                    "changed_attributes": p.changed_attributes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "format_version": DRIFT_FORMAT_VERSION,
        "tenantform_version": env!("CARGO_PKG_VERSION"),
        "created_at": report.created_at,
        "has_drift": report.has_drift(),
        "has_pending_changes": report.has_pending(),
        "summary": s,
        "tenants": tenants,
    })
}
