//! Plans for people and machines: human text, JSON, Markdown.
//!
//! The JSON view follows Terraform's machine-readable plan (`resource_changes`,
//! `change.actions` with `"no-op"`, `"create"`, `"update"`, `["delete", "create"]`,
//! `"delete"`, `before`/`after`, `after_unknown`, `*_sensitive`, `replace_paths`,
//! `action_reason`), so that tooling written for `terraform show -json` carries over.
//! Its shape is documented in the README and versioned by `format_version`.

use std::fmt::Write;

use serde_json::{Value, json};

use super::cost::{CostEstimate, inr};
use super::stream::Part;
use super::{Action, ActionReason, Plan, PlanMode, ResourceChange, TenantPlan, terraform};
use crate::policy::PolicyLevel;
use crate::resource::iam::with_account;
use crate::resource::schema;
use crate::secret::REDACTED;

/// The version of the JSON view's shape. Additive changes keep the major number.
pub const JSON_FORMAT_VERSION: &str = "1.0";

/// Counts in Terraform's sense: a replace is one add and one destroy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

impl Summary {
    /// The counts of `changes`.
    pub fn of<'a>(changes: impl IntoIterator<Item = &'a ResourceChange>) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            match c.action {
                Action::NoOp => {}
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
            }
        }
        s
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to add, {} to change, {} to destroy",
            self.add, self.change, self.destroy
        )
    }
}

/// ANSI colours, or none.
#[derive(Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub(crate) fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    pub(crate) fn action(&self, a: Action, s: &str) -> String {
        let code = match a {
            Action::Create => "32",
            Action::Update => "33",
            Action::Replace => "35",
            Action::Delete => "31",
            Action::NoOp => "0",
        };
        self.paint(code, s)
    }
    pub(crate) fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

pub(crate) fn value(v: &Value) -> String {
    match v {
        Value::String(s) if s == REDACTED => s.clone(),
        other => other.to_string(),
    }
}

fn verb(c: &ResourceChange) -> &'static str {
    match c.action {
        Action::NoOp => "is unchanged",
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Replace => "must be replaced",
        Action::Delete => "will be destroyed",
    }
}

fn tenant_heading(t: &TenantPlan) -> String {
    let mut h = format!("Tenant {}", t.tenant);
    if let Some(spec) = &t.spec {
        let _ = write!(h, " ({}, {}, {})", spec.name, spec.tier, spec.region);
    } else {
        h.push_str(" (spec removed)");
    }
    if t.new_tenant && t.changes.iter().any(|c| c.action == Action::Create) {
        h.push_str(": new tenant, all-or-nothing");
    }
    if t.protected {
        h.push_str(" [protected]");
    }
    h
}

/// The plan as a person reads it in a terminal.
pub fn human(plan: &Plan, style: Style) -> String {
    plan.show_account(human_text(plan, style))
}

fn human_text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    if !plan.has_changes() {
        out.push_str(&style.bold("No changes."));
        out.push_str(match plan.mode {
            PlanMode::Normal => " Every selected tenant matches its spec.\n",
            PlanMode::Destroy => " There is nothing to destroy.\n",
        });
        if !plan.refreshed {
            out.push_str("(Resources were not read back: --refresh=false.)\n");
        }
        human_warnings(&mut out, plan, style);
        return out;
    }
    out.push_str("tenantform will perform the following actions:\n");
    for t in plan.tenants.iter().filter(|t| t.has_changes()) {
        let _ = writeln!(out, "\n{}", style.bold(&tenant_heading(t)));
        if let Some(cost) = &t.cost {
            let _ = writeln!(out, "  {}", cost_line(cost));
        }
        if t.protected != t.protected_before {
            let _ = writeln!(
                out,
                "  {} protected: {} -> {} (recorded in state)",
                style.action(Action::Update, "~"),
                t.protected_before,
                t.protected
            );
        }
        for c in t.changes.iter().filter(|c| c.action.is_change()) {
            human_change(&mut out, c, style);
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        style.bold(&format!("Plan: {}.", Summary::of(plan.changes())))
    );
    if plan.tenants.iter().any(|t| t.cost.is_some()) {
        let _ = writeln!(
            out,
            "Estimated monthly cost of the tenants in this plan: {}.",
            inr(plan.monthly_cost_inr())
        );
    }
    human_warnings(&mut out, plan, style);
    out
}

/// `Estimated cost: ₹56,400/month (silver in eu-west-1 at 1.2x; budget ₹6,00,000)`.
fn cost_line(c: &CostEstimate) -> String {
    let mut line = format!("Estimated cost: {}/month", inr(c.monthly_inr));
    if let Some(before) = c.before_monthly_inr {
        let _ = write!(line, " (was {}/month)", inr(before));
    }
    let _ = write!(
        line,
        " ({} in {} at {}x; budget {})",
        c.tier,
        c.region,
        c.region_multiplier,
        inr(c.budget_inr as f64)
    );
    line
}

fn human_warnings(out: &mut String, plan: &Plan, style: Style) {
    for w in plan.budget_warnings() {
        let _ = writeln!(out, "{} {w}", style.paint("33;1", "Warning:"));
    }
    if let Some(report) = &plan.policy {
        let _ = writeln!(
            out,
            "\nPolicy check ({}): {}.",
            report.dir.display(),
            report.summary()
        );
        for v in &report.results {
            let label = match v.level {
                PolicyLevel::Mandatory => style.paint("31;1", "Policy violation (mandatory):"),
                PolicyLevel::Advisory => style.paint("33;1", "Policy warning (advisory):"),
            };
            let _ = writeln!(out, "{label} {v}");
        }
        if report.enforce().is_err() {
            let _ = writeln!(
                out,
                "This plan cannot be applied until the mandatory policies pass."
            );
        }
    }
}

fn human_change(out: &mut String, c: &ResourceChange, style: Style) {
    let _ = writeln!(out, "\n  # {} {} ({})", c.address, verb(c), c.reason);
    let sym = c.action.symbol();
    let _ = writeln!(
        out,
        "{}{} {}",
        " ".repeat(4usize.saturating_sub(sym.len() + 1)),
        style.action(c.action, sym),
        c.address.local()
    );
    let width = c
        .attribute_changes
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(0);
    match c.action {
        Action::Create => {
            for a in &c.attribute_changes {
                let after = a.after.as_ref().map(value).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "      {} {:width$} = {after}",
                    style.action(Action::Create, "+"),
                    a.name
                );
            }
            for a in schema(c.address.resource_type)
                .attributes
                .iter()
                .filter(|a| a.computed)
            {
                let note = if a.sensitive {
                    "(known after apply, sensitive)"
                } else {
                    "(known after apply)"
                };
                let _ = writeln!(
                    out,
                    "      {} {:width$} = {note}",
                    style.action(Action::Create, "+"),
                    a.name
                );
            }
        }
        Action::Update | Action::Replace => {
            for a in &c.attribute_changes {
                let forces = if a.forces_replacement {
                    style.action(Action::Delete, " # forces replacement")
                } else {
                    String::new()
                };
                if let Some(lines) = element_changes(a.before.as_ref(), a.after.as_ref(), style) {
                    let (open, close) = match a.after {
                        Some(Value::Array(_)) => ("[", "]"),
                        _ => ("{", "}"),
                    };
                    let _ = writeln!(
                        out,
                        "      {} {:width$} = {open}{forces}",
                        style.action(Action::Update, "~"),
                        a.name
                    );
                    for line in lines {
                        let _ = writeln!(out, "          {line}");
                    }
                    let _ = writeln!(out, "        {close}");
                    continue;
                }
                // A computed attribute that changes is one the provider sets anew (an
                // adopted role's password): its value exists only after apply.
                // So is a secret's value, which is never an attribute.
                let computed = schema(c.address.resource_type)
                    .attribute(&a.name)
                    .is_some_and(|s| s.computed)
                    || a.name == crate::resource::secret::VALUE;
                let before = match (&a.before, computed) {
                    (Some(v), _) => value(v),
                    (None, true) => "(not in state)".into(),
                    (None, false) => "null".into(),
                };
                let after = match (computed, &a.after) {
                    (true, _) => "(known after apply)".into(),
                    (false, Some(v)) => value(v),
                    (false, None) => "null".into(),
                };
                let _ = writeln!(
                    out,
                    "      {} {:width$} = {before} -> {after}{forces}",
                    style.action(Action::Update, "~"),
                    a.name
                );
            }
            if c.action == Action::Replace {
                let note = schema(c.address.resource_type).replace_note;
                let _ = writeln!(out, "      (replaced because {note})");
            }
        }
        Action::Delete | Action::NoOp => {}
    }
}

/// The lines of a map or list change that name only what changed, as Terraform
/// prints them: a map's added, removed and changed keys, a list's added and removed
/// elements (lists of scalars only), then how many elements are unchanged. `None` for
/// any other change, which is printed whole.
fn element_changes(
    before: Option<&Value>,
    after: Option<&Value>,
    style: Style,
) -> Option<Vec<String>> {
    let add = |s: String| format!("{} {s}", style.action(Action::Create, "+"));
    let remove = |s: String| format!("{} {s}", style.action(Action::Delete, "-"));
    let hidden = |n: usize| {
        (n > 0).then(|| {
            format!(
                "  # ({n} unchanged element{} hidden)",
                if n == 1 { "" } else { "s" }
            )
        })
    };
    let mut lines = Vec::new();
    match (before?, after?) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            let changed: Vec<(String, Option<&Value>, Option<&Value>)> = keys
                .into_iter()
                .filter(|k| b.get(*k) != a.get(*k))
                .map(|k| (Value::String(k.clone()).to_string(), b.get(k), a.get(k)))
                .collect();
            let width = changed.iter().map(|(k, ..)| k.len()).max().unwrap_or(0);
            let unchanged = b
                .keys()
                .chain(a.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                - changed.len();
            for (key, old, new) in &changed {
                let key = format!("{key:width$}");
                lines.push(match (old, new) {
                    (Some(old), Some(new)) => format!(
                        "{} {key} = {} -> {}",
                        style.action(Action::Update, "~"),
                        value(old),
                        value(new)
                    ),
                    (None, Some(new)) => add(format!("{key} = {}", value(new))),
                    (Some(old), None) => remove(format!("{key} = {}", value(old))),
                    (None, None) => continue,
                });
            }
            lines.extend(hidden(unchanged));
        }
        (Value::Array(b), Value::Array(a))
            if b.iter().chain(a).all(|v| !v.is_object() && !v.is_array()) =>
        {
            lines.extend(
                b.iter()
                    .filter(|v| !a.contains(v))
                    .map(|v| remove(value(v))),
            );
            lines.extend(a.iter().filter(|v| !b.contains(v)).map(|v| add(value(v))));
            if lines.is_empty() {
                // Only the order changed: the whole list says it best.
                return None;
            }
            lines.extend(hidden(a.iter().filter(|v| b.contains(v)).count()));
        }
        _ => return None,
    }
    Some(lines)
}

fn terraform_action_reason(c: &ResourceChange) -> Option<&'static str> {
    match (&c.action, &c.reason) {
        (Action::Replace, ActionReason::ReplaceRequested) => Some("replace_by_request"),
        (Action::Replace, ActionReason::DependencyReplaced { .. }) => Some("replace_by_triggers"),
        (Action::Replace, _) => Some("replace_because_cannot_update"),
        (Action::Delete, ActionReason::RemovedFromSpec) => {
            Some("delete_because_no_resource_config")
        }
        _ => None,
    }
}

/// `{"kind": "dependency_replaced", "dependency": "...", "description": "..."}`.
fn reason_json(reason: &ActionReason) -> Value {
    let mut v = serde_json::to_value(reason).expect("a reason serializes");
    v["description"] = json!(reason.to_string());
    v
}

/// One entry of `resource_changes`.
fn resource_change_json(c: &ResourceChange) -> Value {
    let t = c.address.resource_type;
    let after = c
        .after
        .as_ref()
        .map(|r| terraform::values(&r.attributes, t));
    let before = terraform::prior(c).map(|a| terraform::values(a, t));
    let computed: serde_json::Map<String, Value> = schema(t)
        .attributes
        .iter()
        .filter(|a| {
            a.computed
                && (matches!(c.action, Action::Create | Action::Replace)
                    || c.attribute_changes.iter().any(|x| x.name == a.name))
        })
        .map(|a| (a.name.to_owned(), Value::Bool(true)))
        .collect();
    let replace_paths: Vec<Value> = c
        .attribute_changes
        .iter()
        .filter(|a| a.forces_replacement)
        .map(|a| json!([a.name]))
        .collect();
    let sensitive = |present: bool| {
        if present {
            terraform::sensitive_values(t)
        } else {
            Value::Bool(false)
        }
    };
    let mut change = json!({
        "actions": c.action.terraform_actions(),
        "before_sensitive": sensitive(before.is_some()),
        "after_sensitive": sensitive(after.is_some()),
        "before": before,
        "after": after,
        "after_unknown": computed,
    });
    if !replace_paths.is_empty() {
        change["replace_paths"] = Value::Array(replace_paths);
    }
    let mut rc = json!({
        "address": c.address.to_string(),
        "module_address": terraform::module_address(&c.address.tenant),
        "mode": "managed",
        "type": t.as_str(),
        "name": c.address.name,
        "provider_name": terraform::provider_name(t),
        "tenant": c.address.tenant,
        "change": change,
        "reason": reason_json(&c.reason),
        "changed_attributes": c.attribute_changes.iter().map(|a| &a.name).collect::<Vec<_>>(),
    });
    if let Some(r) = terraform_action_reason(c) {
        rc["action_reason"] = json!(r);
    }
    rc
}

/// The machine-readable view of a plan (see the module docs).
pub fn json(plan: &Plan) -> Value {
    let doc = document(plan).into_value();
    match &plan.aws_account_id {
        Some(account) => with_account(&doc, account),
        None => doc,
    }
}

/// Writes the plan's JSON view to `out` on one line: the bytes of
/// `serde_json::to_string(&json(plan))`, made one tenant and one resource at a time,
/// so that a plan of thousands of tenants never holds its whole document in memory.
pub fn write_json(plan: &Plan, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    document(plan).write(out, plan.aws_account_id.as_deref())
}

fn tenant_json(t: &TenantPlan) -> Value {
    let s = Summary::of(&t.changes);
    json!({
        "tenant": t.tenant,
        "module_address": terraform::module_address(&t.tenant),
        "spec": t.spec,
        "new_tenant": t.new_tenant,
        "spec_removed": t.spec.is_none(),
        "protected": t.protected,
        "protected_before": t.protected_before,
        "state_serial": t.state_serial,
        "state_lineage": t.state_lineage,
        "has_changes": t.has_changes(),
        "summary": {"add": s.add, "change": s.change, "destroy": s.destroy},
        "cost": t.cost.as_ref().map(|c| json!({
            "currency": "INR",
            "monthly_inr": c.monthly_inr,
            "before_monthly_inr": c.before_monthly_inr,
            "components": c.components,
            "tier": c.tier,
            "region": c.region,
            "region_multiplier": c.region_multiplier,
            "budget_inr": c.budget_inr,
            "over_budget": c.over_budget(),
        })),
    })
}

/// The JSON view in parts, with the account still a placeholder: the tenants, the
/// modules and the resource changes are made one at a time as they are written.
fn document(plan: &Plan) -> Part<'_> {
    let s = Summary::of(plan.changes());
    let mut parts = vec![
        ("format_version", Part::Whole(json!(JSON_FORMAT_VERSION))),
        (
            "terraform_version",
            Part::Whole(json!(terraform::TERRAFORM_VERSION)),
        ),
        (
            "tenantform_version",
            Part::Whole(json!(env!("CARGO_PKG_VERSION"))),
        ),
        ("mode", Part::Whole(json!(plan.mode))),
        ("refreshed", Part::Whole(json!(plan.refreshed))),
        ("created_at", Part::Whole(json!(plan.created_at))),
        ("has_changes", Part::Whole(json!(plan.has_changes()))),
        (
            "summary",
            Part::Whole(json!({"add": s.add, "change": s.change, "destroy": s.destroy})),
        ),
        (
            "tenants",
            Part::Items(Box::new(plan.tenants.iter().map(tenant_json))),
        ),
        ("planned_values", terraform::planned_values(plan)),
        (
            "resource_changes",
            Part::Items(Box::new(plan.changes().map(resource_change_json))),
        ),
        ("configuration", Part::Whole(terraform::configuration(plan))),
        (
            "cost",
            Part::Whole(json!({"currency": "INR", "monthly_inr": plan.monthly_cost_inr()})),
        ),
        ("warnings", Part::Whole(json!(plan.budget_warnings()))),
    ];
    if let Some(prior) = terraform::prior_state(plan) {
        parts.push(("prior_state", prior));
    }
    if let Some(report) = &plan.policy {
        parts.push((
            "policy",
            Part::Whole(json!({
                "dir": report.dir,
                "files": report.files,
                "mandatory_violations": report.mandatory().count(),
                "advisory_warnings": report.advisory().count(),
                "passed": report.enforce().is_ok(),
            })),
        ));
        parts.push(("policy_results", Part::Whole(json!(report.results))));
    }
    Part::Object(parts)
}

/// The plan as a pull-request comment.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let s = Summary::of(plan.changes());
    if !plan.has_changes() {
        out.push_str(
            "### tenantform plan: no changes\n\nEvery selected tenant matches its spec.\n",
        );
        markdown_warnings(&mut out, plan);
        return out;
    }
    let _ = writeln!(out, "### tenantform plan: {s}\n");
    out.push_str("| Tenant | Tier | Region | Add | Change | Destroy | Monthly cost | Note |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---|\n");
    for t in &plan.tenants {
        let ts = Summary::of(&t.changes);
        let (tier, region) = t
            .spec
            .as_ref()
            .map(|s| (s.tier.as_str(), s.region.as_str()))
            .unwrap_or(("-", "-"));
        let mut note = Vec::new();
        if t.spec.is_none() {
            note.push("spec removed");
        }
        if t.new_tenant && ts.add > 0 {
            note.push("new tenant");
        }
        if t.protected {
            note.push("protected");
        }
        if t.cost.as_ref().is_some_and(CostEstimate::over_budget) {
            note.push("over budget");
        }
        let cost = match &t.cost {
            None => "-".to_owned(),
            Some(c) => match c.before_monthly_inr {
                Some(before) => format!("{} → {}", inr(before), inr(c.monthly_inr)),
                None => inr(c.monthly_inr),
            },
        };
        let _ = writeln!(
            out,
            "| `{}` | {tier} | {region} | {} | {} | {} | {cost} | {} |",
            t.tenant,
            ts.add,
            ts.change,
            ts.destroy,
            note.join(", ")
        );
    }
    if plan.tenants.iter().any(|t| t.cost.is_some()) {
        let _ = writeln!(
            out,
            "\nEstimated monthly cost of these tenants: **{}** (tier prices × region multipliers).",
            inr(plan.monthly_cost_inr())
        );
    }
    markdown_warnings(&mut out, plan);
    for t in plan.tenants.iter().filter(|t| t.has_changes()) {
        let _ = writeln!(
            out,
            "\n<details><summary><code>{}</code>: {}</summary>\n\n```diff",
            t.tenant,
            Summary::of(&t.changes)
        );
        for c in t.changes.iter().filter(|c| c.action.is_change()) {
            let sym = match c.action {
                Action::Create => "+",
                Action::Delete => "-",
                Action::Replace => "-/+",
                _ => "!",
            };
            let mut line = format!("{sym} {}", c.address.local());
            if !c.attribute_changes.is_empty() && c.action != Action::Create {
                let names: Vec<&str> = c
                    .attribute_changes
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect();
                let _ = write!(line, " [{}]", names.join(", "));
            }
            let _ = writeln!(out, "{line}   # {}", c.reason);
        }
        out.push_str("```\n\n</details>\n");
    }
    out
}

fn markdown_warnings(out: &mut String, plan: &Plan) {
    for w in plan.budget_warnings() {
        let _ = writeln!(out, "\n> **Warning:** {w}");
    }
    if let Some(report) = &plan.policy {
        let verdict = if report.enforce().is_ok() {
            "passed"
        } else {
            "**failed: this plan cannot be applied**"
        };
        let _ = writeln!(
            out,
            "\n#### Policy check: {verdict}\n\n{} in `{}`.\n",
            report.summary(),
            report.dir.display()
        );
        for v in &report.results {
            let label = match v.level {
                PolicyLevel::Mandatory => ":x: **mandatory**",
                PolicyLevel::Advisory => ":warning: advisory",
            };
            let _ = writeln!(
                out,
                "- {label} `{}` ({}): {}",
                v.policy,
                v.files.join(", "),
                v.message
            );
        }
    }
}

#[cfg(test)]
mod element_change_tests {
    use super::*;
    use serde_json::json;

    fn lines(before: Value, after: Value) -> Option<Vec<String>> {
        element_changes(Some(&before), Some(&after), Style { color: false })
    }

    #[test]
    fn a_map_change_names_added_removed_and_changed_keys_only() {
        assert_eq!(
            lines(
                json!({"a": 1, "gone": "x", "same": true, "tier": "silver"}),
                json!({"a": 1, "new": "y", "same": true, "tier": "gold"})
            )
            .unwrap(),
            vec![
                "- \"gone\" = \"x\"",
                "+ \"new\"  = \"y\"",
                "~ \"tier\" = \"silver\" -> \"gold\"",
                "  # (2 unchanged elements hidden)",
            ]
        );
    }

    #[test]
    fn a_list_of_scalars_names_its_added_and_removed_elements() {
        assert_eq!(
            lines(json!(["a", "b", "c"]), json!(["a", "c", "d"])).unwrap(),
            vec!["- \"b\"", "+ \"d\"", "  # (2 unchanged elements hidden)"]
        );
        // Only the order changed, or the elements are documents: printed whole.
        assert_eq!(lines(json!(["a", "b"]), json!(["b", "a"])), None);
        assert_eq!(lines(json!([{"a": 1}]), json!([{"a": 2}])), None);
        assert_eq!(lines(json!("x"), json!("y")), None);
    }
}
