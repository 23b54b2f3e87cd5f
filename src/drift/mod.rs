//! Drift: what changed behind the engine's back.
//!
//! A drift run reads every managed resource back from its endpoint (the same parallel
//! refresh that `plan` does) and compares three things per tenant:
//!
//! - **state vs reality** — the drift proper: a resource deleted out of band, or an
//!   attribute that differs from what the engine recorded (before → after);
//! - **spec vs state** — changes made to the specs and not yet applied. They are not
//!   drift and are reported apart, so that an on-call person can tell "someone changed
//!   the cloud" from "someone merged a spec change".
//!
//! Guarantees: a drift run changes nothing and takes no lock (state files are replaced
//! atomically, so reading them while an apply runs sees a whole file). The report is
//! sorted by tenant and address, so it is the same whichever order the reads finish in.
//! `refresh` (accept reality into state) and `import` (adopt an existing resource)
//! write state and are in [`crate::Engine`], under the tenant's lock.

pub mod render;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::{Action, TenantPlan};
use crate::resource::{Attributes, ResourceAddress, ResourceType, TenantId, schema};
use crate::secret::REDACTED;
use crate::state::{ResourceStatus, TenantState};

/// The version of the drift report's JSON shape. Additive changes keep the major number.
pub const DRIFT_FORMAT_VERSION: &str = "1.0";

/// A drift run over one or more tenants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub format_version: String,
    pub created_at: DateTime<Utc>,
    /// In tenant order.
    pub tenants: Vec<TenantDrift>,
}

impl DriftReport {
    /// Whether any tenant's resources differ from its state.
    pub fn has_drift(&self) -> bool {
        self.tenants.iter().any(|t| !t.drift.is_empty())
    }

    /// Whether any tenant has spec changes not yet applied.
    pub fn has_pending(&self) -> bool {
        self.tenants.iter().any(|t| !t.pending.is_empty())
    }

    /// The counts over all tenants.
    pub fn summary(&self) -> DriftSummary {
        let mut s = DriftSummary {
            tenants: self.tenants.len(),
            ..DriftSummary::default()
        };
        for t in &self.tenants {
            s.resources_checked += t.resources_checked;
            if !t.drift.is_empty() {
                s.tenants_with_drift += 1;
            }
            s.deleted += t
                .drift
                .iter()
                .filter(|d| d.kind == DriftKind::Deleted)
                .count();
            s.changed += t
                .drift
                .iter()
                .filter(|d| d.kind == DriftKind::Changed)
                .count();
            s.pending_changes += t.pending.len();
        }
        s
    }
}

/// Counts over a whole report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftSummary {
    pub tenants: usize,
    pub tenants_with_drift: usize,
    pub resources_checked: usize,
    pub deleted: usize,
    pub changed: usize,
    pub pending_changes: usize,
}

/// One tenant's findings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantDrift {
    pub tenant: TenantId,
    /// The state the findings are relative to; `None` when the tenant was never applied.
    pub state_serial: Option<u64>,
    /// Resources read back from their endpoints.
    pub resources_checked: usize,
    /// Differences between state and reality, in address order.
    pub drift: Vec<ResourceDrift>,
    /// Spec changes not yet applied (not drift), in address order.
    pub pending: Vec<PendingChange>,
}

impl TenantDrift {
    /// `clean`, `drifted`, or `pending` (no drift, but spec changes to apply).
    pub fn status(&self) -> &'static str {
        if !self.drift.is_empty() {
            "drifted"
        } else if !self.pending.is_empty() {
            "pending"
        } else {
            "clean"
        }
    }
}

/// How a resource drifted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// State has it; the endpoint says it does not exist.
    Deleted,
    /// It exists with other attributes than state records.
    Changed,
}

/// One drifted resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceDrift {
    pub address: ResourceAddress,
    /// The object in its service (bucket, role, schema name...), as state records it.
    pub physical_id: Option<String>,
    pub kind: DriftKind,
    /// For `changed`: each differing attribute, recorded (state) → actual (endpoint).
    pub attributes: Vec<AttributeDrift>,
}

/// One attribute that differs. Sensitive values are redacted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeDrift {
    pub name: String,
    /// What state records (`None`: not recorded).
    pub recorded: Option<serde_json::Value>,
    /// What the endpoint has (`None`: not set there).
    pub actual: Option<serde_json::Value>,
}

/// A change the specs ask for that no apply has made yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingChange {
    pub address: ResourceAddress,
    pub action: Action,
    /// Why, in words (e.g. "the spec changed", "new in the spec").
    pub reason: String,
    pub changed_attributes: Vec<String>,
}

/// Compares one tenant's state with what was read back (`refreshed`: by local address,
/// `None` = gone; see [`crate::Engine::refresh`]) and lists the spec changes of
/// `pending_plan` (a plan made *without* refresh, so that it holds spec changes only).
pub fn tenant_drift(
    tenant: &TenantId,
    state: Option<&TenantState>,
    refreshed: &BTreeMap<String, Option<Attributes>>,
    pending_plan: Option<&TenantPlan>,
) -> TenantDrift {
    let mut drift = Vec::new();
    let mut checked = 0;
    for (key, r) in state.iter().flat_map(|s| &s.resources) {
        if r.status != ResourceStatus::Created {
            continue;
        }
        let Some(read) = refreshed.get(key) else {
            continue;
        };
        checked += 1;
        let address = ResourceAddress::new(tenant, r.resource_type, &r.name);
        let physical_id = crate::plan::identity::physical_id(r.resource_type, &r.attributes);
        match read {
            None => drift.push(ResourceDrift {
                address,
                physical_id,
                kind: DriftKind::Deleted,
                attributes: Vec::new(),
            }),
            Some(actual) => {
                let attributes = attribute_drift(r.resource_type, &r.attributes, actual);
                if !attributes.is_empty() {
                    drift.push(ResourceDrift {
                        address,
                        physical_id,
                        kind: DriftKind::Changed,
                        attributes,
                    });
                }
            }
        }
    }
    let pending = pending_plan
        .into_iter()
        .flat_map(|p| &p.changes)
        .filter(|c| c.action.is_change())
        .map(|c| PendingChange {
            address: c.address.clone(),
            action: c.action,
            reason: c.reason.to_string(),
            changed_attributes: c.attribute_changes.iter().map(|a| a.name.clone()).collect(),
        })
        .collect();
    TenantDrift {
        tenant: tenant.clone(),
        state_serial: state.map(|s| s.serial),
        resources_checked: checked,
        drift,
        pending,
    }
}

/// The readable attributes of a resource type that differ between state and reality.
pub fn attribute_drift(
    t: ResourceType,
    recorded: &Attributes,
    actual: &Attributes,
) -> Vec<AttributeDrift> {
    let s = schema(t);
    s.attributes
        .iter()
        .filter(|a| a.readable)
        .filter(|a| !a.same(recorded.get(a.name), actual.get(a.name)))
        .map(|a| {
            let shown = |v: Option<&serde_json::Value>| {
                v.map(|v| {
                    if a.sensitive {
                        serde_json::Value::String(REDACTED.into())
                    } else {
                        v.clone()
                    }
                })
            };
            AttributeDrift {
                name: a.name.to_owned(),
                recorded: shown(recorded.get(a.name)),
                actual: shown(actual.get(a.name)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ResourceState;
    use serde_json::json;

    fn tenant() -> TenantId {
        "acme".parse().unwrap()
    }

    fn state_with(resources: &[(&str, ResourceType, Attributes)]) -> TenantState {
        let mut s = TenantState::new(tenant());
        for (name, t, attrs) in resources {
            s.resources.insert(
                format!("{t}.{name}"),
                ResourceState {
                    resource_type: *t,
                    name: (*name).into(),
                    status: ResourceStatus::Created,
                    attributes: attrs.clone(),
                    depends_on: Vec::new(),
                    create_token: None,
                },
            );
        }
        s
    }

    fn attrs(v: serde_json::Value) -> Attributes {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn deleted_and_changed_resources_are_found_and_equal_ones_are_not() {
        let role = attrs(
            json!({"name": "tenant_acme", "login": true, "connection_limit": 20, "password": "s3cret"}),
        );
        let schema_attrs = attrs(json!({"name": "tenant_acme", "comment": "c"}));
        let grant =
            attrs(json!({"schema": "tenant_acme", "role": "tenant_acme", "privileges": ["USAGE"]}));
        let state = state_with(&[
            ("app", ResourceType::PostgresRole, role.clone()),
            ("main", ResourceType::PostgresSchema, schema_attrs.clone()),
            ("app", ResourceType::PostgresSchemaGrant, grant.clone()),
        ]);
        let mut changed_role = role.clone();
        changed_role.insert("connection_limit".into(), json!(5));
        let refreshed = BTreeMap::from([
            ("postgres_role.app".to_owned(), Some(changed_role)),
            ("postgres_schema.main".to_owned(), None),
            ("postgres_schema_grant.app".to_owned(), Some(grant)),
        ]);
        let d = tenant_drift(&tenant(), Some(&state), &refreshed, None);
        assert_eq!(d.resources_checked, 3);
        assert_eq!(d.status(), "drifted");
        assert_eq!(d.drift.len(), 2);
        assert_eq!(d.drift[0].address.to_string(), "acme/postgres_role.app");
        assert_eq!(d.drift[0].kind, DriftKind::Changed);
        assert_eq!(
            d.drift[0].attributes,
            vec![AttributeDrift {
                name: "connection_limit".into(),
                recorded: Some(json!(20)),
                actual: Some(json!(5)),
            }]
        );
        assert_eq!(d.drift[1].address.to_string(), "acme/postgres_schema.main");
        assert_eq!(d.drift[1].kind, DriftKind::Deleted);
    }

    #[test]
    fn set_attributes_in_another_order_are_not_drift() {
        let recorded = attrs(
            json!({"schema": "s", "table": "t", "role": "r", "privileges": ["SELECT", "INSERT"]}),
        );
        let actual = attrs(
            json!({"schema": "s", "table": "t", "role": "r", "privileges": ["INSERT", "SELECT"]}),
        );
        assert!(attribute_drift(ResourceType::PostgresTableGrant, &recorded, &actual).is_empty());
    }

    #[test]
    fn unreadable_attributes_are_not_compared_and_sensitive_ones_are_redacted() {
        let s = schema(ResourceType::PostgresRole);
        assert!(s.attributes.iter().any(|a| a.sensitive && !a.readable));
        let recorded = attrs(json!({"name": "r", "password": "one"}));
        let actual = attrs(json!({"name": "r", "password": "two"}));
        assert!(attribute_drift(ResourceType::PostgresRole, &recorded, &actual).is_empty());
    }

    #[test]
    fn resources_not_read_or_still_creating_are_not_counted() {
        let mut state = state_with(&[(
            "main",
            ResourceType::PostgresSchema,
            attrs(json!({"name": "x"})),
        )]);
        state
            .resources
            .get_mut("postgres_schema.main")
            .unwrap()
            .status = ResourceStatus::Creating;
        let d = tenant_drift(&tenant(), Some(&state), &BTreeMap::new(), None);
        assert_eq!(
            (d.resources_checked, d.drift.len(), d.status()),
            (0, 0, "clean")
        );
    }
}
