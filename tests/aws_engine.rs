//! The engine against a real AWS API endpoint (moto_server): the AWS part of tenants
//! created, read back with the SDK, left alone when nothing changed, repaired after
//! drift, destroyed completely, and rolled back when a name is taken.
//!
//! Every test uses its own tenant ids, so bucket, role and cluster names never collide
//! on the shared endpoint and the tests run in parallel.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::*;
use tenantform::apply::StepOutcome;
use tenantform::connect::aws::moto_quirks;
use tenantform::plan::{Action, ActionReason, render};
use tenantform::{ApplyOptions, ApplyReport, Engine, Plan, PlanMode, PlanOptions, TenantOutcome};

const ACCOUNT: &str = "123456789012";

fn bucket_of(t: &TenantDef) -> String {
    format!("rag-{}-documents", t.id)
}

fn role_of(t: &TenantDef) -> String {
    format!("rag-{}-app", t.id)
}

fn policy_arn_of(t: &TenantDef) -> String {
    format!(
        "arn:aws:iam::{ACCOUNT}:policy/rag-{}-documents-access",
        t.id
    )
}

fn gold(prefix: &str) -> TenantDef {
    let mut t = TenantDef::new(prefix, "gold");
    t.budget_inr = 1_500_000;
    t
}

async fn apply(engine: &Engine, mode: PlanMode) -> (Plan, Option<ApplyReport>) {
    let options = PlanOptions {
        mode,
        ..PlanOptions::default()
    };
    engine
        .plan_and_apply(&options, &ApplyOptions::default(), |_| true, None)
        .await
        .expect("plan and apply run")
}

#[track_caller]
fn assert_succeeded(report: &ApplyReport) {
    let errors: Vec<String> = report
        .tenants
        .iter()
        .filter_map(|t| t.first_error())
        .collect();
    assert!(report.succeeded(), "apply failed: {errors:#?}");
}

async fn plan(engine: &Engine) -> Plan {
    engine.plan(&PlanOptions::default()).await.expect("plan")
}

fn change<'a>(plan: &'a Plan, address: &str) -> &'a tenantform::plan::ResourceChange {
    plan.changes()
        .find(|c| c.address.to_string() == address)
        .unwrap_or_else(|| panic!("{address} not in the plan"))
}

/// Tags as a map, from any SDK's tag list, without the tag that carries the token of
/// the create that made the object (not one of the resource's tags).
fn tags<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> =
        pairs.map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let token = all.remove(tenantform::provider::aws::CREATE_TOKEN_TAG);
    assert!(
        token.is_none_or(|t| t.parse::<uuid::Uuid>().is_ok()),
        "a create token that is not one among the tags {all:?}"
    );
    all
}

fn expected_tags(t: &TenantDef, tier: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("TenantID".to_owned(), t.id.clone()),
        ("Tier".to_owned(), tier.to_owned()),
        ("CostCenter".to_owned(), "CC-TEST".to_owned()),
        ("ManagedBy".to_owned(), "tenantform".to_owned()),
        ("Platform".to_owned(), "rag-platform".to_owned()),
    ])
}

async fn bucket_exists(s3: &aws_sdk_s3::Client, bucket: &str) -> bool {
    s3.head_bucket().bucket(bucket).send().await.is_ok()
}

async fn versioning(s3: &aws_sdk_s3::Client, bucket: &str) -> String {
    match s3.get_bucket_versioning().bucket(bucket).send().await {
        Ok(o) => o
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        Err(e) => {
            let raw = e.raw_response().expect("an answer");
            moto_quirks::versioning_status_from_unparsed_body(
                raw.status().as_u16(),
                raw.body().bytes().unwrap_or_default(),
            )
            .expect("moto's GetBucketVersioning answer")
        }
    }
}

async fn role_exists(iam: &aws_sdk_iam::Client, name: &str) -> bool {
    iam.get_role().role_name(name).send().await.is_ok()
}

async fn policy_exists(iam: &aws_sdk_iam::Client, arn: &str) -> bool {
    iam.get_policy().policy_arn(arn).send().await.is_ok()
}

/// Whether the cluster exists and is not being deleted.
async fn cluster_alive(ec: &aws_sdk_elasticache::Client, id: &str) -> bool {
    match ec
        .describe_cache_clusters()
        .cache_cluster_id(id)
        .send()
        .await
    {
        Ok(o) => o.cache_clusters().iter().any(|c| {
            !moto_quirks::cluster_status_means_gone(c.cache_cluster_status().unwrap_or(""))
        }),
        Err(_) => false,
    }
}

fn decode(doc: &str) -> Value {
    let text = percent_encoding::percent_decode_str(doc)
        .decode_utf8_lossy()
        .into_owned();
    serde_json::from_str(&text).expect("a JSON policy document")
}

#[tokio::test]
async fn apply_creates_the_aws_part_and_a_second_run_changes_nothing() {
    let g = gold("aws-gold");
    let mut s = TenantDef::new("aws-silver", "silver");
    s.region = "eu-west-1".into();
    let b = TenantDef::new("aws-bronze", "bronze");
    let ws = Workspace::new(&[g.clone(), s.clone(), b.clone()]).await;
    let engine = engine(&ws, None).await;

    let (first, report) = apply(&engine, PlanMode::Normal).await;
    assert_succeeded(&report.expect("changes applied"));
    // Every tenant's resources, and the Gold tenant's cache.
    assert_eq!(first.count(Action::Create), 3 * PER_TENANT + 1);

    let iam = iam_client().await;
    for (t, tier, region, glacier) in [
        (&g, "Gold", "us-east-1", 90),
        (&s, "Silver", "eu-west-1", 60),
        (&b, "Bronze", "us-east-1", 30),
    ] {
        let s3 = s3_client(region).await;
        let bucket = bucket_of(t);
        let location = s3
            .get_bucket_location()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let location = location
            .location_constraint()
            .map(|c| c.as_str())
            .unwrap_or("");
        assert!(
            location == region || (location.is_empty() && region == "us-east-1"),
            "{bucket} in {location:?}"
        );
        assert_eq!(versioning(&s3, &bucket).await, "Enabled", "{bucket}");
        let tagging = s3
            .get_bucket_tagging()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        assert_eq!(
            tags(tagging.tag_set().iter().map(|t| (t.key(), t.value()))),
            expected_tags(t, tier)
        );

        let lifecycle = s3
            .get_bucket_lifecycle_configuration()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let transitions: Vec<(i32, String)> = lifecycle.rules()[0]
            .transitions()
            .iter()
            .map(|t| {
                (
                    t.days().unwrap(),
                    t.storage_class().unwrap().as_str().to_owned(),
                )
            })
            .collect();
        assert!(
            transitions.contains(&(glacier, "GLACIER".to_owned())),
            "{bucket}: {transitions:?}"
        );
        assert_eq!(
            transitions.iter().any(|(_, c)| c == "STANDARD_IA"),
            glacier >= 60,
            "{bucket}"
        );

        let pab = s3
            .get_public_access_block()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let pab = pab.public_access_block_configuration().unwrap();
        assert_eq!(
            (
                pab.block_public_acls(),
                pab.ignore_public_acls(),
                pab.block_public_policy(),
                pab.restrict_public_buckets()
            ),
            (Some(true), Some(true), Some(true), Some(true))
        );

        // The policy only allows, and only the tenant's role: the bucket and its objects.
        let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{}", role_of(t));
        let policy = s3.get_bucket_policy().bucket(&bucket).send().await.unwrap();
        let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2, "{policy}");
        for st in statements {
            assert_eq!(st["Effect"], "Allow", "{st}");
            assert_eq!(st["Principal"]["AWS"], role_arn, "{st}");
        }
        assert_eq!(
            statements
                .iter()
                .map(|st| st["Resource"].clone())
                .collect::<Vec<_>>(),
            vec![
                json!([format!("arn:aws:s3:::{bucket}")]),
                json!([format!("arn:aws:s3:::{bucket}/*")])
            ]
        );

        let role = iam.get_role().role_name(role_of(t)).send().await.unwrap();
        let role = role.role().unwrap();
        let trust = decode(role.assume_role_policy_document().unwrap());
        assert_eq!(
            trust["Statement"][0]["Principal"]["Service"],
            "ecs-tasks.amazonaws.com"
        );
        let role_tags = iam
            .list_role_tags()
            .role_name(role_of(t))
            .send()
            .await
            .unwrap();
        assert_eq!(
            tags(role_tags.tags().iter().map(|t| (t.key(), t.value()))),
            expected_tags(t, tier)
        );

        let policy = iam
            .get_policy()
            .policy_arn(policy_arn_of(t))
            .send()
            .await
            .unwrap();
        let version = policy
            .policy()
            .unwrap()
            .default_version_id()
            .unwrap()
            .to_owned();
        let doc = iam
            .get_policy_version()
            .policy_arn(policy_arn_of(t))
            .version_id(version)
            .send()
            .await
            .unwrap();
        let doc = decode(doc.policy_version().unwrap().document().unwrap());
        let resources: Vec<String> = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|st| {
                st["Resource"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
            })
            .collect();
        assert_eq!(
            resources,
            vec![
                format!("arn:aws:s3:::{bucket}"),
                format!("arn:aws:s3:::{bucket}/*"),
                // Its own credentials secret, whatever the suffix AWS gives its ARN.
                format!(
                    "arn:aws:secretsmanager:{}:{ACCOUNT}:secret:rag-{}-credentials-??????",
                    t.region, t.id
                ),
            ]
        );
        let policy_tags = iam
            .list_policy_tags()
            .policy_arn(policy_arn_of(t))
            .send()
            .await
            .unwrap();
        assert_eq!(
            tags(policy_tags.tags().iter().map(|t| (t.key(), t.value()))),
            expected_tags(t, tier)
        );

        let attached = iam
            .list_attached_role_policies()
            .role_name(role_of(t))
            .send()
            .await
            .unwrap();
        let attached: Vec<&str> = attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn())
            .collect();
        assert_eq!(attached, vec![policy_arn_of(t).as_str()]);

        let ec = elasticache_client(region).await;
        assert_eq!(
            cluster_alive(&ec, &format!("rag-{}", t.id)).await,
            tier == "Gold",
            "{}",
            t.id
        );
    }

    // The Gold cluster: node type from the tier catalog, tagged, its endpoint an output.
    let ec = elasticache_client("us-east-1").await;
    let cluster_id = format!("rag-{}", g.id);
    let clusters = ec
        .describe_cache_clusters()
        .cache_cluster_id(&cluster_id)
        .send()
        .await
        .unwrap();
    let cluster = &clusters.cache_clusters()[0];
    assert_eq!(cluster.cache_node_type(), Some("cache.r6g.large"));
    assert_eq!(cluster.engine(), Some("redis"));
    let cluster_tags = ec
        .list_tags_for_resource()
        .resource_name(cluster.arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags(
            cluster_tags
                .tag_list()
                .iter()
                .map(|t| (t.key().unwrap(), t.value().unwrap()))
        ),
        expected_tags(&g, "Gold")
    );
    let state = engine
        .states(&[g.id.parse().unwrap()])
        .await
        .unwrap()
        .remove(0);
    let outputs = engine.outputs(&state);
    assert_eq!(outputs["cache_cluster_id"].value, json!(cluster_id));
    assert!(outputs.contains_key("cache_endpoint"), "{outputs:?}");
    assert_eq!(outputs["s3_bucket"].value, json!(bucket_of(&g)));
    assert_eq!(
        outputs["iam_role_arn"].value,
        json!(format!("arn:aws:iam::{ACCOUNT}:role/{}", role_of(&g)))
    );

    // Read back from the endpoint, nothing differs; a second apply calls nothing that
    // changes anything.
    let again = plan(&engine).await;
    assert!(again.refreshed);

    // The views of a plan that read the endpoints show ARNs in the real account, as
    // Terraform does; the plan's values (and so state) keep the placeholder.
    assert_eq!(first.aws_account_id.as_deref(), Some(ACCOUNT));
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{}", role_of(&g));
    let human = render::human(&first, render::Style { color: false });
    let document = render::json(&first).to_string();
    for view in [&human, &document] {
        assert!(view.contains(&role_arn), "{view}");
        assert!(!view.contains("{aws_account_id}"), "{view}");
    }
    let stored = serde_json::to_string(&first).unwrap();
    assert!(
        stored.contains("{aws_account_id}"),
        "the plan keeps the placeholder"
    );
    assert!(!stored.contains(&role_arn));
    let changed: Vec<String> = again
        .changes()
        .filter(|c| c.action.is_change())
        .map(|c| format!("{} {:?} {:?}", c.address, c.action, c.attribute_changes))
        .collect();
    assert!(changed.is_empty(), "{changed:#?}");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = engine_with_counter(&ws, calls.clone()).await;
    let (_, report) = apply(&counted, PlanMode::Normal).await;
    assert!(report.is_none(), "nothing to apply");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no create, update or delete call"
    );
}

async fn engine_with_counter(ws: &Workspace, calls: Arc<AtomicUsize>) -> Engine {
    engine(ws, Some(calls)).await
}

#[tokio::test]
async fn drift_is_planned_as_the_right_action_and_apply_repairs_it() {
    let t = TenantDef::new("aws-drift", "silver");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    let engine = engine(&ws, None).await;
    assert_succeeded(&apply(&engine, PlanMode::Normal).await.1.unwrap());

    let s3 = s3_client("us-east-1").await;
    let iam = iam_client().await;
    let bucket = bucket_of(&t);
    // Behind the engine's back: the bucket is deleted (and its policy with it), a role
    // tag changed, the IAM policy's document edited.
    s3.delete_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
    iam.tag_role()
        .role_name(role_of(&t))
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("CostCenter")
                .value("CC-STOLEN")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let widened = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
    iam.create_policy_version()
        .policy_arn(policy_arn_of(&t))
        .policy_document(widened.to_string())
        .set_as_default(true)
        .send()
        .await
        .unwrap();

    let p = plan(&engine).await;
    let id = &t.id;
    let bucket_change = change(&p, &format!("{id}/s3_bucket.documents"));
    assert_eq!(
        (bucket_change.action, &bucket_change.reason),
        (Action::Create, &ActionReason::DeletedOutsideTenantform)
    );
    let policy_change = change(&p, &format!("{id}/s3_bucket_policy.documents"));
    assert_eq!(policy_change.action, Action::Create);
    let role_change = change(&p, &format!("{id}/iam_role.app"));
    assert_eq!(
        (role_change.action, &role_change.reason),
        (Action::Update, &ActionReason::Drifted)
    );
    assert_eq!(
        role_change
            .attribute_changes
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        vec!["tags"]
    );
    let doc_change = change(&p, &format!("{id}/iam_policy.documents_access"));
    assert_eq!(
        (doc_change.action, &doc_change.reason),
        (Action::Update, &ActionReason::Drifted)
    );
    assert_eq!(
        doc_change
            .attribute_changes
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        vec!["document"]
    );
    assert_eq!(
        p.count(Action::Create) + p.count(Action::Update),
        4,
        "nothing else changes"
    );

    assert_succeeded(&apply(&engine, PlanMode::Normal).await.1.unwrap());
    assert!(bucket_exists(&s3, &bucket).await);
    assert_eq!(versioning(&s3, &bucket).await, "Enabled");
    assert!(s3.get_bucket_policy().bucket(&bucket).send().await.is_ok());
    let role_tags = iam
        .list_role_tags()
        .role_name(role_of(&t))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags(role_tags.tags().iter().map(|t| (t.key(), t.value())))["CostCenter"],
        "CC-TEST"
    );
    let policy = iam
        .get_policy()
        .policy_arn(policy_arn_of(&t))
        .send()
        .await
        .unwrap();
    let version = policy
        .policy()
        .unwrap()
        .default_version_id()
        .unwrap()
        .to_owned();
    let doc = iam
        .get_policy_version()
        .policy_arn(policy_arn_of(&t))
        .version_id(version)
        .send()
        .await
        .unwrap();
    let doc = decode(doc.policy_version().unwrap().document().unwrap());
    assert_ne!(
        doc["Statement"][0]["Action"], "s3:*",
        "the widened document is replaced"
    );
    assert!(!plan(&engine).await.has_changes(), "converged");
}

#[tokio::test]
async fn destroy_removes_everything_even_a_versioned_bucket_with_objects_and_twice_is_fine() {
    let t = gold("aws-destroy");
    let keep = TenantDef::new("aws-keep", "bronze");
    let ws = Workspace::new(&[t.clone(), keep.clone()]).await;
    let engine = engine(&ws, None).await;
    assert_succeeded(&apply(&engine, PlanMode::Normal).await.1.unwrap());

    // Several versions of one key, a delete marker, and another object, written with
    // the platform's admin credentials, which the bucket policy does not shut out.
    let s3 = s3_client("us-east-1").await;
    let bucket = bucket_of(&t);
    for body in ["v1", "v2", "v3"] {
        s3.put_object()
            .bucket(&bucket)
            .key("doc.txt")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    s3.delete_object()
        .bucket(&bucket)
        .key("doc.txt")
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("other/readme.md")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();
    let versions = s3
        .list_object_versions()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (versions.versions().len(), versions.delete_markers().len()),
        (4, 1)
    );

    let only = PlanOptions {
        tenants: vec![t.id.parse().unwrap()],
        mode: PlanMode::Destroy,
        ..PlanOptions::default()
    };
    let (plan, report) = engine
        .plan_and_apply(&only, &ApplyOptions::default(), |_| true, None)
        .await
        .unwrap();
    assert_succeeded(&report.unwrap());
    assert_eq!(plan.count(Action::Delete), PER_TENANT + 1);

    let iam = iam_client().await;
    assert!(!bucket_exists(&s3, &bucket).await, "bucket gone");
    assert!(!role_exists(&iam, &role_of(&t)).await, "role gone");
    assert!(
        !policy_exists(&iam, &policy_arn_of(&t)).await,
        "policy gone"
    );
    let ec = elasticache_client("us-east-1").await;
    assert!(
        !cluster_alive(&ec, &format!("rag-{}", t.id)).await,
        "cluster gone"
    );
    assert!(!ws.state_file(&t.id).exists());
    // A later bucket of the same name starts without tags: none of the destroyed
    // bucket's (moto would otherwise hand them on, its create token among them).
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let inherited = s3.get_bucket_tagging().bucket(&bucket).send().await;
    assert!(
        inherited.is_err(),
        "the new bucket carries the old one's tags: {inherited:?}"
    );
    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
    // The other tenant is untouched.
    assert!(bucket_exists(&s3, &bucket_of(&keep)).await);
    assert!(role_exists(&iam, &role_of(&keep)).await);

    // Twice: nothing left to do.
    let (plan, report) = engine
        .plan_and_apply(&only, &ApplyOptions::default(), |_| true, None)
        .await
        .unwrap();
    assert!(!plan.has_changes() && report.is_none());

    // Resources already deleted by hand are fine too: detach and delete the other
    // tenant's role and bucket policy behind the engine's back, then destroy.
    iam.detach_role_policy()
        .role_name(role_of(&keep))
        .policy_arn(policy_arn_of(&keep))
        .send()
        .await
        .unwrap();
    iam.delete_role()
        .role_name(role_of(&keep))
        .send()
        .await
        .unwrap();
    s3.delete_bucket_policy()
        .bucket(bucket_of(&keep))
        .send()
        .await
        .unwrap();
    let all = PlanOptions {
        mode: PlanMode::Destroy,
        refresh: false,
        ..PlanOptions::default()
    };
    let (_, report) = engine
        .plan_and_apply(&all, &ApplyOptions::default(), |_| true, None)
        .await
        .unwrap();
    assert_succeeded(&report.unwrap());
    assert!(!bucket_exists(&s3, &bucket_of(&keep)).await);
    assert!(!policy_exists(&iam, &policy_arn_of(&keep)).await);
}

/// A deleted cluster stays listed as `deleting` a while, its id taken (minutes on AWS,
/// 10 s in the local stack). A Gold tenant whose cluster was just deleted gets it back on
/// the next apply: the create waits for the id rather than failing on "already exists".
#[tokio::test]
async fn a_cluster_id_held_by_a_deletion_is_waited_for_not_refused() {
    let t = gold("aws-again");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let ec = elasticache_client(&t.region).await;
    let id = format!("rag-{}", t.id);
    ec.delete_cache_cluster()
        .cache_cluster_id(&id)
        .send()
        .await
        .unwrap();
    assert!(!cluster_alive(&ec, &id).await);

    let out = ws
        .command(&["apply", "--auto-approve"])
        .env("TENANTFORM_LOG", "info")
        .output()
        .unwrap();
    let again = Run::from(out);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again
            .all()
            .contains("waiting for a cluster being deleted to free its id"),
        "the create did not meet the deleting cluster:\n{}",
        again.all()
    );
    assert!(cluster_alive(&ec, &id).await);
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    ws.run(&["destroy", "--auto-approve"]).ok();
}

#[tokio::test]
async fn a_bucket_name_taken_by_someone_else_rolls_the_new_tenant_back_completely() {
    let t = TenantDef::new("aws-taken", "silver");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    let s3 = s3_client("us-east-1").await;
    let bucket = bucket_of(&t);
    // Someone else's bucket, with their data in it.
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("theirs.txt")
        .body(b"keep me".to_vec().into())
        .send()
        .await
        .unwrap();

    let engine = engine(&ws, None).await;
    let (_, report) = apply(&engine, PlanMode::Normal).await;
    let report = report.unwrap();
    let tenant = &report.tenants[0];
    assert_eq!(tenant.outcome, TenantOutcome::RolledBack);
    let error = tenant.first_error().unwrap();
    // The address, and the bucket in S3's words next to it.
    assert!(
        error.starts_with(&format!("{}/s3_bucket.documents ({bucket}): ", t.id)),
        "{error}"
    );
    assert!(
        error.contains(&bucket) && error.contains("already exists"),
        "{error}"
    );
    let codes: Vec<&str> = tenant
        .steps
        .iter()
        .filter_map(|s| match &s.outcome {
            StepOutcome::Failed { code, .. } => Some(code.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec!["AlreadyExists"]);

    // Nothing of the tenant is left: no state, no role, no policy, no schema.
    assert!(!ws.state_file(&t.id).exists());
    let iam = iam_client().await;
    assert!(!role_exists(&iam, &role_of(&t)).await);
    assert!(!policy_exists(&iam, &policy_arn_of(&t)).await);
    let schema = ws
        .admin()
        .await
        .query(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&t.pg_name()],
        )
        .await
        .unwrap();
    assert!(schema.is_empty(), "the PostgreSQL part is rolled back too");
    // The foreign bucket is untouched.
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key("theirs.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(
        object.body.collect().await.unwrap().into_bytes().as_ref(),
        b"keep me"
    );
    assert!(
        s3.get_bucket_policy().bucket(&bucket).send().await.is_err(),
        "no policy was put on it"
    );
}

#[tokio::test]
async fn a_tier_change_updates_in_place_and_a_new_bucket_name_replaces_the_bucket() {
    let mut t = TenantDef::new("aws-change", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    let engine = engine(&ws, None).await;
    assert_succeeded(&apply(&engine, PlanMode::Normal).await.1.unwrap());

    t.tier = "silver".into();
    ws.write_tenant(&t);
    let p = plan(&engine).await;
    let bucket = change(&p, &format!("{}/s3_bucket.documents", t.id));
    assert_eq!(bucket.action, Action::Update);
    let names: Vec<&str> = bucket
        .attribute_changes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, vec!["lifecycle_rules", "tags"]);
    assert_succeeded(&apply(&engine, PlanMode::Normal).await.1.unwrap());
    let s3 = s3_client("us-east-1").await;
    let tagging = s3
        .get_bucket_tagging()
        .bucket(bucket_of(&t))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags(tagging.tag_set().iter().map(|t| (t.key(), t.value())))["Tier"],
        "Silver"
    );

    // A bucket cannot be renamed: the plan replaces it, and its policy with it.
    ws.edit_platform(|p| {
        p.replace(
            "s3_bucket = \"rag-{id}-documents\"",
            "s3_bucket = \"rag-{id}-docs\"\nrenamed_from = { s3_bucket = [\"rag-{id}-documents\"] }",
        )
    });
    let p = plan(&engine).await;
    let bucket = change(&p, &format!("{}/s3_bucket.documents", t.id));
    assert_eq!(bucket.action, Action::Replace);
    assert!(
        bucket
            .attribute_changes
            .iter()
            .any(|a| a.name == "bucket" && a.forces_replacement)
    );
    let policy = change(&p, &format!("{}/s3_bucket_policy.documents", t.id));
    assert_eq!(policy.action, Action::Replace);
    assert_succeeded(&apply(&engine, PlanMode::Normal).await.1.unwrap());
    let renamed = format!("rag-{}-docs", t.id);
    assert!(bucket_exists(&s3, &renamed).await);
    assert!(
        !bucket_exists(&s3, &bucket_of(&t)).await,
        "the old bucket is gone"
    );
    assert!(s3.get_bucket_policy().bucket(&renamed).send().await.is_ok());
    assert!(!plan(&engine).await.has_changes());
}

#[tokio::test]
async fn twenty_tenants_in_one_run_with_parallelism_ten_all_converge() {
    let tenants: Vec<TenantDef> = (0..20)
        .map(|i| TenantDef::new(&format!("aws-many{i}"), "bronze"))
        .collect();
    let ws = Workspace::new(&tenants).await;
    let engine = engine(&ws, None).await;
    let options = ApplyOptions {
        parallelism: 10,
        ..ApplyOptions::default()
    };
    let (plan, report) = engine
        .plan_and_apply(&PlanOptions::default(), &options, |_| true, None)
        .await
        .unwrap();
    assert_succeeded(&report.unwrap());
    assert_eq!(plan.count(Action::Create), 20 * PER_TENANT);
    let s3 = s3_client("us-east-1").await;
    for t in &tenants {
        assert!(bucket_exists(&s3, &bucket_of(t)).await, "{}", t.id);
    }
    assert!(
        !engine
            .plan(&PlanOptions::default())
            .await
            .unwrap()
            .has_changes()
    );
    let all = PlanOptions {
        mode: PlanMode::Destroy,
        ..PlanOptions::default()
    };
    let (_, report) = engine
        .plan_and_apply(&all, &options, |_| true, None)
        .await
        .unwrap();
    assert_succeeded(&report.unwrap());
    for t in &tenants {
        assert!(!bucket_exists(&s3, &bucket_of(t)).await, "{}", t.id);
    }
}

/// The error code and HTTP status of a refused S3 call.
#[track_caller]
fn refusal<O: std::fmt::Debug, E: aws_sdk_s3::error::ProvideErrorMetadata>(
    result: Result<O, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> (String, u16) {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let e = result.expect_err(
        "allowed, but should be refused (is moto running with IAM enforcement, from scripts/stack?)",
    );
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (e.code().unwrap_or_default().to_owned(), status)
}

async fn object_text(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let o = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    String::from_utf8(o.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn a_tenants_role_can_use_its_own_bucket_and_is_refused_anothers() {
    use tenantform::connect::aws::AwsClients;

    let a = TenantDef::new("aws-iso-a", "bronze");
    let mut b = TenantDef::new("aws-iso-b", "silver");
    b.region = "eu-west-1".into();
    let ws = Workspace::new(&[a.clone(), b.clone()]).await;
    // Validation checks take on the tenant's role with the engine's own credentials:
    // the example platform file's trusted_principals names the stack's engine user.
    let aws = AwsClients::new(aws_config().await);
    let engine_arn = aws
        .caller_arn()
        .await
        .unwrap()
        .replace(ACCOUNT, "{aws_account_id}");
    assert!(
        std::fs::read_to_string(ws.platform_path())
            .unwrap()
            .contains(&format!("trusted_principals = [\"{engine_arn}\"]")),
        "platform.toml trusts {engine_arn}"
    );
    let engine = engine(&ws, None).await;
    assert_succeeded(&apply(&engine, PlanMode::Normal).await.1.unwrap());
    assert!(
        !plan(&engine).await.has_changes(),
        "the trust policy reads back the same"
    );

    let (bucket_a, bucket_b) = (bucket_of(&a), bucket_of(&b));
    let admin_a = s3_client("us-east-1").await;
    let admin_b = s3_client("eu-west-1").await;
    admin_b
        .put_object()
        .bucket(&bucket_b)
        .key("b-only.txt")
        .body(b"tenant b's".to_vec().into())
        .send()
        .await
        .unwrap();

    let role_a = aws
        .assume_tenant_role(
            &format!("arn:aws:iam::{ACCOUNT}:role/{}", role_of(&a)),
            "validation-s3",
        )
        .await
        .expect("the engine may assume the tenant's role");
    assert_eq!(
        role_a.session_arn(),
        format!(
            "arn:aws:sts::{ACCOUNT}:assumed-role/{}/validation-s3",
            role_of(&a)
        )
    );
    let (s3_a, s3_b) = (role_a.s3("us-east-1"), role_a.s3("eu-west-1"));

    // Its own bucket: put, get, list, delete.
    s3_a.put_object()
        .bucket(&bucket_a)
        .key("probe.txt")
        .body(b"tenant a's".to_vec().into())
        .send()
        .await
        .expect("the role puts into its own bucket");
    assert_eq!(
        object_text(&s3_a, &bucket_a, "probe.txt").await,
        "tenant a's"
    );
    let listed = s3_a
        .list_objects_v2()
        .bucket(&bucket_a)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(1));
    s3_a.delete_object()
        .bucket(&bucket_a)
        .key("probe.txt")
        .send()
        .await
        .expect("the role deletes in its own bucket");
    assert_eq!(
        refusal(
            s3_a.get_object()
                .bucket(&bucket_a)
                .key("probe.txt")
                .send()
                .await
        ),
        ("NoSuchKey".to_owned(), 404),
        "deleted"
    );

    // Another tenant's bucket: an existing object cannot be read, none can be written.
    let denied = ("AccessDenied".to_owned(), 403);
    assert_eq!(
        refusal(
            s3_b.get_object()
                .bucket(&bucket_b)
                .key("b-only.txt")
                .send()
                .await
        ),
        denied
    );
    assert_eq!(
        refusal(
            s3_b.put_object()
                .bucket(&bucket_b)
                .key("from-a.txt")
                .body(b"x".to_vec().into())
                .send()
                .await
        ),
        denied
    );
    assert_eq!(
        refusal(
            s3_b.delete_object()
                .bucket(&bucket_b)
                .key("b-only.txt")
                .send()
                .await
        ),
        denied
    );
    assert_eq!(
        refusal(s3_b.list_objects_v2().bucket(&bucket_b).send().await),
        denied
    );
    // Nor anything else: the role is not an admin.
    assert_eq!(
        refusal(s3_a.delete_bucket_policy().bucket(&bucket_a).send().await),
        denied
    );

    // The other way round, too.
    let role_b = aws
        .assume_tenant_role(
            &format!("arn:aws:iam::{ACCOUNT}:role/{}", role_of(&b)),
            "validation-s3",
        )
        .await
        .unwrap();
    admin_a
        .put_object()
        .bucket(&bucket_a)
        .key("a-only.txt")
        .body(b"tenant a's".to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        refusal(
            role_b
                .s3("us-east-1")
                .get_object()
                .bucket(&bucket_a)
                .key("a-only.txt")
                .send()
                .await
        ),
        denied
    );
    assert_eq!(
        object_text(&role_b.s3("eu-west-1"), &bucket_b, "b-only.txt").await,
        "tenant b's"
    );

    // The platform's admin credentials still reach both buckets.
    assert_eq!(
        object_text(&admin_a, &bucket_a, "a-only.txt").await,
        "tenant a's"
    );
    assert_eq!(
        object_text(&admin_b, &bucket_b, "b-only.txt").await,
        "tenant b's"
    );
    assert!(
        admin_b
            .head_object()
            .bucket(&bucket_b)
            .key("from-a.txt")
            .send()
            .await
            .is_err(),
        "the refused put wrote nothing"
    );
    admin_a
        .delete_object()
        .bucket(&bucket_a)
        .key("a-only.txt")
        .send()
        .await
        .unwrap();
}

/// Wrong or missing AWS credentials stop an apply before its first change, with the
/// service's own reason, instead of half an apply rolled back (the PostgreSQL and Redis
/// parts need no AWS and would go first).
#[tokio::test]
async fn wrong_or_missing_aws_credentials_stop_the_apply_before_any_change() {
    let t = TenantDef::new("aws-nocreds", "bronze");
    let mut ws = Workspace::new(std::slice::from_ref(&t)).await;

    ws.set_env(
        "AWS_SECRET_ACCESS_KEY",
        "not-the-secret-of-this-key-0000000000",
    );
    let run = ws.run(&["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("the apply changed nothing")
            && run.stderr.contains("SignatureDoesNotMatch"),
        "the refusal keeps AWS's reason: {}",
        run.stderr
    );
    assert!(
        !run.stdout.contains("Creating...") && !run.stderr.contains("Creating..."),
        "{}",
        run.stdout
    );
    assert!(ws.state_bytes(&t.id).is_none(), "no state was written");
    assert!(!schema_exists(&ws, &t).await, "PostgreSQL was not touched");

    ws.set_env("AWS_ACCESS_KEY_ID", "");
    ws.set_env("AWS_SECRET_ACCESS_KEY", "");
    ws.set_env("AWS_PROFILE", "no-such-profile-here");
    ws.set_env("AWS_CONFIG_FILE", "/nonexistent/aws-config");
    ws.set_env(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/aws-credentials",
    );
    ws.set_env("AWS_EC2_METADATA_DISABLED", "true");
    let run = ws.run(&["apply", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("no AWS credentials") && run.stderr.contains("AWS_ACCESS_KEY_ID"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("DispatchFailure") && !run.stderr.contains("SdkBody"),
        "no raw SDK dump: {}",
        run.stderr
    );
    assert!(ws.state_bytes(&t.id).is_none(), "no state was written");
    assert!(!schema_exists(&ws, &t).await, "PostgreSQL was not touched");
}

async fn schema_exists(ws: &Workspace, t: &TenantDef) -> bool {
    !ws.admin()
        .await
        .query(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&t.pg_name()],
        )
        .await
        .unwrap()
        .is_empty()
}
