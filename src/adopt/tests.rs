//! The mapping and its refusals, on a hand-written Terraform state of the old setup
//! (`tests/__fuzz__/terraform_state/corpus/old-setup.tfstate`, also a fuzz seed:
//! tenant retail-chain of the example specs, with its bucket named the old way,
//! `rag-docs-<id>`) and variations of it.

use serde_json::{Value, json};

use super::*;
use crate::spec::Specs;

fn specs() -> Specs {
    Specs::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs")).unwrap()
}

/// The example specs with `[naming] s3_bucket` set to the old setup's.
fn old_naming() -> Specs {
    let mut s = specs();
    s.platform.naming.s3_bucket = "rag-docs-{id}".into();
    s
}

fn fixture() -> Value {
    serde_json::from_str(include_str!(
        "../../tests/__fuzz__/terraform_state/corpus/old-setup.tfstate"
    ))
    .unwrap()
}

fn map(state: &Value, specs: &Specs, options: &AdoptOptions) -> Adoption {
    let bytes = serde_json::to_vec(state).unwrap();
    let tf = TerraformState::parse(&bytes, "old.tfstate").unwrap();
    map_terraform_state(&tf, "old.tfstate", specs, options).unwrap()
}

fn refusals(a: &Adoption) -> String {
    a.refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fixture's resource of `tf_type` in the tenant's module.
fn resource_mut<'a>(state: &'a mut Value, tf_type: &str) -> &'a mut Value {
    state["resources"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["type"] == tf_type && r.get("module").is_some())
        .unwrap()
}

#[test]
fn maps_every_object_of_a_tenant_module_by_type() {
    let a = map(&fixture(), &old_naming(), &AdoptOptions::default());
    assert!(a.refusals.is_empty(), "{}", refusals(&a));
    assert_eq!(a.lineage, "2c24d3cd-d3c3-4828-a8cc-4a73d75ff2c1");
    assert_eq!(a.serial, 17);
    let tenant: TenantId = "retail-chain".parse().unwrap();
    let objects = &a.tenants[&tenant];
    let addresses: Vec<String> = objects.iter().map(|o| o.address.local()).collect();
    assert_eq!(
        addresses,
        [
            "postgres_schema.main",
            "postgres_role.app",
            "postgres_schema_grant.app",
            "s3_bucket.documents",
            "s3_bucket_policy.documents",
            "iam_policy.documents_access",
            "iam_role.app",
            "iam_role_policy_attachment.documents_access",
        ]
    );
    let bucket = objects
        .iter()
        .find(|o| o.address.resource_type == ResourceType::S3Bucket)
        .unwrap();
    assert_eq!(bucket.id, "rag-docs-retail-chain");
    assert_eq!(
        bucket.terraform,
        [
            "module.tenant[\"retail-chain\"].aws_s3_bucket.documents",
            "module.tenant[\"retail-chain\"].aws_s3_bucket_lifecycle_configuration.documents",
            "module.tenant[\"retail-chain\"].aws_s3_bucket_public_access_block.documents",
            "module.tenant[\"retail-chain\"].aws_s3_bucket_versioning.documents",
        ]
    );
    let ignored: Vec<(&str, &str)> = a
        .ignored
        .iter()
        .map(|i| (i.terraform.as_str(), i.why.as_str()))
        .collect();
    assert_eq!(ignored.len(), 3, "{ignored:?}");
    assert!(
        ignored
            .iter()
            .any(|(t, w)| t.ends_with("data.aws_caller_identity.current")
                && w.contains("data source"))
    );
    assert!(
        ignored
            .iter()
            .any(|(t, w)| t.ends_with("random_password.db") && w.contains("new password"))
    );
    assert!(
        ignored
            .iter()
            .any(|(t, w)| *t == "aws_s3_bucket.state" && w.contains("outside"))
    );

    let record = a.record_for(&tenant, Utc::now());
    assert_eq!(record.lineage, a.lineage);
    assert_eq!(record.serial, 17);
    assert_eq!(record.objects.len(), 8);
    let report = AdoptionReport {
        adoption: a,
        plan: None,
        dry_run: false,
        committed: true,
    };
    let handover = report.handover();
    assert_eq!(handover.len(), 1);
    assert!(
        handover[0].starts_with("terraform state rm 'module.tenant[\"retail-chain\"].")
            && handover[0].matches("' '").count() == 10,
        "{}",
        handover[0]
    );
    let text = report.human(Style { color: false });
    assert!(
        !text.contains("not-a-real-secret"),
        "no secret of Terraform's is shown"
    );
    assert!(text.contains(&handover[0]), "{text}");
}

#[test]
fn a_name_the_spec_does_not_give_is_refused_with_the_setting_to_change() {
    let a = map(&fixture(), &specs(), &AdoptOptions::default());
    let text = refusals(&a);
    // The bucket, its parts and its policy all name the old bucket.
    assert_eq!(a.refusals.len(), 5, "{text}");
    assert!(
        text.contains("set [naming] s3_bucket = \"rag-docs-{id}\" in platform.toml"),
        "{text}"
    );
    assert!(text.contains("\"rag-docs-retail-chain\""), "{text}");

    let mut renamed = fixture();
    resource_mut(&mut renamed, "aws_iam_role")["instances"][0]["attributes"]["name"] =
        json!("legacy-app-role");
    let a = map(&renamed, &old_naming(), &AdoptOptions::default());
    let text = refusals(&a);
    assert!(
        text.contains("aws_iam_role.app") && text.contains("does not contain the tenant id"),
        "{text}"
    );
}

#[test]
fn tainted_deposed_unknown_and_doubled_objects_are_refused() {
    let mut state = fixture();
    let mut queue = resource_mut(&mut state, "aws_iam_role").clone();
    queue["type"] = json!("aws_sqs_queue");
    resource_mut(&mut state, "aws_iam_role")["instances"][0]["status"] = json!("tainted");
    resource_mut(&mut state, "aws_iam_policy")["instances"][0]["deposed"] = json!("00000001");
    let mut second_role = resource_mut(&mut state, "postgresql_role").clone();
    second_role["name"] = json!("readonly");
    let resources = state["resources"].as_array_mut().unwrap();
    resources.push(queue);
    resources.push(second_role);
    let a = map(&state, &old_naming(), &AdoptOptions::default());
    let text = refusals(&a);
    assert!(text.contains("aws_iam_role.app: tainted"), "{text}");
    assert!(
        text.contains("aws_iam_policy.documents_access: a deposed object"),
        "{text}"
    );
    assert!(
        text.contains("aws_sqs_queue.app: resource type aws_sqs_queue has no mapping"),
        "{text}"
    );
    assert!(
        text.contains("two Terraform objects map onto retail-chain/postgres_role.app"),
        "{text}"
    );
    assert_eq!(a.refusals.len(), 4, "{text}");
}

#[test]
fn tenants_without_a_spec_or_an_instance_are_refused_and_others_not_selected() {
    let mut state = fixture();
    let mut ghost = resource_mut(&mut state, "aws_iam_role").clone();
    ghost["module"] = json!("module.tenant[\"ghost\"]");
    state["resources"].as_array_mut().unwrap().push(ghost);
    let a = map(&state, &old_naming(), &AdoptOptions::default());
    assert!(
        refusals(&a).contains("tenant ghost has no spec: write specs/tenants/ghost.toml"),
        "{}",
        refusals(&a)
    );

    let only = AdoptOptions {
        tenants: vec![
            "retail-chain".parse().unwrap(),
            "education-platform".parse().unwrap(),
        ],
        ..AdoptOptions::default()
    };
    let a = map(&state, &old_naming(), &only);
    let text = refusals(&a);
    assert!(!text.contains("ghost"), "not selected: {text}");
    assert!(
        text.contains("no module instance of tenant education-platform (module.tenant[\"education-platform\"])"),
        "{text}"
    );

    let other_module = AdoptOptions {
        module_address: "module.customer_{id}".into(),
        ..AdoptOptions::default()
    };
    let a = map(&state, &old_naming(), &other_module);
    assert!(a.tenants.is_empty());
    assert!(
        refusals(&a)
            .contains("no managed object of a tenant module instance (module.customer_{id})"),
        "{}",
        refusals(&a)
    );
    let bytes = serde_json::to_vec(&state).unwrap();
    let tf = TerraformState::parse(&bytes, "s").unwrap();
    let bad = AdoptOptions {
        module_address: "module.tenant".into(),
        ..AdoptOptions::default()
    };
    let err = map_terraform_state(&tf, "s", &old_naming(), &bad).unwrap_err();
    assert!(err.to_string().contains("{id}"), "{err}");
}

#[test]
fn objects_some_state_already_holds_are_refused_naming_the_owner() {
    let a = map(&fixture(), &old_naming(), &AdoptOptions::default());
    let mut other = TenantState::new("education-platform".parse().unwrap());
    other.resources.insert(
        "s3_bucket.documents".into(),
        crate::state::ResourceState {
            resource_type: ResourceType::S3Bucket,
            name: "documents".into(),
            status: ResourceStatus::Created,
            attributes: Attributes::from([("bucket".into(), json!("rag-docs-retail-chain"))]),
            depends_on: Vec::new(),
            create_token: None,
        },
    );
    let found = conflicts(&a, std::slice::from_ref(&other));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .to_string()
            .contains("rag-docs-retail-chain already belongs to tenant education-platform"),
        "{}",
        found[0]
    );

    let mut own = TenantState::new("retail-chain".parse().unwrap());
    own.resources.insert(
        "iam_role.app".into(),
        crate::state::ResourceState {
            resource_type: ResourceType::IamRole,
            name: "app".into(),
            status: ResourceStatus::Created,
            attributes: Attributes::from([("name".into(), json!("rag-retail-chain-app"))]),
            depends_on: Vec::new(),
            create_token: None,
        },
    );
    let found = conflicts(&a, &[own]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .to_string()
            .contains("already managed by tenantform")
    );
}

/// The candidate state the engine makes: every adopted object as the spec names it,
/// with the record of where it came from.
fn candidate(a: &Adoption, tenant: &TenantId) -> TenantState {
    let mut state = TenantState::new(tenant.clone());
    for o in &a.tenants[tenant] {
        state.resources.insert(
            o.address.local(),
            crate::state::ResourceState {
                resource_type: o.address.resource_type,
                name: o.address.name.clone(),
                status: ResourceStatus::Created,
                attributes: o.desired.attributes.clone(),
                depends_on: o.desired.depends_on.clone(),
                create_token: None,
            },
        );
    }
    state.adopted_from = Some(a.record_for(tenant, Utc::now()));
    state
}

/// The plan of the candidate `state`'s tenant, with `read` as read back.
fn plan_candidate(
    specs: &Specs,
    state: &TenantState,
    read: &BTreeMap<String, Option<Attributes>>,
) -> crate::plan::TenantPlan {
    use crate::plan::{PlanMode, TenantInput, plan_tenant};
    let spec = &specs.tenants[&state.tenant];
    let blueprint = tenant_blueprint(spec, &specs.platform);
    plan_tenant(
        TenantInput {
            tenant: &state.tenant,
            spec: Some(spec),
            blueprint: Some(&blueprint),
            state: Some(state),
            refreshed: read,
            rotate: false,
        },
        PlanMode::Normal,
        &BTreeSet::new(),
    )
    .unwrap()
}

/// A plan of `tenants`, as the engine assembles it.
fn plan_of(tenants: Vec<crate::plan::TenantPlan>, aws_account_id: Option<&str>) -> Plan {
    Plan {
        format_version: crate::plan::PLAN_FORMAT_VERSION.into(),
        created_at: Utc::now(),
        mode: crate::plan::PlanMode::Normal,
        refreshed: true,
        tenants,
        policy: None,
        aws_account_id: aws_account_id.map(str::to_owned),
    }
}

#[test]
fn the_plan_may_update_and_create_but_never_delete_or_replace_what_is_adopted() {
    let specs = old_naming();
    let a = map(&fixture(), &specs, &AdoptOptions::default());
    let tenant: TenantId = "retail-chain".parse().unwrap();
    let state = candidate(&a, &tenant);
    // What was read back: the IAM policy with another description (IAM cannot change
    // it in place), the role as it is (no password: Terraform had it), and the bucket
    // policy gone.
    let mut read: BTreeMap<String, Option<Attributes>> = state
        .resources
        .iter()
        .map(|(k, r)| (k.clone(), Some(r.attributes.clone())))
        .collect();
    read.get_mut("iam_policy.documents_access")
        .unwrap()
        .as_mut()
        .unwrap()
        .insert("description".into(), json!("Bucket access"));
    read.insert("s3_bucket_policy.documents".into(), None);
    let tenant_plan = plan_candidate(&specs, &state, &read);
    let role = tenant_plan
        .changes
        .iter()
        .find(|c| c.address.local() == "postgres_role.app")
        .unwrap();
    assert_eq!(role.action, Action::Update, "the password is set anew");
    assert!(role.attribute_changes.iter().any(|c| c.name == "password"));
    let plan = plan_of(vec![tenant_plan], None);
    let refreshed = BTreeMap::from([(tenant.clone(), read)]);
    let found = plan_refusals(&a, &plan, &refreshed);
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 3, "{text:#?}");
    assert!(
        text.iter().any(|t| t.starts_with("retail-chain/iam_policy.documents_access: adopting it would replace it (description differs")),
        "{text:#?}"
    );
    // The bucket policy: gone at its endpoint, so the plan would create it again.
    assert!(
        text.iter().any(|t| t.starts_with("retail-chain/s3_bucket_policy.documents: Terraform's state names it, but its endpoint does not have it")),
        "{text:#?}"
    );
    // The attachment depends on the replaced policy, so it is replaced with it.
    assert!(
        text.iter().any(|t| t.starts_with(
            "retail-chain/iam_role_policy_attachment.documents_access: adopting it would replace it"
        )),
        "{text:#?}"
    );
}

#[test]
fn the_mapping_shows_the_account_the_plan_read_and_keeps_the_placeholder() {
    let a = map(&fixture(), &old_naming(), &AdoptOptions::default());
    let attachment = a
        .tenants
        .values()
        .flatten()
        .find(|o| o.address.resource_type == ResourceType::IamRolePolicyAttachment)
        .unwrap();
    assert!(
        attachment
            .id
            .contains("arn:aws:iam::{aws_account_id}:policy/"),
        "what is compared and recorded keeps the placeholder: {}",
        attachment.id
    );
    let report = |account: Option<&str>| AdoptionReport {
        adoption: a.clone(),
        plan: Some(plan_of(Vec::new(), account)),
        dry_run: true,
        committed: false,
    };
    let known = report(Some("123456789012"));
    let human = known.human(Style { color: false });
    let line = human
        .lines()
        .find(|l| l.contains("iam_role_policy_attachment.documents_access ("))
        .unwrap();
    assert!(
        line.contains("arn:aws:iam::123456789012:policy/rag-retail-chain-documents-access"),
        "{line}"
    );
    assert!(!human.contains("{aws_account_id}"), "{human}");
    let json = known.json().to_string();
    assert!(
        json.contains("arn:aws:iam::123456789012:policy/rag-retail-chain-documents-access"),
        "{json}"
    );
    assert!(!json.contains("{aws_account_id}"), "{json}");
    // Not known (no endpoint was read): the placeholder, not a made-up account.
    let human = report(None).human(Style { color: false });
    assert!(
        human.contains("arn:aws:iam::{aws_account_id}:policy/"),
        "{human}"
    );
}

#[test]
fn an_adopted_object_that_differs_from_the_spec_says_so_until_it_is_applied() {
    use crate::plan::ActionReason;
    let specs = old_naming();
    let a = map(&fixture(), &specs, &AdoptOptions::default());
    let tenant: TenantId = "retail-chain".parse().unwrap();
    let mut state = candidate(&a, &tenant);
    // As Terraform left it: the role with another description (changed in place).
    state
        .resources
        .get_mut("iam_role.app")
        .unwrap()
        .attributes
        .insert("description".into(), json!("Application role"));
    let read: BTreeMap<String, Option<Attributes>> = state
        .resources
        .iter()
        .map(|(k, r)| (k.clone(), Some(r.attributes.clone())))
        .collect();
    let plan = |state: &TenantState| plan_candidate(&specs, state, &read);
    let role = |p: &crate::plan::TenantPlan| {
        p.changes
            .iter()
            .find(|c| c.address.local() == "iam_role.app")
            .unwrap()
            .clone()
    };
    let adopted = plan(&state);
    let change = role(&adopted);
    assert_eq!(change.action, Action::Update);
    assert_eq!(
        change.reason,
        ActionReason::Adopted {
            from: "Terraform".into(),
            attributes: vec!["description".into()],
        }
    );
    let rendered = plan_of(vec![adopted], None);
    let human = crate::plan::render::human(&rendered, Style { color: false });
    assert!(
        human.contains(
            "retail-chain/iam_role.app will be updated in place (adopted from Terraform; differs from the spec in description)"
        ),
        "{human}"
    );
    let json = crate::plan::render::json(&rendered);
    let entry = json["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "retail-chain/iam_role.app")
        .unwrap();
    assert_eq!(
        entry["reason"],
        json!({
            "kind": "adopted",
            "from": "Terraform",
            "attributes": ["description"],
            "description": "adopted from Terraform; differs from the spec in description",
        })
    );
    // Once applied, a difference is the spec's again.
    state.applied_spec = Some((&specs.tenants[&tenant]).into());
    assert_eq!(role(&plan(&state)).reason, ActionReason::SpecChanged);
    // A resource tenantform created says the spec changed, as before.
    state.applied_spec = None;
    state.adopted_from = None;
    assert_eq!(role(&plan(&state)).reason, ActionReason::SpecChanged);
}
