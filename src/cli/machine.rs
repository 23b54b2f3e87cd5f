//! Terraform's machine-readable UI (`terraform apply -json`), which `apply --json` and
//! `destroy --json` stream on stdout: one JSON object per line, each with `@level`,
//! `@message`, `@module` ("tenantform.ui"), `@timestamp` (RFC 3339) and `type`, plus the
//! fields of its type. A CI log parser written for Terraform's stream reads it as is:
//! `version` first, a `planned_change` per change and a `change_summary` of the plan,
//! then `apply_start` / `apply_progress` / `apply_complete` / `apply_errored` per step,
//! a `change_summary` of what was done, the `outputs` of each applied tenant, and last
//! tenantform's own `apply_report` (the report `--json` printed before the stream).
//! Errors are `diagnostic` messages. No message carries a secret: attribute values are
//! not in the stream, and a sensitive output has no `value`.
//!
//! `drift --json` streams the same way, as `terraform plan -json` reports drift:
//! `version`, a `resource_drift` per drifted resource, a `drift_summary`, and last
//! tenantform's `drift_report` (the whole report, under `report`).

use chrono::SecondsFormat;
use serde_json::{Value, json};

use tenantform::drift::DriftKind;
use tenantform::plan::graph::StepKind;
use tenantform::plan::terraform::provider_name;
use tenantform::resource::ResourceAddress;
use tenantform::{Action, DriftReport, Plan, PlanMode, Report};

/// The version of the stream's vocabulary: Terraform's machine-readable UI 1.2.
pub const UI_VERSION: &str = "1.2";

/// Prints one message as one line on stdout.
pub fn emit(message: Value) {
    println!("{message}");
}

/// A message of `kind` with the common fields and `fields` (an object) merged in.
pub fn message(level: &str, text: &str, kind: &str, fields: Value) -> Value {
    let mut m = json!({
        "@level": level,
        "@message": text,
        "@module": "tenantform.ui",
        "@timestamp": chrono::Local::now().to_rfc3339_opts(SecondsFormat::Micros, false),
        "type": kind,
    });
    if let (Some(m), Value::Object(fields)) = (m.as_object_mut(), fields) {
        m.extend(fields);
    }
    m
}

/// The first message: which tenantform, and which version of the vocabulary.
pub fn version() -> Value {
    let version = env!("CARGO_PKG_VERSION");
    message(
        "info",
        &format!("tenantform {version}"),
        "version",
        json!({"tenantform": version, "ui": UI_VERSION}),
    )
}

/// An error, as Terraform reports one: the summary is the first line of the message,
/// the detail the rest.
pub fn diagnostic(text: &str, address: Option<&ResourceAddress>) -> Value {
    let (summary, detail) = text.split_once('\n').unwrap_or((text, ""));
    let mut diagnostic = json!({
        "severity": "error",
        "summary": summary,
        "detail": detail.trim_start(),
    });
    if let Some(address) = address {
        diagnostic["address"] = json!(address.to_string());
    }
    message(
        "error",
        &format!("Error: {text}"),
        "diagnostic",
        json!({ "diagnostic": diagnostic }),
    )
}

/// A resource as Terraform's hooks name one: the tenantform address (as in the JSON
/// plan) in a module instance per tenant.
pub fn resource(address: &ResourceAddress) -> Value {
    let provider = provider_name(address.resource_type);
    json!({
        "addr": address.to_string(),
        "module": format!("module.tenant[\"{}\"]", address.tenant),
        "resource": format!("{}.{}", address.resource_type, address.name),
        "implied_provider": provider.strip_prefix("tenantform/").unwrap_or(provider),
        "resource_type": address.resource_type.to_string(),
        "resource_name": address.name,
        "resource_key": null,
    })
}

/// A step's action in a hook message.
pub fn hook_action(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Create => "create",
        StepKind::Update => "update",
        StepKind::Delete => "delete",
    }
}

/// One `planned_change` per change of the plan, then its `change_summary`.
pub fn plan_messages(plan: &Plan) -> Vec<Value> {
    let mut out: Vec<Value> = plan
        .changes()
        .filter(|c| c.action.is_change())
        .map(|c| {
            let action = match c.action {
                Action::Create => "create",
                Action::Update => "update",
                Action::Replace => "replace",
                Action::Delete => "delete",
                Action::NoOp => "noop",
            };
            message(
                "info",
                &format!("{}: Plan to {action}", c.address),
                "planned_change",
                json!({"change": {"resource": resource(&c.address), "action": action}}),
            )
        })
        .collect();
    let replaced = plan.count(Action::Replace);
    let (add, change, remove) = (
        plan.count(Action::Create) + replaced,
        plan.count(Action::Update),
        plan.count(Action::Delete) + replaced,
    );
    out.push(message(
        "info",
        &format!("Plan: {add} to add, {change} to change, {remove} to destroy."),
        "change_summary",
        json!({"changes": {"add": add, "change": change, "import": 0, "remove": remove, "operation": "plan"}}),
    ));
    out
}

/// The `change_summary` of what an apply (or a destroy) did.
pub fn applied_summary(
    mode: PlanMode,
    add: usize,
    change: usize,
    remove: usize,
    ok: bool,
) -> Value {
    let how = if ok {
        "complete"
    } else {
        "finished with errors"
    };
    let (text, operation) = if mode == PlanMode::Destroy {
        (
            format!("Destroy {how}! Resources: {remove} destroyed."),
            "destroy",
        )
    } else {
        (
            format!("Apply {how}! Resources: {add} added, {change} changed, {remove} destroyed."),
            "apply",
        )
    };
    message(
        "info",
        &text,
        "change_summary",
        json!({"changes": {"add": add, "change": change, "import": 0, "remove": remove, "operation": operation}}),
    )
}

/// The outputs of one tenant: Terraform's `outputs` message, with the tenant named. A
/// sensitive output has its type and no value.
pub fn outputs(
    tenant: &str,
    outputs: &std::collections::BTreeMap<String, tenantform::outputs::Output>,
) -> Value {
    let map: serde_json::Map<String, Value> = outputs
        .iter()
        .map(|(name, o)| {
            let kind = match &o.value {
                Value::String(_) => json!("string"),
                Value::Number(_) => json!("number"),
                Value::Bool(_) => json!("bool"),
                _ => json!("dynamic"),
            };
            let entry = if o.sensitive {
                json!({"sensitive": true, "type": kind})
            } else {
                json!({"sensitive": false, "type": kind, "value": o.value})
            };
            (name.clone(), entry)
        })
        .collect();
    message(
        "info",
        &format!("Outputs of {tenant}: {}", map.len()),
        "outputs",
        json!({"tenant": tenant, "outputs": map}),
    )
}

/// The messages of `drift --json` after `version`: a `resource_drift` per drifted
/// resource (action `delete` for a resource gone, `update` for one changed, with the
/// names of the attributes that differ, never their values), a `drift_summary`, and
/// the report.
pub fn drift_messages(report: &DriftReport) -> Vec<Value> {
    let mut out = Vec::new();
    for drift in report.tenants.iter().flat_map(|t| &t.drift) {
        let (action, verb) = match drift.kind {
            DriftKind::Deleted => ("delete", "has been deleted"),
            DriftKind::Changed => ("update", "has changed"),
        };
        let attributes: Vec<&str> = drift.attributes.iter().map(|a| a.name.as_str()).collect();
        out.push(message(
            "info",
            &format!("{}: Drift detected ({verb})", drift.address),
            "resource_drift",
            json!({"change": {
                "resource": resource(&drift.address),
                "action": action,
                "physical_id": drift.physical_id,
                "attributes": attributes,
            }}),
        ));
    }
    let s = report.summary();
    out.push(message(
        "info",
        &format!(
            "Drift: {} of {} tenants, {} resources changed, {} deleted",
            s.tenants_with_drift, s.tenants, s.changed, s.deleted
        ),
        "drift_summary",
        json!({"drift": {
            "tenants": s.tenants,
            "tenants_with_drift": s.tenants_with_drift,
            "resources_checked": s.resources_checked,
            "changed": s.changed,
            "deleted": s.deleted,
            "pending_changes": s.pending_changes,
        }}),
    ));
    out.push(message(
        "info",
        if report.has_drift() {
            "Drift report: drift detected"
        } else {
            "Drift report: no drift"
        },
        "drift_report",
        json!({ "report": report.json() }),
    ));
    out
}
