//! Views of state: what `show`, `state list`, `state show`, `state pull`, `state
//! history` and `state migrate` print, as values.
//!
//! A view is built from state (and a tenant's outputs) by the [`crate::Engine`]
//! (`tenants_view`, `resource_list`, `resource_view`) and rendered through
//! [`Report`], so that a library user or a server gets the same JSON as
//! `tenantform show --json`. Sensitive values are redacted when the view is built,
//! unless it is built with `show_secrets`: a view holds no secret it was not asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::outputs::{Output, redact_outputs};
use crate::report::{Report, Style};
use crate::resource::{Attributes, ResourceAddress, TenantId};
use crate::state::{MigrationReport, ResourceState, ResourceStatus, StateVersion, TenantState};

/// `show`: the selected tenants, each with its resources and outputs.
///
/// JSON: `{"tenants": [{"tenant", "serial", "lineage", "protected", "resources",
/// "outputs"}]}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TenantsView {
    /// In tenant order.
    pub tenants: Vec<TenantView>,
}

/// One tenant as its state records it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TenantView {
    pub tenant: TenantId,
    pub serial: u64,
    pub lineage: Uuid,
    pub protected: bool,
    /// Every resource in state, in address order.
    pub resources: Vec<ResourceAddress>,
    /// By name; sensitive values redacted unless the view was built with secrets.
    pub outputs: BTreeMap<String, Value>,
    /// What the tenant was last applied as. Shown to people; not in the JSON view,
    /// whose shape is fixed.
    #[serde(skip)]
    pub applied_as: Option<AppliedAs>,
    /// Resources whose create was started and not confirmed. Not in the JSON view.
    #[serde(skip)]
    pub interrupted: BTreeSet<ResourceAddress>,
}

/// The name, tier and region a tenant was last applied with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedAs {
    pub name: String,
    pub tier: String,
    pub region: String,
}

impl TenantView {
    /// The view of `state`, with `outputs` (see [`crate::Engine::outputs`]).
    pub fn new(
        state: &TenantState,
        outputs: &BTreeMap<String, Output>,
        show_secrets: bool,
    ) -> Self {
        TenantView {
            tenant: state.tenant.clone(),
            serial: state.serial,
            lineage: state.lineage,
            protected: state.protected,
            resources: state.addresses().collect(),
            outputs: redact_outputs(outputs, show_secrets),
            applied_as: state.applied_spec.as_ref().map(|s| AppliedAs {
                name: s.name.clone(),
                tier: s.tier.clone(),
                region: s.region.clone(),
            }),
            interrupted: state
                .resources
                .values()
                .filter(|r| r.status == ResourceStatus::Creating)
                .map(|r| ResourceAddress::new(&state.tenant, r.resource_type, &r.name))
                .collect(),
        }
    }
}

impl Report for TenantsView {
    const NAME: &'static str = "the view of tenants";

    fn human(&self, _style: Style) -> String {
        let mut out = String::new();
        if self.tenants.is_empty() {
            out.push_str("No tenant has any state yet. Run `tenantform apply` first.\n");
        }
        for t in &self.tenants {
            let applied = t
                .applied_as
                .as_ref()
                .map(|a| format!(": {}, {}, {}", a.name, a.tier, a.region))
                .unwrap_or_default();
            let protected = if t.protected { ", protected" } else { "" };
            let _ = writeln!(
                out,
                "Tenant {}{applied} (state serial {}{protected})",
                t.tenant, t.serial
            );
            out.push_str("  Resources:\n");
            for a in &t.resources {
                let status = if t.interrupted.contains(a) {
                    "  (create interrupted)"
                } else {
                    ""
                };
                let _ = writeln!(out, "    {}{status}", a.local());
            }
            out.push_str("  Outputs:\n");
            let width = t.outputs.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k, v) in &t.outputs {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = writeln!(out, "    {k:width$} = {v}");
            }
            out.push('\n');
        }
        out
    }

    fn json(&self) -> Value {
        serde_json::to_value(self).expect("a view serializes")
    }
}

/// `state list`: the address of every resource in the selected tenants' state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceList {
    /// In tenant, then address order.
    pub resources: Vec<ResourceAddress>,
}

impl ResourceList {
    /// The addresses in `states`, in the order given.
    pub fn of<'a>(states: impl IntoIterator<Item = &'a TenantState>) -> Self {
        ResourceList {
            resources: states.into_iter().flat_map(|s| s.addresses()).collect(),
        }
    }
}

impl Report for ResourceList {
    const NAME: &'static str = "the list of resources";

    /// One address a line.
    fn human(&self, _style: Style) -> String {
        self.resources.iter().map(|a| format!("{a}\n")).collect()
    }

    fn json(&self) -> Value {
        serde_json::to_value(self).expect("a view serializes")
    }
}

/// `state show ADDR`: one resource as state records it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceView {
    pub address: ResourceAddress,
    pub status: ResourceStatus,
    /// Sensitive values redacted unless the view was built with secrets.
    pub attributes: Attributes,
    pub depends_on: Vec<ResourceAddress>,
}

impl ResourceView {
    /// The view of `r` at `address`; sensitive values redacted unless `show_secrets`.
    pub fn new(address: &ResourceAddress, r: &ResourceState, show_secrets: bool) -> Self {
        ResourceView {
            address: address.clone(),
            status: r.status,
            attributes: if show_secrets {
                r.attributes.clone()
            } else {
                crate::plan::redact(&r.attributes, r.resource_type)
            },
            depends_on: r.depends_on.clone(),
        }
    }
}

impl Report for ResourceView {
    const NAME: &'static str = "the view of a resource";

    fn human(&self, _style: Style) -> String {
        let mut out = format!("# {} ({:?})\n", self.address, self.status);
        let width = self.attributes.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, v) in &self.attributes {
            let _ = writeln!(out, "{k:width$} = {v}");
        }
        if !self.depends_on.is_empty() {
            let deps: Vec<String> = self.depends_on.iter().map(|d| d.to_string()).collect();
            let _ = writeln!(out, "{:width$} = {}", "depends_on", deps.join(", "));
        }
        out
    }

    fn json(&self) -> Value {
        serde_json::to_value(self).expect("a view serializes")
    }
}

/// `state pull`: a tenant's whole state document, as stored; sensitive attributes
/// redacted unless the view was built with secrets. Its text form is its JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct StateDocument {
    pub state: TenantState,
}

impl StateDocument {
    /// The view of `state`; sensitive values redacted unless `show_secrets`.
    pub fn new(mut state: TenantState, show_secrets: bool) -> Self {
        if !show_secrets {
            for r in state.resources.values_mut() {
                r.attributes = crate::plan::redact(&r.attributes, r.resource_type);
            }
        }
        StateDocument { state }
    }
}

impl Report for StateDocument {
    const NAME: &'static str = "a state document";

    fn human(&self, _style: Style) -> String {
        let mut text = serde_json::to_string_pretty(&self.state).expect("a state serializes");
        text.push('\n');
        text
    }

    fn json(&self) -> Value {
        serde_json::to_value(&self.state).expect("a state serializes")
    }
}

/// `state history`: the versions of a tenant's state that are kept, newest first.
///
/// JSON: `{"tenant", "versions": [{"serial", "lineage", "written_at", "written_by",
/// "current"}]}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateHistory {
    pub tenant: TenantId,
    pub versions: Vec<StateVersion>,
}

impl Report for StateHistory {
    const NAME: &'static str = "a state history";

    fn human(&self, _style: Style) -> String {
        if self.versions.is_empty() {
            return format!("Tenant {} has no state versions.\n", self.tenant);
        }
        let mut out = format!(
            "{:>7}  {:36}  {:20}  written by\n",
            "serial", "lineage", "written at"
        );
        for v in &self.versions {
            let by = v.written_by.as_ref().map_or_else(
                || "(not recorded in local state)".to_owned(),
                |w| w.to_string(),
            );
            let _ = writeln!(
                out,
                "{:>7}  {:36}  {:20}  {by}{}",
                v.serial,
                v.lineage.to_string(),
                v.written_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                if v.current { "  (current)" } else { "" }
            );
        }
        out
    }

    fn json(&self) -> Value {
        serde_json::to_value(self).expect("a view serializes")
    }
}

impl Report for MigrationReport {
    const NAME: &'static str = "a migration report";

    fn human(&self, _style: Style) -> String {
        let n = self.tenants.len();
        let mut out = format!(
            "Moved the state of {n} tenant{} from {} to {}:\n",
            if n == 1 { "" } else { "s" },
            self.from,
            self.to
        );
        for t in &self.tenants {
            let _ = write!(
                out,
                "  {}: serial {}, lineage {}, {} version{}",
                t.tenant,
                t.serial,
                t.lineage,
                t.versions,
                if t.versions == 1 { "" } else { "s" }
            );
            if t.versions_left > 0 {
                let _ = write!(
                    out,
                    " ({} older version{} stay in the source: local state keeps one backup)",
                    t.versions_left,
                    if t.versions_left == 1 { "" } else { "s" }
                );
            }
            out.push('\n');
        }
        out
    }

    fn json(&self) -> Value {
        serde_json::to_value(self).expect("a report serializes")
    }
}

/// Whole renderings of the views as snapshots, one [`check`] for all; states are
/// fabricated from the example specs.
#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;
    use crate::blueprint::tenant_blueprint;
    use crate::outputs::tenant_outputs;
    use crate::plan::tests::{applied, specs, tenant};
    use crate::report::OutputFormat::{self, Human, Json};
    use crate::report::snapshot::rendered;

    fn check(view: &impl Report, format: OutputFormat, expect: Expect) {
        expect.assert_eq(&rendered(view, format));
    }

    /// The retail chain as applied, protected, with its dashboard's create interrupted.
    fn state() -> TenantState {
        let specs = specs();
        let t = tenant(&specs, "retail-chain");
        let mut state = applied(&tenant_blueprint(&t, &specs.platform), true);
        state.applied_spec = Some((&t).into());
        state
            .resources
            .get_mut("grafana_dashboard.main")
            .unwrap()
            .status = ResourceStatus::Creating;
        state
    }

    fn tenants_view(states: &[TenantState], show_secrets: bool) -> TenantsView {
        TenantsView {
            tenants: states
                .iter()
                .map(|s| TenantView::new(s, &tenant_outputs(s, None, None), show_secrets))
                .collect(),
        }
    }

    #[test]
    fn tenants() {
        let view = tenants_view(&[state()], false);
        check(
            &view,
            Human,
            expect![[r#"
                Tenant retail-chain: Retail Chain, silver, eu-west-1 (state serial 7, protected)
                  Resources:
                    grafana_dashboard.main  (create interrupted)
                    iam_policy.documents_access
                    iam_role.app
                    iam_role_policy_attachment.documents_access
                    postgres_role.app
                    postgres_row_security.documents
                    postgres_schema.main
                    postgres_schema_grant.app
                    postgres_table.documents
                    postgres_table_grant.documents
                    postgres_table_grant.embeddings
                    redis_acl_user.app
                    s3_bucket.documents
                    s3_bucket_policy.documents
                    secret.credentials
                    tenant_settings.main
                    vector_namespace.embeddings
                  Outputs:
                    credentials_secret_arn  = null
                    credentials_secret_name = rag-retail-chain-credentials
                    iam_role_arn            = null
                    llm_model               = gpt-4o-mini
                    postgres_role           = tenant_retail_chain
                    postgres_schema         = tenant_retail_chain
                    queries_per_minute      = 500
                    redis_key_patterns      = ["tenant:retail-chain:*"]
                    redis_user              = tenant_retail_chain
                    s3_bucket               = rag-retail-chain-documents
                    s3_region               = eu-west-1
                    sla_latency_ms          = 1000
                    tier                    = silver
                    vector_backend          = pgvector
                    vector_dimension        = 1536
                    vector_distance         = cosine
                    vector_table            = tenant_retail_chain.embeddings

            "#]],
        );
        check(
            &view,
            Json,
            expect![[r#"
                {
                  "tenants": [
                    {
                      "lineage": "<uuid>",
                      "outputs": {
                        "credentials_secret_arn": null,
                        "credentials_secret_name": "rag-retail-chain-credentials",
                        "iam_role_arn": null,
                        "llm_model": "gpt-4o-mini",
                        "postgres_role": "tenant_retail_chain",
                        "postgres_schema": "tenant_retail_chain",
                        "queries_per_minute": 500,
                        "redis_key_patterns": [
                          "tenant:retail-chain:*"
                        ],
                        "redis_user": "tenant_retail_chain",
                        "s3_bucket": "rag-retail-chain-documents",
                        "s3_region": "eu-west-1",
                        "sla_latency_ms": 1000,
                        "tier": "silver",
                        "vector_backend": "pgvector",
                        "vector_dimension": 1536,
                        "vector_distance": "cosine",
                        "vector_table": "tenant_retail_chain.embeddings"
                      },
                      "protected": true,
                      "resources": [
                        "retail-chain/grafana_dashboard.main",
                        "retail-chain/iam_policy.documents_access",
                        "retail-chain/iam_role.app",
                        "retail-chain/iam_role_policy_attachment.documents_access",
                        "retail-chain/postgres_role.app",
                        "retail-chain/postgres_row_security.documents",
                        "retail-chain/postgres_schema.main",
                        "retail-chain/postgres_schema_grant.app",
                        "retail-chain/postgres_table.documents",
                        "retail-chain/postgres_table_grant.documents",
                        "retail-chain/postgres_table_grant.embeddings",
                        "retail-chain/redis_acl_user.app",
                        "retail-chain/s3_bucket.documents",
                        "retail-chain/s3_bucket_policy.documents",
                        "retail-chain/secret.credentials",
                        "retail-chain/tenant_settings.main",
                        "retail-chain/vector_namespace.embeddings"
                      ],
                      "serial": 7,
                      "tenant": "retail-chain"
                    }
                  ]
                }
            "#]],
        );
        check(
            &tenants_view(&[], false),
            Human,
            expect![[r#"
            No tenant has any state yet. Run `tenantform apply` first.
        "#]],
        );
        check(
            &tenants_view(&[], false),
            Json,
            expect![[r#"
            {
              "tenants": []
            }
        "#]],
        );
        assert!(
            view.render(OutputFormat::Markdown, Style { color: false })
                .is_none()
        );
    }

    #[test]
    fn secrets_are_shown_only_when_asked_for() {
        // The passwords are no outputs: state does not hold them.
        let shown = tenants_view(&[state()], true);
        let outputs = &shown.tenants[0].outputs;
        assert!(
            outputs.keys().all(|k| !k.contains("password")),
            "{outputs:?}"
        );
        // A state written before the credentials secret still holds one: shown only
        // when asked for.
        let address: ResourceAddress = "retail-chain/postgres_role.app".parse().unwrap();
        let mut role = state().resources["postgres_role.app"].clone();
        role.attributes
            .insert("password".into(), serde_json::json!("s3cret-pw"));
        let view = ResourceView::new(&address, &role, true);
        assert_eq!(view.attributes["password"], "s3cret-pw");
        let view = ResourceView::new(&address, &role, false);
        assert_eq!(view.attributes["password"], crate::secret::REDACTED);
    }

    #[test]
    fn one_resource() {
        let state = state();
        let address: ResourceAddress = "retail-chain/postgres_role.app".parse().unwrap();
        let view = ResourceView::new(&address, &state.resources["postgres_role.app"], false);
        check(
            &view,
            Human,
            expect![[r##"
                # retail-chain/postgres_role.app (Created)
                bypass_rls       = false
                connection_limit = 20
                create_db        = false
                create_role      = false
                inherit          = false
                login            = true
                name             = "tenant_retail_chain"
                password_version = "v1"
                superuser        = false
            "##]],
        );
        check(
            &view,
            Json,
            expect![[r#"
                {
                  "address": "retail-chain/postgres_role.app",
                  "attributes": {
                    "bypass_rls": false,
                    "connection_limit": 20,
                    "create_db": false,
                    "create_role": false,
                    "inherit": false,
                    "login": true,
                    "name": "tenant_retail_chain",
                    "password_version": "v1",
                    "superuser": false
                  },
                  "depends_on": [],
                  "status": "created"
                }
            "#]],
        );
    }

    #[test]
    fn one_resource_with_dependencies() {
        let state = state();
        let address: ResourceAddress = "retail-chain/postgres_schema_grant.app".parse().unwrap();
        let grant = &state.resources["postgres_schema_grant.app"];
        check(
            &ResourceView::new(&address, grant, false),
            Human,
            expect![[r##"
                # retail-chain/postgres_schema_grant.app (Created)
                privileges = ["USAGE"]
                role       = "tenant_retail_chain"
                schema     = "tenant_retail_chain"
                depends_on = retail-chain/postgres_schema.main, retail-chain/postgres_role.app
            "##]],
        );
    }

    #[test]
    fn resource_list() {
        let state = state();
        let list = ResourceList::of([&state]);
        check(
            &list,
            Human,
            expect![[r#"
                retail-chain/grafana_dashboard.main
                retail-chain/iam_policy.documents_access
                retail-chain/iam_role.app
                retail-chain/iam_role_policy_attachment.documents_access
                retail-chain/postgres_role.app
                retail-chain/postgres_row_security.documents
                retail-chain/postgres_schema.main
                retail-chain/postgres_schema_grant.app
                retail-chain/postgres_table.documents
                retail-chain/postgres_table_grant.documents
                retail-chain/postgres_table_grant.embeddings
                retail-chain/redis_acl_user.app
                retail-chain/s3_bucket.documents
                retail-chain/s3_bucket_policy.documents
                retail-chain/secret.credentials
                retail-chain/tenant_settings.main
                retail-chain/vector_namespace.embeddings
            "#]],
        );
    }
}
