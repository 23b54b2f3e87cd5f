//! Drift reports for people and machines: terminal text, Markdown (a chat message or
//! an issue), and JSON for alerting (documented in the README, versioned by
//! `format_version`).

use std::fmt::Write;

use serde_json::{Value, json};

use super::{DRIFT_FORMAT_VERSION, DriftKind, DriftReport, ResourceDrift, TenantDrift};
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

/// ` (bucket-name)` after an address: the object in its service.
fn physical(d: &ResourceDrift) -> String {
    d.physical_id
        .as_ref()
        .map(|id| format!(" ({id})"))
        .unwrap_or_default()
}

fn human_tenant(out: &mut String, t: &TenantDrift, style: Style) {
    for d in &t.drift {
        match d.kind {
            DriftKind::Deleted => {
                let _ = writeln!(
                    out,
                    "  {} {}{}: deleted outside tenantform",
                    style.action(Action::Delete, "-"),
                    d.address,
                    physical(d)
                );
            }
            DriftKind::Changed => {
                let _ = writeln!(
                    out,
                    "  {} {}{}: changed outside tenantform",
                    style.action(Action::Update, "~"),
                    d.address,
                    physical(d)
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
                    let _ = writeln!(
                        out,
                        "- `{}`{}: deleted outside tenantform",
                        d.address,
                        physical(d)
                    );
                }
                DriftKind::Changed => {
                    let _ = writeln!(
                        out,
                        "- `{}`{}: changed outside tenantform",
                        d.address,
                        physical(d)
                    );
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
                    "physical_id": d.physical_id,
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

/// Whole renderings of drift reports as snapshots, one [`check`] for all. Reports are
/// made in-process from fabricated states and read-backs.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use expect_test::{Expect, expect};

    use crate::blueprint::tenant_blueprint;
    use crate::drift::{DRIFT_FORMAT_VERSION, DriftReport, tenant_drift};
    use crate::plan::tests::{Case, applied, specs, tenant};
    use crate::report::OutputFormat::{self, Human, Json, Markdown};
    use crate::report::snapshot::rendered;
    use crate::resource::Attributes;
    use crate::state::TenantState;

    fn check(report: &DriftReport, format: OutputFormat, expect: Expect) {
        expect.assert_eq(&rendered(report, format));
    }

    /// Everything in `state` read back as recorded.
    fn read_back(state: &TenantState) -> BTreeMap<String, Option<Attributes>> {
        state
            .resources
            .iter()
            .map(|(k, r)| (k.clone(), Some(r.attributes.clone())))
            .collect()
    }

    fn report(tenants: Vec<crate::drift::TenantDrift>) -> DriftReport {
        DriftReport {
            format_version: DRIFT_FORMAT_VERSION.into(),
            created_at: chrono::Utc::now(),
            tenants,
        }
    }

    /// Three tenants: one with a resource changed and one deleted outside tenantform,
    /// one clean, one with a spec change not yet applied.
    #[test]
    fn drift_clean_and_pending() {
        let specs = specs();
        let drifted = tenant(&specs, "retail-chain");
        let drifted_state = applied(&tenant_blueprint(&drifted, &specs.platform), false);
        let mut drifted_read = read_back(&drifted_state);
        drifted_read.insert("postgres_table_grant.documents".into(), None);
        let role = drifted_read
            .get_mut("postgres_role.app")
            .and_then(Option::as_mut)
            .unwrap();
        role.insert("connection_limit".into(), 3.into());
        role.insert("password".into(), "s3cret-changed".into());
        let bucket = drifted_read
            .get_mut("s3_bucket.documents")
            .and_then(Option::as_mut)
            .unwrap();
        bucket.remove("versioning");

        let clean = tenant(&specs, "education-platform");
        let clean_state = applied(&tenant_blueprint(&clean, &specs.platform), false);

        let mut pending = tenant(&specs, "healthcare-systems");
        let pending_state = applied(&tenant_blueprint(&pending, &specs.platform), false);
        pending.cost_center = "CC-HEALTH-900".into();
        let pending_bp = tenant_blueprint(&pending, &specs.platform);
        let pending_plan = Case::new(Some(&pending), Some(&pending_bp), Some(&pending_state))
            .plan()
            .unwrap();

        let report = report(vec![
            tenant_drift(
                &clean.id,
                Some(&clean_state),
                &read_back(&clean_state),
                None,
            ),
            tenant_drift(
                &pending.id,
                Some(&pending_state),
                &read_back(&pending_state),
                Some(&pending_plan),
            ),
            tenant_drift(&drifted.id, Some(&drifted_state), &drifted_read, None),
        ]);
        check(
            &report,
            Human,
            expect![[r#"
                education-platform: clean (17 resources checked)
                healthcare-systems: no drift; spec changes not yet applied (18 resources checked)
                  spec changes not yet applied (not drift):
                    ~ healthcare-systems/s3_bucket.documents (the spec changed) [tags]
                    ~ healthcare-systems/iam_policy.documents_access (the spec changed) [tags]
                    ~ healthcare-systems/iam_role.app (the spec changed) [tags]
                    ~ healthcare-systems/elasticache_cluster.cache (the spec changed) [tags]
                    ~ healthcare-systems/secret.credentials (the spec changed) [tags]
                retail-chain: drifted (17 resources checked)
                  ~ retail-chain/postgres_role.app (tenant_retail_chain): changed outside tenantform
                      connection_limit: 20 -> 3
                  - retail-chain/postgres_table_grant.documents (schema tenant_retail_chain, table documents, role tenant_retail_chain): deleted outside tenantform
                  ~ retail-chain/s3_bucket.documents (rag-retail-chain-documents): changed outside tenantform
                      versioning: "Enabled" -> (not set)

                Drift in 1 of 3 tenants: 1 deleted, 2 changed outside tenantform (52 resources checked).
                Repair it back to the spec with `tenantform apply --tenant retail-chain`, or accept it into state with `tenantform refresh --tenant retail-chain`.
                5 spec changes are not yet applied (not drift): `tenantform plan` shows them.
            "#]],
        );
        check(
            &report,
            Markdown,
            expect![[r####"
                ### tenantform drift: drift found

                Drift in 1 of 3 tenants: 1 deleted, 2 changed outside tenantform (52 resources checked).

                | Tenant | Status | Checked | Deleted | Changed | Pending spec changes |
                |---|---|---:|---:|---:|---:|
                | `education-platform` | clean | 17 | 0 | 0 | 0 |
                | `healthcare-systems` | pending | 18 | 0 | 0 | 5 |
                | `retail-chain` | drifted | 17 | 1 | 2 | 0 |

                **`retail-chain`**

                - `retail-chain/postgres_role.app` (tenant_retail_chain): changed outside tenantform
                  - `connection_limit`: `20` → `3`
                - `retail-chain/postgres_table_grant.documents` (schema tenant_retail_chain, table documents, role tenant_retail_chain): deleted outside tenantform
                - `retail-chain/s3_bucket.documents` (rag-retail-chain-documents): changed outside tenantform
                  - `versioning`: `"Enabled"` → `(not set)`

                Repair it back to the spec with `tenantform apply --tenant retail-chain`, or accept it into state with `tenantform refresh --tenant retail-chain`.
            "####]],
        );
        check(
            &report,
            Json,
            expect![[r#"
                {
                  "created_at": "<timestamp>",
                  "format_version": "1.0",
                  "has_drift": true,
                  "has_pending_changes": true,
                  "summary": {
                    "changed": 2,
                    "deleted": 1,
                    "pending_changes": 5,
                    "resources_checked": 52,
                    "tenants": 3,
                    "tenants_with_drift": 1
                  },
                  "tenantform_version": "<version>",
                  "tenants": [
                    {
                      "drift": [],
                      "pending": [],
                      "resources_checked": 17,
                      "state_serial": 7,
                      "status": "clean",
                      "tenant": "education-platform"
                    },
                    {
                      "drift": [],
                      "pending": [
                        {
                          "actions": [
                            "update"
                          ],
                          "address": "healthcare-systems/s3_bucket.documents",
                          "changed_attributes": [
                            "tags"
                          ],
                          "reason": "the spec changed"
                        },
                        {
                          "actions": [
                            "update"
                          ],
                          "address": "healthcare-systems/iam_policy.documents_access",
                          "changed_attributes": [
                            "tags"
                          ],
                          "reason": "the spec changed"
                        },
                        {
                          "actions": [
                            "update"
                          ],
                          "address": "healthcare-systems/iam_role.app",
                          "changed_attributes": [
                            "tags"
                          ],
                          "reason": "the spec changed"
                        },
                        {
                          "actions": [
                            "update"
                          ],
                          "address": "healthcare-systems/elasticache_cluster.cache",
                          "changed_attributes": [
                            "tags"
                          ],
                          "reason": "the spec changed"
                        },
                        {
                          "actions": [
                            "update"
                          ],
                          "address": "healthcare-systems/secret.credentials",
                          "changed_attributes": [
                            "tags"
                          ],
                          "reason": "the spec changed"
                        }
                      ],
                      "resources_checked": 18,
                      "state_serial": 7,
                      "status": "pending",
                      "tenant": "healthcare-systems"
                    },
                    {
                      "drift": [
                        {
                          "address": "retail-chain/postgres_role.app",
                          "attributes": [
                            {
                              "actual": 3,
                              "name": "connection_limit",
                              "recorded": 20
                            }
                          ],
                          "kind": "changed",
                          "name": "app",
                          "physical_id": "tenant_retail_chain",
                          "type": "postgres_role"
                        },
                        {
                          "address": "retail-chain/postgres_table_grant.documents",
                          "attributes": [],
                          "kind": "deleted",
                          "name": "documents",
                          "physical_id": "schema tenant_retail_chain, table documents, role tenant_retail_chain",
                          "type": "postgres_table_grant"
                        },
                        {
                          "address": "retail-chain/s3_bucket.documents",
                          "attributes": [
                            {
                              "actual": null,
                              "name": "versioning",
                              "recorded": "Enabled"
                            }
                          ],
                          "kind": "changed",
                          "name": "documents",
                          "physical_id": "rag-retail-chain-documents",
                          "type": "s3_bucket"
                        }
                      ],
                      "pending": [],
                      "resources_checked": 17,
                      "state_serial": 7,
                      "status": "drifted",
                      "tenant": "retail-chain"
                    }
                  ]
                }
            "#]],
        );
    }

    #[test]
    fn no_drift() {
        let specs = specs();
        let t = tenant(&specs, "retail-chain");
        let state = applied(&tenant_blueprint(&t, &specs.platform), false);
        let report = report(vec![tenant_drift(
            &t.id,
            Some(&state),
            &read_back(&state),
            None,
        )]);
        check(
            &report,
            Human,
            expect![[r#"
                retail-chain: clean (17 resources checked)

                No drift: 17 resources of 1 tenant match their state.
            "#]],
        );
        check(
            &report,
            Markdown,
            expect![[r#"
                ### tenantform drift: no drift

                No drift: 17 resources of 1 tenant match their state.

                | Tenant | Status | Checked | Deleted | Changed | Pending spec changes |
                |---|---|---:|---:|---:|---:|
                | `retail-chain` | clean | 17 | 0 | 0 | 0 |
            "#]],
        );
        check(
            &report,
            Json,
            expect![[r#"
                {
                  "created_at": "<timestamp>",
                  "format_version": "1.0",
                  "has_drift": false,
                  "has_pending_changes": false,
                  "summary": {
                    "changed": 0,
                    "deleted": 0,
                    "pending_changes": 0,
                    "resources_checked": 17,
                    "tenants": 1,
                    "tenants_with_drift": 0
                  },
                  "tenantform_version": "<version>",
                  "tenants": [
                    {
                      "drift": [],
                      "pending": [],
                      "resources_checked": 17,
                      "state_serial": 7,
                      "status": "clean",
                      "tenant": "retail-chain"
                    }
                  ]
                }
            "#]],
        );
    }
}
