//! Diff and ordering rules, one test per rule. Plans are checked through one helper,
//! [`summary`], which prints each change as `action address (reason)`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::graph::ActionGraph;
use super::*;
use crate::blueprint::tenant_blueprint;
use crate::resource::{Resource, ResourceType};
use crate::spec::Specs;
use crate::state::ResourceState;

pub(crate) fn specs() -> Specs {
    Specs::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("specs")).expect("example specs")
}

pub(crate) fn tenant(specs: &Specs, id: &str) -> TenantSpec {
    specs.tenants[&id.parse::<TenantId>().unwrap()].clone()
}

/// State as if `bp` had been applied.
pub(crate) fn applied(bp: &TenantBlueprint, protected: bool) -> TenantState {
    let mut s = TenantState::new(bp.tenant.clone());
    s.serial = 7;
    s.protected = protected;
    for r in &bp.resources {
        let mut attrs = r.attributes.clone();
        // As an apply records them: the versions of the secrets the providers generate
        // (the secrets themselves are never recorded), and the versions a resource
        // taking them was written with.
        for a in r
            .schema()
            .attributes
            .iter()
            .filter(|a| a.computed && a.sensitive)
        {
            attrs.insert(crate::resource::version_of(a.name), serde_json::json!("v1"));
        }
        if !r.inputs.is_empty() {
            let versions: serde_json::Map<String, serde_json::Value> = r
                .inputs
                .iter()
                .filter(|(_, i)| i.attribute == "password")
                .map(|(name, _)| (name.clone(), serde_json::json!("v1")))
                .collect();
            attrs.insert(
                crate::resource::secret::INPUT_VERSIONS.into(),
                versions.into(),
            );
        }
        s.resources.insert(
            r.address.local(),
            ResourceState {
                resource_type: r.address.resource_type,
                name: r.address.name.clone(),
                status: ResourceStatus::Created,
                attributes: attrs,
                depends_on: r.depends_on.clone(),
                create_token: None,
            },
        );
    }
    s
}

pub(crate) struct Case<'a> {
    pub(crate) spec: Option<&'a TenantSpec>,
    pub(crate) bp: Option<&'a TenantBlueprint>,
    pub(crate) state: Option<&'a TenantState>,
    pub(crate) refreshed: BTreeMap<String, Option<Attributes>>,
    pub(crate) mode: PlanMode,
    pub(crate) replace: BTreeSet<ResourceAddress>,
    pub(crate) rotate: bool,
}

impl<'a> Case<'a> {
    pub(crate) fn new(
        spec: Option<&'a TenantSpec>,
        bp: Option<&'a TenantBlueprint>,
        state: Option<&'a TenantState>,
    ) -> Self {
        Case {
            spec,
            bp,
            state,
            refreshed: BTreeMap::new(),
            mode: PlanMode::Normal,
            replace: BTreeSet::new(),
            rotate: false,
        }
    }

    pub(crate) fn plan(&self) -> Result<TenantPlan, PlanError> {
        let id = self
            .spec
            .map(|s| s.id.clone())
            .or_else(|| self.state.map(|s| s.tenant.clone()))
            .unwrap();
        plan_tenant(
            TenantInput {
                tenant: &id,
                spec: self.spec,
                blueprint: self.bp,
                state: self.state,
                refreshed: &self.refreshed,
                rotate: self.rotate,
            },
            self.mode,
            &self.replace,
        )
    }
}

/// One line per changing resource, sorted: `action type.name (reason)`.
fn summary(p: &TenantPlan) -> Vec<String> {
    let mut lines: Vec<String> = p
        .changes
        .iter()
        .filter(|c| c.action.is_change())
        .map(|c| format!("{:?} {} ({})", c.action, c.address.local(), c.reason))
        .collect();
    lines.sort();
    lines
}

fn whole(p: TenantPlan) -> Plan {
    Plan {
        format_version: PLAN_FORMAT_VERSION.into(),
        created_at: chrono::Utc::now(),
        mode: PlanMode::Normal,
        refreshed: false,
        policy: None,
        aws_account_id: None,
        tenants: vec![p],
    }
}

/// The order in which a serial walk of the graph would run the steps.
fn serial_order(plan: &Plan) -> Vec<String> {
    let g = ActionGraph::build(plan).unwrap();
    let order = petgraph::algo::toposort(&g.graph, None).unwrap();
    order
        .into_iter()
        .map(|n| {
            let s = g.graph[n];
            format!("{:?} {}", s.kind, s.change(plan).address.local())
        })
        .collect()
}

fn position(order: &[String], step: &str) -> usize {
    order
        .iter()
        .position(|s| s == step)
        .unwrap_or_else(|| panic!("{step} not in {order:#?}"))
}

#[test]
fn a_new_tenant_is_all_creates_and_all_or_nothing() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let p = Case::new(Some(&t), Some(&bp), None).plan().unwrap();
    assert!(p.new_tenant);
    assert_eq!(p.count(Action::Create), bp.resources.len());
    assert!(p.changes.iter().all(|c| c.reason == ActionReason::New));
    assert_eq!(p.state_serial, None);
}

#[test]
fn state_matching_the_spec_plans_nothing() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    let p = Case::new(Some(&t), Some(&bp), Some(&state)).plan().unwrap();
    assert!(!p.has_changes(), "{:#?}", summary(&p));
    assert_eq!(p.state_serial, Some(7));
    assert!(!p.new_tenant);
}

#[test]
fn a_tier_change_updates_in_place_and_adds_the_tiers_cache() {
    let specs = specs();
    let mut t = tenant(&specs, "retail-chain");
    let state = applied(&tenant_blueprint(&t, &specs.platform), false);
    t.tier = "gold".into();
    let bp = tenant_blueprint(&t, &specs.platform);
    let p = Case::new(Some(&t), Some(&bp), Some(&state)).plan().unwrap();
    assert_eq!(
        summary(&p),
        vec![
            "Create elasticache_cluster.cache (new in the spec)",
            "Update grafana_dashboard.main (the spec changed)",
            "Update iam_policy.documents_access (the spec changed)",
            "Update iam_role.app (the spec changed)",
            "Update postgres_role.app (the spec changed)",
            "Update s3_bucket.documents (the spec changed)",
            "Update secret.credentials (the spec changed)",
            "Update tenant_settings.main (the spec changed)",
        ]
    );
    // Tags and lifecycle follow the tier; nothing is replaced.
    let bucket = p
        .changes
        .iter()
        .find(|c| c.address.resource_type == ResourceType::S3Bucket)
        .unwrap();
    let names: Vec<&str> = bucket
        .attribute_changes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, vec!["lifecycle_rules", "tags"]);
    let change = p
        .changes
        .iter()
        .find(|c| {
            c.action == Action::Update && c.address.resource_type == ResourceType::PostgresRole
        })
        .unwrap();
    assert_eq!(change.attribute_changes.len(), 1);
    let a = &change.attribute_changes[0];
    assert_eq!(
        (a.name.as_str(), a.before.clone(), a.after.clone()),
        ("connection_limit", Some(20.into()), Some(50.into()))
    );
    assert!(!a.forces_replacement);
}

#[test]
fn a_renamed_schema_is_replaced_with_everything_inside_it() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let state = applied(&tenant_blueprint(&t, &specs.platform), false);
    let mut platform = specs.platform.clone();
    platform.naming.postgres_schema = "rag_{id_}".into();
    let bp = tenant_blueprint(&t, &platform);
    let p = Case::new(Some(&t), Some(&bp), Some(&state)).plan().unwrap();
    assert_eq!(
        summary(&p),
        vec![
            "Replace postgres_row_security.documents (the spec changed)",
            "Replace postgres_schema.main (the spec changed)",
            "Replace postgres_schema_grant.app (the spec changed)",
            "Replace postgres_table.documents (the spec changed)",
            "Replace postgres_table_grant.documents (the spec changed)",
            "Replace postgres_table_grant.embeddings (the spec changed)",
            "Replace vector_namespace.embeddings (the spec changed)",
        ]
    );
    let schema = p.changes.iter().find(|c| c.address.name == "main").unwrap();
    assert!(
        schema
            .attribute_changes
            .iter()
            .any(|a| a.name == "name" && a.forces_replacement)
    );
    // The role is outside the schema and stays.
    let role = p
        .changes
        .iter()
        .find(|c| c.address.resource_type == ResourceType::PostgresRole)
        .unwrap();
    assert_eq!(role.action, Action::NoOp);
}

#[test]
fn replacing_one_resource_replaces_its_dependents() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    let role: ResourceAddress = "retail-chain/postgres_role.app".parse().unwrap();
    case.replace.insert(role.clone());
    let p = case.plan().unwrap();
    assert_eq!(
        summary(&p),
        vec![
            "Replace postgres_role.app (replacement requested with --replace)",
            "Replace postgres_row_security.documents (retail-chain/postgres_role.app is replaced)",
            "Replace postgres_schema_grant.app (retail-chain/postgres_role.app is replaced)",
            "Replace postgres_table_grant.documents (retail-chain/postgres_row_security.documents is replaced)",
            "Replace postgres_table_grant.embeddings (retail-chain/postgres_schema_grant.app is replaced)",
            // The secret holds the role's name and password, and is written whole: the
            // Redis user's password is set anew to go in with the role's.
            "Replace secret.credentials (retail-chain/postgres_role.app is replaced)",
            "Update redis_acl_user.app (the credentials secret is written anew: every password in it is set anew)",
        ]
    );
    // The embeddings are granted anew; the table that holds them stays.
    let ns = p
        .changes
        .iter()
        .find(|c| c.address.resource_type == ResourceType::VectorNamespace)
        .unwrap();
    assert_eq!(ns.action, Action::NoOp);

    case.replace = ["retail-chain/postgres_role.nope".parse().unwrap()].into();
    assert!(matches!(
        case.plan(),
        Err(PlanError::UnknownReplaceTarget(_))
    ));
}

#[test]
fn rotation_updates_only_the_generated_secrets_of_the_tenant_asked_for() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    assert!(
        summary(&case.plan().unwrap()).is_empty(),
        "not asked: nothing"
    );

    case.rotate = true;
    let p = case.plan().unwrap();
    let rotated = "rotation requested with --rotate: new secrets are set";
    assert_eq!(
        summary(&p),
        vec![
            format!("Update postgres_role.app ({rotated})"),
            format!("Update redis_acl_user.app ({rotated})"),
            format!("Update secret.credentials ({rotated})"),
        ]
    );
    for c in p.changes.iter().filter(|c| c.action.is_change()) {
        assert_eq!(c.reason, ActionReason::RotationRequested);
        let written = match c.address.resource_type {
            ResourceType::Secret => "value",
            _ => "password",
        };
        assert_eq!(
            c.attribute_changes,
            vec![AttributeChange {
                name: written.into(),
                before: Some(REDACTED.into()),
                after: Some(REDACTED.into()),
                forces_replacement: false,
            }],
            "{}",
            c.address
        );
    }
    let shown = render::human(&whole(p), render::Style { color: false });
    assert!(shown.contains(rotated), "{shown}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");

    // A replaced role gets a new password anyway: the replace is all it needs.
    case.replace
        .insert("retail-chain/postgres_role.app".parse().unwrap());
    let p = case.plan().unwrap();
    let role = p
        .changes
        .iter()
        .find(|c| c.address.resource_type == ResourceType::PostgresRole)
        .unwrap();
    assert_eq!(role.action, Action::Replace);
    assert_eq!(role.reason, ActionReason::ReplaceRequested);
    assert!(role.attribute_changes.iter().all(|a| a.name != "password"));
    let user = p
        .changes
        .iter()
        .find(|c| c.address.resource_type == ResourceType::RedisAclUser)
        .unwrap();
    assert_eq!(user.reason, ActionReason::RotationRequested);
}

#[test]
fn refresh_tells_deleted_and_drifted_resources_from_spec_changes() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    case.refreshed.insert("postgres_schema.main".into(), None);
    let mut role = state.resources["postgres_role.app"].attributes.clone();
    role.insert("superuser".into(), true.into());
    case.refreshed
        .insert("postgres_role.app".into(), Some(role));
    let mut grant = state.resources["postgres_table_grant.documents"]
        .attributes
        .clone();
    grant.insert(
        "privileges".into(),
        serde_json::json!(["UPDATE", "SELECT", "INSERT", "DELETE"]),
    );
    case.refreshed
        .insert("postgres_table_grant.documents".into(), Some(grant));
    let p = case.plan().unwrap();
    assert_eq!(
        summary(&p),
        vec![
            "Create postgres_schema.main (deleted outside tenantform)",
            "Update postgres_role.app (changed outside tenantform)",
        ],
        "privileges in another order are the same set"
    );
    let role = p
        .changes
        .iter()
        .find(|c| c.action == Action::Update)
        .unwrap();
    assert_eq!(role.attribute_changes[0].before, Some(true.into()));
    // The password is never in a plan.
    let text = serde_json::to_string(&p).unwrap();
    assert!(!text.contains("s3cret-pw"), "{text}");
}

#[test]
fn an_interrupted_create_is_resumed() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let mut state = applied(&bp, false);
    state
        .resources
        .get_mut("postgres_table.documents")
        .unwrap()
        .status = ResourceStatus::Creating;
    let p = Case::new(Some(&t), Some(&bp), Some(&state)).plan().unwrap();
    assert_eq!(
        summary(&p),
        vec!["Create postgres_table.documents (an earlier run was interrupted while creating it)"]
    );
    assert!(
        p.changes
            .iter()
            .find(|c| c.action == Action::Create)
            .unwrap()
            .resumes()
    );
}

#[test]
fn a_removed_spec_deletes_unless_state_says_protected() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    let p = Case::new(None, None, Some(&state)).plan().unwrap();
    assert_eq!(p.count(Action::Delete), bp.resources.len());
    assert!(
        p.changes
            .iter()
            .all(|c| c.reason == ActionReason::RemovedFromSpec)
    );

    let protected = applied(&bp, true);
    let err = Case::new(None, None, Some(&protected))
        .plan()
        .unwrap_err()
        .to_string();
    assert!(err.contains("tenant retail-chain is protected"), "{err}");
    assert!(err.contains("spec file was removed"), "{err}");
}

#[test]
fn destroy_honours_the_spec_flag_and_lifting_it_allows_deletion() {
    let specs = specs();
    let mut t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, true);
    t.protected = true;
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    case.mode = PlanMode::Destroy;
    let err = case.plan().unwrap_err().to_string();
    assert!(
        err.contains("protected = true in specs/tenants/retail-chain.toml"),
        "{err}"
    );

    let mut lifted = t.clone();
    lifted.protected = false;
    case.spec = Some(&lifted);
    let p = case.plan().unwrap();
    assert_eq!(p.count(Action::Delete), bp.resources.len());
    assert!(!p.protected && p.protected_before);
}

#[test]
fn protecting_a_tenant_is_itself_a_change() {
    let specs = specs();
    let mut t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    t.protected = true;
    let p = Case::new(Some(&t), Some(&bp), Some(&state)).plan().unwrap();
    assert!(p.has_changes());
    assert!(summary(&p).is_empty());
}

#[test]
fn creates_follow_dependencies_and_deletes_run_in_reverse() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let create = whole(Case::new(Some(&t), Some(&bp), None).plan().unwrap());
    let order = serial_order(&create);
    for r in &bp.resources {
        for d in &r.depends_on {
            assert!(
                position(&order, &format!("Create {}", d.local()))
                    < position(&order, &format!("Create {}", r.address.local())),
                "{} before {}",
                d,
                r.address
            );
        }
    }

    let state = applied(&bp, false);
    let destroy = whole(Case::new(None, None, Some(&state)).plan().unwrap());
    let order = serial_order(&destroy);
    for r in &bp.resources {
        for d in &r.depends_on {
            assert!(
                position(&order, &format!("Delete {}", r.address.local()))
                    < position(&order, &format!("Delete {}", d.local())),
                "{} deleted before {}",
                r.address,
                d
            );
        }
    }
}

#[test]
fn a_replace_deletes_before_it_creates_and_dependents_wrap_around_it() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    case.replace
        .insert("retail-chain/postgres_role.app".parse().unwrap());
    let plan = whole(case.plan().unwrap());
    let order = serial_order(&plan);
    let p = |s: &str| position(&order, s);
    assert!(p("Delete postgres_schema_grant.app") < p("Delete postgres_role.app"));
    assert!(p("Delete postgres_role.app") < p("Create postgres_role.app"));
    assert!(p("Create postgres_role.app") < p("Create postgres_schema_grant.app"));
    assert!(
        p("Create postgres_row_security.documents") < p("Create postgres_table_grant.documents")
    );
}

#[test]
fn an_update_runs_before_the_delete_of_what_it_depended_on() {
    let tenant_id: TenantId = "acme".parse().unwrap();
    let a = Resource::new(ResourceAddress::new(
        &tenant_id,
        ResourceType::PostgresSchema,
        "old",
    ))
    .attr("name", "old")
    .attr("comment", "c");
    let b = Resource::new(ResourceAddress::new(
        &tenant_id,
        ResourceType::PostgresSchema,
        "keep",
    ))
    .attr("name", "keep")
    .attr("comment", "c")
    .depends_on(&a);
    let state = applied(
        &TenantBlueprint {
            tenant: tenant_id.clone(),
            resources: vec![a.clone(), b.clone()],
        },
        false,
    );
    let mut b2 = b.clone();
    b2.depends_on.clear();
    b2.attributes.insert("comment".into(), "new".into());
    let bp = TenantBlueprint {
        tenant: tenant_id.clone(),
        resources: vec![b2],
    };
    let spec_like = Case {
        spec: None,
        bp: Some(&bp),
        state: Some(&state),
        refreshed: BTreeMap::new(),
        mode: PlanMode::Normal,
        replace: BTreeSet::new(),
        rotate: false,
    };
    // With no spec the blueprint is still what the case hands in: plan it directly.
    let p = plan_tenant(
        TenantInput {
            tenant: &tenant_id,
            spec: spec_like.spec,
            blueprint: spec_like.bp,
            state: spec_like.state,
            refreshed: &spec_like.refreshed,
            rotate: false,
        },
        PlanMode::Normal,
        &BTreeSet::new(),
    )
    .unwrap();
    let plan = whole(p);
    let order = serial_order(&plan);
    assert!(
        position(&order, "Update postgres_schema.keep")
            < position(&order, "Delete postgres_schema.old")
    );
}

#[test]
fn a_dependency_cycle_is_an_error_naming_its_resources() {
    let tenant_id: TenantId = "acme".parse().unwrap();
    let mut a = Resource::new(ResourceAddress::new(
        &tenant_id,
        ResourceType::PostgresSchema,
        "a",
    ))
    .attr("name", "a")
    .attr("comment", "");
    let b = Resource::new(ResourceAddress::new(
        &tenant_id,
        ResourceType::PostgresSchema,
        "b",
    ))
    .attr("name", "b")
    .attr("comment", "")
    .depends_on(&a);
    a = a.depends_on(&b);
    let bp = TenantBlueprint {
        tenant: tenant_id.clone(),
        resources: vec![a, b],
    };
    let p = plan_tenant(
        TenantInput {
            tenant: &tenant_id,
            spec: None,
            blueprint: Some(&bp),
            state: None,
            refreshed: &BTreeMap::new(),
            rotate: false,
        },
        PlanMode::Normal,
        &BTreeSet::new(),
    )
    .unwrap();
    let err = ActionGraph::build(&whole(p)).unwrap_err();
    let PlanError::Cycle(addresses) = &err else {
        panic!("{err}")
    };
    let mut names: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        vec!["acme/postgres_schema.a", "acme/postgres_schema.b"]
    );
    assert!(
        err.to_string()
            .starts_with("dependency cycle between acme/postgres_schema.")
    );
}

#[test]
fn the_json_view_uses_terraforms_vocabulary_and_hides_secrets() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    case.replace
        .insert("retail-chain/postgres_role.app".parse().unwrap());
    let plan = whole(case.plan().unwrap());
    let json = render::json(&plan);
    assert_eq!(json["format_version"], render::JSON_FORMAT_VERSION);
    let rc = json["resource_changes"].as_array().unwrap();
    let role = rc
        .iter()
        .find(|c| c["address"] == "retail-chain/postgres_role.app")
        .unwrap();
    assert_eq!(
        role["change"]["actions"],
        serde_json::json!(["delete", "create"])
    );
    assert_eq!(role["action_reason"], "replace_by_request");
    // Sensitive values are left out and marked, never shown redacted.
    assert_eq!(role["change"]["before"]["name"], "tenant_retail_chain");
    assert!(role["change"]["before"].get("password").is_none(), "{role}");
    assert_eq!(role["change"]["before_sensitive"]["password"], true);
    assert_eq!(role["change"]["after_sensitive"]["password"], true);
    assert_eq!(role["change"]["after_unknown"]["password"], true);
    assert!(!json.to_string().contains(crate::secret::REDACTED));
    assert_eq!(
        role["reason"],
        serde_json::json!({"kind": "replace_requested",
                           "description": "replacement requested with --replace"})
    );
    assert_eq!(role["mode"], "managed");
    assert_eq!(role["provider_name"], "tenantform/postgres");
    assert_eq!(role["module_address"], r#"module.tenant["retail-chain"]"#);
    let grant = rc
        .iter()
        .find(|c| c["address"] == "retail-chain/postgres_schema_grant.app")
        .unwrap();
    assert_eq!(grant["reason"]["kind"], "dependency_replaced");
    assert_eq!(
        grant["reason"]["dependency"],
        "retail-chain/postgres_role.app"
    );
    let schema = rc
        .iter()
        .find(|c| c["address"] == "retail-chain/postgres_schema.main")
        .unwrap();
    assert_eq!(schema["change"]["actions"], serde_json::json!(["no-op"]));
    assert_eq!(
        schema["reason"],
        serde_json::json!({"kind": "unchanged", "description": "matches the spec"})
    );
    assert_eq!(schema["change"]["before"], schema["change"]["after"]);
    assert!(!json.to_string().contains("s3cret-pw"));
    assert_eq!(
        json["summary"],
        serde_json::json!({"add": 6, "change": 1, "destroy": 6})
    );

    // The whole renderings of this plan are snapshots in `render_tests.rs`.
}

#[test]
fn the_json_view_carries_what_terraforms_consumers_read() {
    let specs = specs();
    let gold = tenant(&specs, "healthcare-systems");
    let gold_bp = tenant_blueprint(&gold, &specs.platform);
    let silver = tenant(&specs, "retail-chain");
    let silver_bp = tenant_blueprint(&silver, &specs.platform);
    let silver_state = applied(&silver_bp, false);
    let mut plan = whole(Case::new(Some(&gold), Some(&gold_bp), None).plan().unwrap());
    plan.tenants.push(
        Case::new(Some(&silver), Some(&silver_bp), Some(&silver_state))
            .plan()
            .unwrap(),
    );
    let json = render::json(&plan);
    assert_eq!(json["terraform_version"], terraform::TERRAFORM_VERSION);
    assert!(json["tenantform_version"].is_string());

    let modules = json["planned_values"]["root_module"]["child_modules"]
        .as_array()
        .unwrap();
    let addresses: Vec<&str> = modules
        .iter()
        .map(|m| m["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        vec![
            r#"module.tenant["healthcare-systems"]"#,
            r#"module.tenant["retail-chain"]"#
        ]
    );
    let planned: Vec<&Value> = modules
        .iter()
        .flat_map(|m| m["resources"].as_array().unwrap())
        .collect();
    assert_eq!(planned.len(), plan.changes().count());
    let bucket = planned
        .iter()
        .find(|r| r["address"] == "healthcare-systems/s3_bucket.documents")
        .unwrap();
    assert_eq!(bucket["mode"], "managed");
    assert_eq!(bucket["type"], "s3_bucket");
    assert_eq!(bucket["name"], "documents");
    assert_eq!(bucket["provider_name"], "tenantform/aws");
    assert_eq!(bucket["values"]["tags"]["TenantID"], "healthcare-systems");
    // The AWS resources again, as the AWS provider's, in a child module per tenant.
    let aws = &modules[0]["child_modules"][0];
    assert_eq!(
        aws["address"],
        r#"module.tenant["healthcare-systems"].module.aws"#
    );
    let aws_types: Vec<&str> = aws["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        aws_types,
        vec![
            "aws_s3_bucket",
            "aws_s3_bucket_versioning",
            "aws_s3_bucket_lifecycle_configuration",
            "aws_s3_bucket_public_access_block",
            "aws_s3_bucket_policy",
            "aws_iam_policy",
            "aws_iam_role",
            "aws_iam_role_policy_attachment",
            "aws_elasticache_cluster",
        ]
    );
    let versioning = aws["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "aws_s3_bucket_versioning")
        .unwrap();
    assert_eq!(
        versioning["values"]["versioning_configuration"][0]["status"],
        "Enabled"
    );
    let aws_declared = json["configuration"]["root_module"]["module_calls"]["tenant"]["module"]
        ["module_calls"]["aws"]["module"]["resources"]
        .as_array()
        .unwrap();
    let block = aws_declared
        .iter()
        .find(|r| r["address"] == "aws_s3_bucket_public_access_block.documents")
        .unwrap();
    assert_eq!(
        block["expressions"]["bucket"]["references"][1],
        "aws_s3_bucket.documents"
    );
    let role = planned
        .iter()
        .find(|r| r["address"] == "retail-chain/postgres_role.app")
        .unwrap();
    assert!(role["values"].get("password").is_none(), "{role}");
    assert_eq!(role["sensitive_values"]["password"], true);

    // Prior state: only the tenant that has state, with its secrets left out.
    let prior = &json["prior_state"]["values"]["root_module"]["child_modules"];
    assert_eq!(prior.as_array().unwrap().len(), 1);
    assert_eq!(prior[0]["address"], r#"module.tenant["retail-chain"]"#);
    assert_eq!(
        prior[0]["resources"].as_array().unwrap().len(),
        silver_bp.resources.len()
    );
    assert!(!json.to_string().contains("s3cret-pw"));

    let declared =
        json["configuration"]["root_module"]["module_calls"]["tenant"]["module"]["resources"]
            .as_array()
            .unwrap();
    assert_eq!(declared.len(), gold_bp.resources.len());
    assert!(
        declared
            .iter()
            .any(|r| r["address"] == "elasticache_cluster.cache")
    );

    for rc in json["resource_changes"].as_array().unwrap() {
        assert_eq!(rc["mode"], "managed", "{rc}");
        assert!(
            rc["provider_name"]
                .as_str()
                .unwrap()
                .starts_with("tenantform/")
        );
        assert!(
            rc["module_address"]
                .as_str()
                .unwrap()
                .starts_with("module.tenant[")
        );
    }
    let create = json["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "healthcare-systems/postgres_role.app")
        .unwrap();
    assert_eq!(create["change"]["before_sensitive"], false);
    assert_eq!(create["change"]["after_sensitive"]["password"], true);
    assert_eq!(create["reason"]["kind"], "new");

    // Without state there is no prior state at all.
    let fresh = whole(Case::new(Some(&gold), Some(&gold_bp), None).plan().unwrap());
    assert!(render::json(&fresh).get("prior_state").is_none());
}

/// `plan --json` is written tenant by tenant and resource by resource: the same bytes
/// as the whole document, with and without prior state, with the account filled in
/// or left a placeholder.
#[test]
fn the_streamed_json_view_is_the_whole_one_byte_for_byte() {
    let specs = specs();
    let gold = tenant(&specs, "healthcare-systems");
    let gold_bp = tenant_blueprint(&gold, &specs.platform);
    let silver = tenant(&specs, "retail-chain");
    let silver_bp = tenant_blueprint(&silver, &specs.platform);
    let silver_state = applied(&silver_bp, false);
    let fresh = whole(Case::new(Some(&gold), Some(&gold_bp), None).plan().unwrap());
    let mut mixed = whole(Case::new(Some(&gold), Some(&gold_bp), None).plan().unwrap());
    mixed.tenants.push(
        Case::new(Some(&silver), Some(&silver_bp), Some(&silver_state))
            .plan()
            .unwrap(),
    );
    for mut plan in [fresh, mixed] {
        for account in [None, Some("123456789012".to_owned())] {
            plan.aws_account_id = account;
            let mut streamed = Vec::new();
            render::write_json(&plan, &mut streamed).unwrap();
            let streamed = String::from_utf8(streamed).unwrap();
            assert_eq!(
                streamed,
                serde_json::to_string(&render::json(&plan)).unwrap()
            );
            assert!(!streamed.contains("s3cret"));
        }
    }
}

#[test]
fn credentials_out_of_step_with_their_secret_are_renewed_together() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let renewed = |p: &TenantPlan| {
        let reason = ActionReason::CredentialsRenewed.to_string();
        vec![
            format!("Update postgres_role.app ({reason})"),
            format!("Update redis_acl_user.app ({reason})"),
            format!("Update secret.credentials ({reason})"),
        ] == summary(p)
    };

    // A password set by an apply that stopped before the secret was written.
    let mut state = applied(&bp, false);
    state
        .resources
        .get_mut("redis_acl_user.app")
        .unwrap()
        .attributes
        .insert("password_version".into(), "v2".into());
    let p = Case::new(Some(&t), Some(&bp), Some(&state)).plan().unwrap();
    assert!(renewed(&p), "{:#?}", summary(&p));
    let secret = p
        .changes
        .iter()
        .find(|c| c.address.resource_type == ResourceType::Secret)
        .unwrap();
    assert_eq!(secret.attribute_changes.len(), 1);
    assert_eq!(secret.attribute_changes[0].name, "value");
    assert_eq!(
        secret.attribute_changes[0].after,
        Some(REDACTED.into()),
        "the value is never shown"
    );

    // The value changed outside tenantform: refresh finds another current version.
    let mut state = applied(&bp, false);
    let recorded = &mut state
        .resources
        .get_mut("secret.credentials")
        .unwrap()
        .attributes;
    recorded.insert("version_id".into(), "written-by-tenantform".into());
    let mut read = recorded.clone();
    read.insert("version_id".into(), "put-by-hand".into());
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    case.refreshed
        .insert("secret.credentials".into(), Some(read));
    let p = case.plan().unwrap();
    assert!(renewed(&p), "{:#?}", summary(&p));
    // The same version read back: nothing to do.
    let read = state.resources["secret.credentials"].attributes.clone();
    case.refreshed
        .insert("secret.credentials".into(), Some(read));
    assert!(summary(&case.plan().unwrap()).is_empty());
}

#[test]
fn a_state_with_passwords_and_no_secret_gets_the_secret_and_new_passwords() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let mut state = applied(&bp, false);
    state.resources.remove("secret.credentials");
    for r in ["postgres_role.app", "redis_acl_user.app"] {
        let attrs = &mut state.resources.get_mut(r).unwrap().attributes;
        attrs.remove("password_version");
        attrs.insert("password".into(), "kept-by-an-older-release".into());
    }
    let p = Case::new(Some(&t), Some(&bp), Some(&state)).plan().unwrap();
    let not_in_state = ActionReason::SecretNotInState.to_string();
    assert_eq!(
        summary(&p),
        vec![
            "Create secret.credentials (new in the spec)".to_owned(),
            format!("Update postgres_role.app ({not_in_state})"),
            format!("Update redis_acl_user.app ({not_in_state})"),
        ]
    );
    let shown = render::human(&whole(p), render::Style { color: false });
    assert!(!shown.contains("kept-by-an-older-release"), "{shown}");
}

#[test]
fn a_rotation_shows_the_secrets_value_as_known_after_apply() {
    let specs = specs();
    let t = tenant(&specs, "retail-chain");
    let bp = tenant_blueprint(&t, &specs.platform);
    let state = applied(&bp, false);
    let mut case = Case::new(Some(&t), Some(&bp), Some(&state));
    case.rotate = true;
    let shown = render::human(&whole(case.plan().unwrap()), render::Style { color: false });
    assert!(
        shown.contains("~ value = (sensitive value) -> (known after apply)"),
        "{shown}"
    );
    assert!(
        shown.contains("~ password = (sensitive value) -> (known after apply)"),
        "{shown}"
    );
}
