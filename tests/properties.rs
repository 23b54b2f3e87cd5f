//! Properties of the core (spec -> blueprint -> plan -> graph) over random valid specs,
//! with no service: apply is simulated the way the executor records it, by writing each
//! change's `after` into the tenant's state, with the secrets the providers generate.
//!
//! - A plan's graph has an edge only where the blueprint declared a dependency (or a
//!   replace orders its own delete before its create), and is acyclic.
//! - A plan applied and planned again is a no-op, also after a random change of spec.
//! - Destroy order is the reverse of create order: the destroy graph's edges are the
//!   create graph's, reversed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use tenantform::blueprint::tenant_blueprint;
use tenantform::plan::graph::{ActionGraph, StepKind};
use tenantform::plan::{Action, Plan, PlanMode, TenantInput, TenantPlan, plan_tenant};
use tenantform::resource::{ResourceAddress, schema};
use tenantform::spec::{Specs, TenantSpec};
use tenantform::state::{ResourceState, ResourceStatus, TenantState};

fn example() -> &'static Specs {
    static SPECS: OnceLock<Specs> = OnceLock::new();
    SPECS.get_or_init(|| {
        Specs::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("specs")).unwrap()
    })
}

/// A valid tenant spec: any tier, a region its classification allows.
fn tenant_spec() -> impl Strategy<Value = TenantSpec> {
    let platform = &example().platform;
    let tiers: Vec<String> = platform.tiers.keys().cloned().collect();
    let placements: Vec<(String, String)> = platform
        .data_classifications
        .iter()
        .flat_map(|(class, c)| {
            platform
                .regions
                .iter()
                .filter(|(_, r)| c.allowed_jurisdictions.contains(&r.jurisdiction))
                .map(move |(region, _)| (class.clone(), region.clone()))
        })
        .collect();
    (
        "[a-z][a-z0-9]{1,10}(-[a-z0-9]{1,8})?",
        "[A-Za-z][A-Za-z0-9 ]{0,30}",
        proptest::sample::select(tiers),
        proptest::sample::select(placements),
        0i64..100_000_000,
        "CC-[A-Z0-9]{1,12}",
        any::<bool>(),
    )
        .prop_map(
            |(id, name, tier, (class, region), budget, cost_center, protected)| TenantSpec {
                id: id.parse().expect("the pattern gives valid ids"),
                name,
                tier,
                region,
                budget_inr: budget,
                owner_email: "owner@tenant.example".into(),
                cost_center,
                data_classification: class,
                protected,
            },
        )
}

/// One tenant's plan, as the engine makes it without refresh.
fn plan_of(spec: Option<&TenantSpec>, state: &TenantState, mode: PlanMode) -> TenantPlan {
    let blueprint = spec.map(|s| tenant_blueprint(s, &example().platform));
    plan_tenant(
        TenantInput {
            tenant: &state.tenant,
            spec,
            blueprint: blueprint.as_ref(),
            state: Some(state),
            refreshed: &BTreeMap::new(),
            rotate: false,
        },
        mode,
        &BTreeSet::new(),
    )
    .expect("a valid spec plans")
}

fn whole(mode: PlanMode, tenants: Vec<TenantPlan>) -> Plan {
    Plan {
        format_version: tenantform::plan::PLAN_FORMAT_VERSION.into(),
        created_at: chrono::Utc::now(),
        mode,
        refreshed: false,
        policy: None,
        aws_account_id: None,
        tenants,
    }
}

/// What apply records: each created or updated resource's `after` (with the computed
/// attributes it had), deleted ones removed, the spec and protection as planned.
fn apply_to(state: &mut TenantState, plan: &TenantPlan) {
    for c in &plan.changes {
        let key = c.address.local();
        match (c.action, &c.after) {
            (Action::NoOp, _) => {}
            (Action::Delete, _) | (_, None) => {
                state.resources.remove(&key);
            }
            (_, Some(after)) => {
                let mut attributes = after.attributes.clone();
                if c.action == Action::Update
                    && let Some(old) = state.resources.get(&key)
                {
                    for (k, v) in &old.attributes {
                        attributes.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                // The provider generates each secret it cannot read back: state records
                // a new version of it (of an ephemeral one, the secret itself is never
                // recorded), when the plan sets it.
                for a in schema(c.address.resource_type).attributes {
                    let new = c.action != Action::Update
                        || c.attribute_changes.iter().any(|ch| ch.name == a.name);
                    if a.computed && a.sensitive && !a.readable && new {
                        let version = format!("{}-{}", state.serial, c.address);
                        attributes.insert(tenantform::resource::version_of(a.name), version.into());
                    }
                }
                // A resource taking ephemeral inputs records the versions it was
                // written with.
                let versions: serde_json::Map<String, serde_json::Value> = after
                    .inputs
                    .iter()
                    .filter_map(|(name, i)| {
                        let v = state
                            .resources
                            .get(&i.from.local())?
                            .attributes
                            .get(&tenantform::resource::version_of(&i.attribute))?;
                        Some((name.clone(), v.clone()))
                    })
                    .collect();
                if !versions.is_empty() {
                    attributes.insert(
                        tenantform::resource::secret::INPUT_VERSIONS.into(),
                        versions.into(),
                    );
                }
                state.resources.insert(
                    key,
                    ResourceState {
                        resource_type: c.address.resource_type,
                        name: c.address.name.clone(),
                        status: ResourceStatus::Created,
                        attributes,
                        depends_on: after.depends_on.clone(),
                        create_token: None,
                    },
                );
            }
        }
    }
    state.protected = plan.protected;
    state.applied_spec = plan.spec.clone();
    state.serial += 1;
}

/// The graph's edges as (from, to) pairs of (address, step kind).
fn edges(plan: &Plan) -> BTreeSet<((ResourceAddress, u8), (ResourceAddress, u8))> {
    let g = ActionGraph::build(plan).expect("no cycle");
    let kind = |k: StepKind| match k {
        StepKind::Create => 0,
        StepKind::Update => 1,
        StepKind::Delete => 2,
    };
    g.graph
        .edge_indices()
        .map(|e| {
            let (a, b) = g.graph.edge_endpoints(e).unwrap();
            let (a, b) = (g.graph[a], g.graph[b]);
            (
                (a.change(plan).address.clone(), kind(a.kind)),
                (b.change(plan).address.clone(), kind(b.kind)),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every edge of a new tenant's plan is a dependency its blueprint declared, and
    /// every declared dependency is an edge.
    #[test]
    fn a_plan_has_only_the_dependencies_the_blueprint_declared(
        specs in proptest::collection::vec(tenant_spec(), 1..4)
    ) {
        let mut plans = Vec::new();
        let mut seen = BTreeSet::new();
        let mut declared = BTreeSet::new();
        for spec in specs.iter().filter(|s| seen.insert(s.id.clone())) {
            let state = TenantState::new(spec.id.clone());
            for r in tenant_blueprint(spec, &example().platform).resources {
                for d in &r.depends_on {
                    declared.insert(((d.clone(), 0), (r.address.clone(), 0)));
                }
            }
            plans.push(plan_of(Some(spec), &state, PlanMode::Normal));
        }
        let plan = whole(PlanMode::Normal, plans);
        prop_assert_eq!(edges(&plan), declared);
    }

    /// Applied, then planned again: nothing to do. Then a random change of the spec,
    /// applied: again nothing to do, and no step of it was in a cycle.
    #[test]
    fn a_plan_applied_then_planned_again_is_a_no_op(
        first in tenant_spec(),
        second in tenant_spec(),
    ) {
        let mut second = second;
        second.id = first.id.clone();
        second.protected = false;
        let mut first = first;
        first.protected = false;
        let mut state = TenantState::new(first.id.clone());
        for spec in [&first, &second] {
            let p = plan_of(Some(spec), &state, PlanMode::Normal);
            let plan = whole(PlanMode::Normal, vec![p.clone()]);
            prop_assert!(ActionGraph::build(&plan).is_ok());
            apply_to(&mut state, &p);
            let again = plan_of(Some(spec), &state, PlanMode::Normal);
            let changed: Vec<String> = again
                .changes
                .iter()
                .filter(|c| c.action.is_change())
                .map(|c| format!("{} {:?}", c.address, c.action))
                .collect();
            prop_assert!(!again.has_changes(), "{:?}", changed);
        }
    }

    /// Destroying an applied tenant deletes in exactly the reverse of the order in
    /// which it was created.
    #[test]
    fn destroy_order_is_the_reverse_of_create_order(spec in tenant_spec()) {
        let mut spec = spec;
        spec.protected = false;
        let mut state = TenantState::new(spec.id.clone());
        let create = plan_of(Some(&spec), &state, PlanMode::Normal);
        apply_to(&mut state, &create);
        let destroy = plan_of(None, &state, PlanMode::Destroy);
        prop_assert!(destroy.changes.iter().all(|c| c.action == Action::Delete));
        let created = edges(&whole(PlanMode::Normal, vec![create]));
        let destroyed = edges(&whole(PlanMode::Destroy, vec![destroy]));
        let reversed: BTreeSet<_> = created
            .into_iter()
            .map(|((a, _), (b, _))| ((b, 2), (a, 2)))
            .collect();
        prop_assert_eq!(destroyed, reversed);
    }
}
