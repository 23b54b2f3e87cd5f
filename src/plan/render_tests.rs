//! Whole renderings of plans (human, JSON, Markdown) as snapshots, one [`check`] for
//! all. Plans are made in-process from the example specs and fabricated states; what
//! differs from run to run is replaced (see [`crate::report::snapshot::stable`]).
//! `UPDATE_EXPECT=1 cargo test` rewrites the snapshots after an intended change.

use expect_test::{expect, expect_file};

use super::cost::CostEstimate;
use super::tests::{Case, applied, specs, tenant};
use super::*;
use crate::blueprint::tenant_blueprint;
use crate::report::OutputFormat::{Human, Json, Markdown};
use crate::report::snapshot::{Snapshot, rendered};
use crate::report::{OutputFormat, Report};
use crate::spec::Specs;

/// The plan of `cases` (one a tenant), with cost estimates as the engine makes them.
fn plan_of(specs: &Specs, mode: PlanMode, refreshed: bool, cases: &[Case<'_>]) -> Plan {
    let tenants = cases
        .iter()
        .map(|case| {
            let mut p = case.plan().expect("the case plans");
            if mode == PlanMode::Normal
                && let Some(spec) = case.spec
            {
                let before = case.state.and_then(|s| s.applied_spec.as_ref());
                p.cost = CostEstimate::of(spec, &specs.platform, before);
            }
            p
        })
        .collect();
    Plan {
        format_version: PLAN_FORMAT_VERSION.into(),
        created_at: chrono::Utc::now(),
        mode,
        refreshed,
        policy: None,
        aws_account_id: None,
        tenants,
    }
}

/// The retail chain's spec and blueprint, and its state as applied.
fn retail_chain(specs: &Specs) -> (TenantSpec, TenantBlueprint, TenantState) {
    let t = tenant(specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    (t, bp, state)
}

fn check(plan: &Plan, format: OutputFormat, expect: impl Snapshot) {
    assert!(
        plan.render(format, crate::report::Style { color: false })
            .is_some()
    );
    expect.assert_eq(&rendered(plan, format));
}

#[test]
fn a_new_tenant() {
    let specs = specs();
    let t = tenant(&specs, "education-platform");
    let bp = tenant_blueprint(&t, &specs.platform);
    let plan = plan_of(
        &specs,
        PlanMode::Normal,
        true,
        &[Case::new(Some(&t), Some(&bp), None)],
    );
    check(&plan, Human, expect_file!["snapshots/new_tenant.txt"]);
    check(&plan, Json, expect_file!["snapshots/new_tenant.json"]);
    // Its Markdown is part of `tenants_added_unchanged_and_removed`.
}

#[test]
fn a_tier_change() {
    let specs = specs();
    let mut t = tenant(&specs, "retail-chain");
    let mut state = applied(&tenant_blueprint(&t, &specs.platform), false);
    state.applied_spec = Some((&t.clone()).into());
    t.tier = "gold".into();
    let bp = tenant_blueprint(&t, &specs.platform);
    let plan = plan_of(
        &specs,
        PlanMode::Normal,
        true,
        &[Case::new(Some(&t), Some(&bp), Some(&state))],
    );
    check(&plan, Human, expect_file!["snapshots/tier_change.txt"]);
    check(&plan, Json, expect_file!["snapshots/tier_change.json"]);
    check(
        &plan,
        Markdown,
        expect![[r#"
            ### tenantform plan: 1 to add, 7 to change, 0 to destroy

            | Tenant | Tier | Region | Add | Change | Destroy | Monthly cost | Note |
            |---|---|---|---:|---:|---:|---:|---|
            | `retail-chain` | gold | eu-west-1 | 1 | 7 | 0 | ₹56,400 → ₹1,77,600 |  |

            Estimated monthly cost of these tenants: **₹1,77,600** (tier prices × region multipliers).

            <details><summary><code>retail-chain</code>: 1 to add, 7 to change, 0 to destroy</summary>

            ```diff
            ! postgres_role.app [connection_limit]   # the spec changed
            ! s3_bucket.documents [lifecycle_rules, tags]   # the spec changed
            ! iam_policy.documents_access [tags]   # the spec changed
            ! iam_role.app [tags]   # the spec changed
            + elasticache_cluster.cache   # new in the spec
            ! tenant_settings.main [tier, sla_latency_ms, features, queries_per_minute, documents_per_month, llm_model, llm_max_tokens, demo_documents, vector_replicas, dedicated_cache]   # the spec changed
            ! grafana_dashboard.main [tags, sla_latency_ms]   # the spec changed
            ! secret.credentials [tags]   # the spec changed
            ```

            </details>
        "#]],
    );
}

#[test]
fn a_replacement_with_its_dependents() {
    let specs = specs();
    let (t, bp, state) = retail_chain(&specs);
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    case.replace
        .insert("retail-chain/postgres_role.app".parse().unwrap());
    let plan = plan_of(&specs, PlanMode::Normal, true, &[case]);
    check(
        &plan,
        Human,
        expect![[r#"
            tenantform will perform the following actions:

            Tenant retail-chain (Retail Chain, silver, eu-west-1)
              Estimated cost: ₹56,400/month (silver in eu-west-1 at 1.2x; budget ₹6,00,000)

              # retail-chain/postgres_role.app must be replaced (replacement requested with --replace)
            -/+ postgres_role.app
                  (replaced because a role's name is its identity)

              # retail-chain/postgres_schema_grant.app must be replaced (retail-chain/postgres_role.app is replaced)
            -/+ postgres_schema_grant.app
                  (replaced because a grant belongs to one schema and one role)

              # retail-chain/postgres_row_security.documents must be replaced (retail-chain/postgres_role.app is replaced)
            -/+ postgres_row_security.documents
                  (replaced because a policy's table, name and command cannot change in place)

              # retail-chain/postgres_table_grant.documents must be replaced (retail-chain/postgres_row_security.documents is replaced)
            -/+ postgres_table_grant.documents
                  (replaced because a grant belongs to one table and one role)

              # retail-chain/postgres_table_grant.embeddings must be replaced (retail-chain/postgres_schema_grant.app is replaced)
            -/+ postgres_table_grant.embeddings
                  (replaced because a grant belongs to one table and one role)

              # retail-chain/redis_acl_user.app will be updated in place (the credentials secret is written anew: every password in it is set anew)
              ~ redis_acl_user.app
                  ~ password = (sensitive value) -> (known after apply)

              # retail-chain/secret.credentials must be replaced (retail-chain/postgres_role.app is replaced)
            -/+ secret.credentials
                  (replaced because a secret's name and region are its identity)

            Plan: 6 to add, 1 to change, 6 to destroy.
            Estimated monthly cost of the tenants in this plan: ₹56,400.
        "#]],
    );
    check(&plan, Json, expect_file!["snapshots/replace.json"]);
    check(
        &plan,
        Markdown,
        expect![[r#"
            ### tenantform plan: 6 to add, 1 to change, 6 to destroy

            | Tenant | Tier | Region | Add | Change | Destroy | Monthly cost | Note |
            |---|---|---|---:|---:|---:|---:|---|
            | `retail-chain` | silver | eu-west-1 | 6 | 1 | 6 | ₹56,400 |  |

            Estimated monthly cost of these tenants: **₹56,400** (tier prices × region multipliers).

            <details><summary><code>retail-chain</code>: 6 to add, 1 to change, 6 to destroy</summary>

            ```diff
            -/+ postgres_role.app   # replacement requested with --replace
            -/+ postgres_schema_grant.app   # retail-chain/postgres_role.app is replaced
            -/+ postgres_row_security.documents   # retail-chain/postgres_role.app is replaced
            -/+ postgres_table_grant.documents   # retail-chain/postgres_row_security.documents is replaced
            -/+ postgres_table_grant.embeddings   # retail-chain/postgres_schema_grant.app is replaced
            ! redis_acl_user.app [password]   # the credentials secret is written anew: every password in it is set anew
            -/+ secret.credentials   # retail-chain/postgres_role.app is replaced
            ```

            </details>
        "#]],
    );
}

#[test]
fn drift_found_by_refresh() {
    let specs = specs();
    let (t, bp, state) = retail_chain(&specs);
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    case.refreshed
        .insert("postgres_schema_grant.app".into(), None);
    let mut role = state.resources["postgres_role.app"].attributes.clone();
    role.insert("connection_limit".into(), 3.into());
    case.refreshed
        .insert("postgres_role.app".into(), Some(role));
    let plan = plan_of(&specs, PlanMode::Normal, true, &[case]);
    check(
        &plan,
        Human,
        expect![[r#"
        tenantform will perform the following actions:

        Tenant retail-chain (Retail Chain, silver, eu-west-1)
          Estimated cost: ₹56,400/month (silver in eu-west-1 at 1.2x; budget ₹6,00,000)

          # retail-chain/postgres_role.app will be updated in place (changed outside tenantform)
          ~ postgres_role.app
              ~ connection_limit = 3 -> 20

          # retail-chain/postgres_schema_grant.app will be created (deleted outside tenantform)
          + postgres_schema_grant.app
              + privileges = ["USAGE"]
              + role       = "tenant_retail_chain"
              + schema     = "tenant_retail_chain"

        Plan: 1 to add, 1 to change, 0 to destroy.
        Estimated monthly cost of the tenants in this plan: ₹56,400.
    "#]],
    );
    check(
        &plan,
        Markdown,
        expect![[r#"
        ### tenantform plan: 1 to add, 1 to change, 0 to destroy

        | Tenant | Tier | Region | Add | Change | Destroy | Monthly cost | Note |
        |---|---|---|---:|---:|---:|---:|---|
        | `retail-chain` | silver | eu-west-1 | 1 | 1 | 0 | ₹56,400 |  |

        Estimated monthly cost of these tenants: **₹56,400** (tier prices × region multipliers).

        <details><summary><code>retail-chain</code>: 1 to add, 1 to change, 0 to destroy</summary>

        ```diff
        ! postgres_role.app [connection_limit]   # changed outside tenantform
        + postgres_schema_grant.app   # deleted outside tenantform
        ```

        </details>
    "#]],
    );
}

/// Several tenants: one new and over its budget, one unchanged, one whose spec file
/// was removed.
#[test]
fn tenants_added_unchanged_and_removed() {
    let specs = specs();
    let mut new = tenant(&specs, "education-platform");
    new.budget_inr = 10_000;
    let new_bp = tenant_blueprint(&new, &specs.platform);
    let same = tenant(&specs, "retail-chain");
    let same_bp = tenant_blueprint(&same, &specs.platform);
    let same_state = applied(&same_bp, false);
    let gone = tenant(&specs, "healthcare-systems");
    let gone_state = applied(&tenant_blueprint(&gone, &specs.platform), false);
    let plan = plan_of(
        &specs,
        PlanMode::Normal,
        true,
        &[
            Case::new(Some(&new), Some(&new_bp), None),
            Case::new(None, None, Some(&gone_state)),
            Case::new(Some(&same), Some(&same_bp), Some(&same_state)),
        ],
    );
    check(
        &plan,
        Markdown,
        expect![[r#"
            ### tenantform plan: 17 to add, 0 to change, 18 to destroy

            | Tenant | Tier | Region | Add | Change | Destroy | Monthly cost | Note |
            |---|---|---|---:|---:|---:|---:|---|
            | `education-platform` | bronze | ap-south-1 | 17 | 0 | 0 | ₹15,300 | new tenant, over budget |
            | `healthcare-systems` | - | - | 0 | 0 | 18 | - | spec removed |
            | `retail-chain` | silver | eu-west-1 | 0 | 0 | 0 | ₹56,400 |  |

            Estimated monthly cost of these tenants: **₹71,700** (tier prices × region multipliers).

            > **Warning:** tenant education-platform: the estimated cost of ₹15,300/month exceeds its budget of ₹10,000 by ₹5,300; raise budget_inr in specs/tenants/education-platform.toml or choose a smaller tier

            <details><summary><code>education-platform</code>: 17 to add, 0 to change, 0 to destroy</summary>

            ```diff
            + postgres_schema.main   # new in the spec
            + postgres_role.app   # new in the spec
            + postgres_schema_grant.app   # new in the spec
            + postgres_table.documents   # new in the spec
            + postgres_row_security.documents   # new in the spec
            + postgres_table_grant.documents   # new in the spec
            + postgres_table_grant.embeddings   # new in the spec
            + s3_bucket.documents   # new in the spec
            + s3_bucket_policy.documents   # new in the spec
            + iam_policy.documents_access   # new in the spec
            + iam_role.app   # new in the spec
            + iam_role_policy_attachment.documents_access   # new in the spec
            + tenant_settings.main   # new in the spec
            + redis_acl_user.app   # new in the spec
            + vector_namespace.embeddings   # new in the spec
            + grafana_dashboard.main   # new in the spec
            + secret.credentials   # new in the spec
            ```

            </details>

            <details><summary><code>healthcare-systems</code>: 0 to add, 0 to change, 18 to destroy</summary>

            ```diff
            - postgres_schema.main   # no longer in the spec
            - postgres_role.app   # no longer in the spec
            - postgres_schema_grant.app   # no longer in the spec
            - postgres_table.documents   # no longer in the spec
            - postgres_row_security.documents   # no longer in the spec
            - postgres_table_grant.documents   # no longer in the spec
            - postgres_table_grant.embeddings   # no longer in the spec
            - s3_bucket.documents   # no longer in the spec
            - s3_bucket_policy.documents   # no longer in the spec
            - iam_policy.documents_access   # no longer in the spec
            - iam_role.app   # no longer in the spec
            - iam_role_policy_attachment.documents_access   # no longer in the spec
            - elasticache_cluster.cache   # no longer in the spec
            - tenant_settings.main   # no longer in the spec
            - redis_acl_user.app   # no longer in the spec
            - vector_namespace.embeddings   # no longer in the spec
            - grafana_dashboard.main   # no longer in the spec
            - secret.credentials   # no longer in the spec
            ```

            </details>
        "#]],
    );
    check(&plan, Human, expect_file!["snapshots/three_tenants.txt"]);
    // The tenants' part of the JSON view: costs, the budget warning, a removed spec.
    // (Whole JSON views are in the other snapshots.)
    let json = plan.json();
    let mut tenants_part = serde_json::json!({
        "summary": json["summary"], "tenants": json["tenants"], "cost": json["cost"],
        "warnings": json["warnings"],
    });
    crate::report::snapshot::stable(&mut tenants_part);
    expect![[r#"
        {
          "cost": {
            "currency": "INR",
            "monthly_inr": 71700.0
          },
          "summary": {
            "add": 17,
            "change": 0,
            "destroy": 18
          },
          "tenants": [
            {
              "cost": {
                "before_monthly_inr": null,
                "budget_inr": 10000,
                "components": {
                  "cache": 1800.0,
                  "monitoring": 1350.0,
                  "postgres": 7200.0,
                  "storage": 1350.0,
                  "vector": 3600.0
                },
                "currency": "INR",
                "monthly_inr": 15300.0,
                "over_budget": true,
                "region": "ap-south-1",
                "region_multiplier": 0.9,
                "tier": "bronze"
              },
              "has_changes": true,
              "module_address": "module.tenant[\"education-platform\"]",
              "new_tenant": true,
              "protected": false,
              "protected_before": false,
              "spec": {
                "budget_inr": 10000,
                "cost_center": "CC-EDU-007",
                "data_classification": "india-resident",
                "id": "education-platform",
                "name": "Education Platform",
                "owner_email": "ops@education-platform.example",
                "protected": false,
                "region": "ap-south-1",
                "tier": "bronze",
                "version": 1
              },
              "spec_removed": false,
              "state_lineage": null,
              "state_serial": null,
              "summary": {
                "add": 17,
                "change": 0,
                "destroy": 0
              },
              "tenant": "education-platform"
            },
            {
              "cost": null,
              "has_changes": true,
              "module_address": "module.tenant[\"healthcare-systems\"]",
              "new_tenant": false,
              "protected": false,
              "protected_before": false,
              "spec": null,
              "spec_removed": true,
              "state_lineage": "<uuid>",
              "state_serial": 7,
              "summary": {
                "add": 0,
                "change": 0,
                "destroy": 18
              },
              "tenant": "healthcare-systems"
            },
            {
              "cost": {
                "before_monthly_inr": null,
                "budget_inr": 600000,
                "components": {
                  "cache": 9600.0,
                  "monitoring": 3600.0,
                  "postgres": 24000.0,
                  "storage": 4800.0,
                  "vector": 14400.0
                },
                "currency": "INR",
                "monthly_inr": 56400.0,
                "over_budget": false,
                "region": "eu-west-1",
                "region_multiplier": 1.2,
                "tier": "silver"
              },
              "has_changes": false,
              "module_address": "module.tenant[\"retail-chain\"]",
              "new_tenant": false,
              "protected": false,
              "protected_before": false,
              "spec": {
                "budget_inr": 600000,
                "cost_center": "CC-RETAIL-042",
                "data_classification": "eu-personal",
                "id": "retail-chain",
                "name": "Retail Chain",
                "owner_email": "cloud-team@retail-chain.example",
                "protected": false,
                "region": "eu-west-1",
                "tier": "silver",
                "version": 1
              },
              "spec_removed": false,
              "state_lineage": "<uuid>",
              "state_serial": 7,
              "summary": {
                "add": 0,
                "change": 0,
                "destroy": 0
              },
              "tenant": "retail-chain"
            }
          ],
          "warnings": [
            "tenant education-platform: the estimated cost of ₹15,300/month exceeds its budget of ₹10,000 by ₹5,300; raise budget_inr in specs/tenants/education-platform.toml or choose a smaller tier"
          ]
        }"#]].assert_eq(&serde_json::to_string_pretty(&tenants_part).unwrap());
}

#[test]
fn no_changes() {
    let specs = specs();
    let (t, bp, state) = retail_chain(&specs);
    let unrefreshed = plan_of(
        &specs,
        PlanMode::Normal,
        false,
        &[Case::new(Some(&t), Some(&bp), Some(&state))],
    );
    check(
        &unrefreshed,
        Human,
        expect![[r#"
        No changes. Every selected tenant matches its spec.
        (Resources were not read back: --refresh=false.)
    "#]],
    );
    check(
        &unrefreshed,
        Markdown,
        expect![[r#"
        ### tenantform plan: no changes

        Every selected tenant matches its spec.
    "#]],
    );

    let mut case = Case::new(Some(&t), Some(&bp), None);
    case.mode = PlanMode::Destroy;
    let nothing_to_destroy = plan_of(&specs, PlanMode::Destroy, false, &[case]);
    check(
        &nothing_to_destroy,
        Human,
        expect![[r#"
        No changes. There is nothing to destroy.
        (Resources were not read back: --refresh=false.)
    "#]],
    );
    check(
        &nothing_to_destroy,
        Json,
        expect![[r#"
            {
              "configuration": {
                "root_module": {
                  "module_calls": {
                    "tenant": {
                      "module": {
                        "module_calls": {
                          "aws": {
                            "module": {
                              "resources": []
                            },
                            "source": "tenantform/blueprint"
                          }
                        },
                        "resources": []
                      },
                      "source": "tenantform/blueprint"
                    }
                  }
                }
              },
              "cost": {
                "currency": "INR",
                "monthly_inr": -0.0
              },
              "created_at": "<timestamp>",
              "format_version": "1.0",
              "has_changes": false,
              "mode": "destroy",
              "planned_values": {
                "root_module": {
                  "child_modules": [],
                  "resources": []
                }
              },
              "refreshed": false,
              "resource_changes": [],
              "summary": {
                "add": 0,
                "change": 0,
                "destroy": 0
              },
              "tenantform_version": "<version>",
              "tenants": [
                {
                  "cost": null,
                  "has_changes": false,
                  "module_address": "module.tenant[\"retail-chain\"]",
                  "new_tenant": true,
                  "protected": false,
                  "protected_before": false,
                  "spec": {
                    "budget_inr": 600000,
                    "cost_center": "CC-RETAIL-042",
                    "data_classification": "eu-personal",
                    "id": "retail-chain",
                    "name": "Retail Chain",
                    "owner_email": "cloud-team@retail-chain.example",
                    "protected": false,
                    "region": "eu-west-1",
                    "tier": "silver",
                    "version": 1
                  },
                  "spec_removed": false,
                  "state_lineage": null,
                  "state_serial": null,
                  "summary": {
                    "add": 0,
                    "change": 0,
                    "destroy": 0
                  },
                  "tenant": "retail-chain"
                }
              ],
              "terraform_version": "1.2.9",
              "warnings": []
            }
        "#]],
    );
}

#[test]
fn a_destroy() {
    let specs = specs();
    let (t, bp, state) = retail_chain(&specs);
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    case.mode = PlanMode::Destroy;
    let plan = plan_of(&specs, PlanMode::Destroy, false, &[case]);
    check(
        &plan,
        Human,
        expect![[r#"
            tenantform will perform the following actions:

            Tenant retail-chain (Retail Chain, silver, eu-west-1)

              # retail-chain/postgres_schema.main will be destroyed (destroy requested)
              - postgres_schema.main

              # retail-chain/postgres_role.app will be destroyed (destroy requested)
              - postgres_role.app

              # retail-chain/postgres_schema_grant.app will be destroyed (destroy requested)
              - postgres_schema_grant.app

              # retail-chain/postgres_table.documents will be destroyed (destroy requested)
              - postgres_table.documents

              # retail-chain/postgres_row_security.documents will be destroyed (destroy requested)
              - postgres_row_security.documents

              # retail-chain/postgres_table_grant.documents will be destroyed (destroy requested)
              - postgres_table_grant.documents

              # retail-chain/postgres_table_grant.embeddings will be destroyed (destroy requested)
              - postgres_table_grant.embeddings

              # retail-chain/s3_bucket.documents will be destroyed (destroy requested)
              - s3_bucket.documents

              # retail-chain/s3_bucket_policy.documents will be destroyed (destroy requested)
              - s3_bucket_policy.documents

              # retail-chain/iam_policy.documents_access will be destroyed (destroy requested)
              - iam_policy.documents_access

              # retail-chain/iam_role.app will be destroyed (destroy requested)
              - iam_role.app

              # retail-chain/iam_role_policy_attachment.documents_access will be destroyed (destroy requested)
              - iam_role_policy_attachment.documents_access

              # retail-chain/tenant_settings.main will be destroyed (destroy requested)
              - tenant_settings.main

              # retail-chain/redis_acl_user.app will be destroyed (destroy requested)
              - redis_acl_user.app

              # retail-chain/vector_namespace.embeddings will be destroyed (destroy requested)
              - vector_namespace.embeddings

              # retail-chain/grafana_dashboard.main will be destroyed (destroy requested)
              - grafana_dashboard.main

              # retail-chain/secret.credentials will be destroyed (destroy requested)
              - secret.credentials

            Plan: 0 to add, 0 to change, 17 to destroy.
        "#]],
    );
    check(
        &plan,
        Markdown,
        expect![[r#"
            ### tenantform plan: 0 to add, 0 to change, 17 to destroy

            | Tenant | Tier | Region | Add | Change | Destroy | Monthly cost | Note |
            |---|---|---|---:|---:|---:|---:|---|
            | `retail-chain` | silver | eu-west-1 | 0 | 0 | 17 | - |  |

            <details><summary><code>retail-chain</code>: 0 to add, 0 to change, 17 to destroy</summary>

            ```diff
            - postgres_schema.main   # destroy requested
            - postgres_role.app   # destroy requested
            - postgres_schema_grant.app   # destroy requested
            - postgres_table.documents   # destroy requested
            - postgres_row_security.documents   # destroy requested
            - postgres_table_grant.documents   # destroy requested
            - postgres_table_grant.embeddings   # destroy requested
            - s3_bucket.documents   # destroy requested
            - s3_bucket_policy.documents   # destroy requested
            - iam_policy.documents_access   # destroy requested
            - iam_role.app   # destroy requested
            - iam_role_policy_attachment.documents_access   # destroy requested
            - tenant_settings.main   # destroy requested
            - redis_acl_user.app   # destroy requested
            - vector_namespace.embeddings   # destroy requested
            - grafana_dashboard.main   # destroy requested
            - secret.credentials   # destroy requested
            ```

            </details>
        "#]],
    );
}
