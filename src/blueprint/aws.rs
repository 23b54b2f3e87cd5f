//! The tenant's AWS part: a documents bucket with its policy, an IAM policy scoped to
//! that bucket, the tenant's application role with the policy attached, and (tiers
//! with a dedicated cache) an ElastiCache Redis cluster.
//!
//! Dependencies are explicit so that both orders come from the graph: the bucket
//! policy names the role, so it waits for it (and goes before it on destroy); the
//! attachment needs role and policy, so a role's attachments are gone before it.
//! Account ids are written as [`ACCOUNT_PLACEHOLDER`]; providers fill them in.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::resource::iam::{ACCOUNT_PLACEHOLDER, policy_arn, role_arn};
use crate::resource::s3::lifecycle_rule_json;
use crate::resource::secret::{READ_CREDENTIALS, secret_arn_pattern};
use crate::resource::{Resource, ResourceAddress, ResourceType, tags_value};
use crate::spec::{AwsSettings, Naming, PlatformInfo, TenantSpec, Tier, render_name};

/// What the tenant's role may do in its bucket.
pub const OBJECT_ACTIONS: &[&str] = &["s3:DeleteObject", "s3:GetObject", "s3:PutObject"];

// S3 wants an object at least 30 days in Standard-IA before it moves to Glacier, so
// the Standard-IA step is there only when Glacier comes 60 days or more after upload
// (the platform file refuses Glacier days in between).
use crate::spec::STANDARD_IA_DAYS;

/// `TenantID`, `Tier`, `CostCenter` and the platform's tags, for every taggable
/// resource. The tenant's own tags win over a platform tag of the same key.
pub fn tenant_tags(tenant: &TenantSpec, tier: &Tier, platform: &PlatformInfo) -> Value {
    let mut tags: BTreeMap<String, String> = platform.tags.clone();
    tags.insert("TenantID".into(), tenant.id.to_string());
    tags.insert("Tier".into(), tier.display_name.clone());
    tags.insert("CostCenter".into(), tenant.cost_center.clone());
    tags_value(tags)
}

fn lifecycle(tier: &Tier) -> Value {
    let glacier = i32::try_from(tier.s3_glacier_days).unwrap_or(i32::MAX);
    let mut transitions = Vec::new();
    if tier.s3_glacier_days >= STANDARD_IA_DAYS * 2 {
        transitions.push((STANDARD_IA_DAYS as i32, "STANDARD_IA"));
    }
    transitions.push((glacier, "GLACIER"));
    json!([lifecycle_rule_json("tiering", "", true, &transitions)])
}

/// Who may assume the tenant's application role: the platform's service and the
/// `trusted_principals` (validation checks), in one statement. One statement, not one
/// per principal, because moto (the local AWS endpoint) counts a trust statement that
/// names another principal as a Deny, and fails on a statement with a service
/// principal only when a user or role calls AssumeRole; on AWS both forms mean the same.
fn trust_policy(aws: &AwsSettings) -> Value {
    let mut principal = json!({"Service": aws.service_principal});
    if !aws.trusted_principals.is_empty() {
        principal["AWS"] = json!(aws.trusted_principals);
    }
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": principal,
            "Action": "sts:AssumeRole",
        }],
    })
}

/// The tenant's AWS resources: its S3 bucket and bucket policy, IAM policy, role and
/// their attachment, and the dedicated ElastiCache cluster when its tier has one.
pub fn resources(
    tenant: &TenantSpec,
    tier: &Tier,
    naming: &Naming,
    platform: &PlatformInfo,
    aws: &AwsSettings,
) -> Vec<Resource> {
    let id = &tenant.id;
    let addr = |t, n: &str| ResourceAddress::new(id, t, n);
    let tags = tenant_tags(tenant, tier, platform);
    let bucket_name = render_name(&naming.s3_bucket, id);
    let role_name = render_name(&naming.iam_role, id);
    let policy_name = render_name(&naming.iam_policy, id);
    let bucket_arn = format!("arn:aws:s3:::{bucket_name}");
    let objects_arn = format!("{bucket_arn}/*");
    let credentials_arn =
        secret_arn_pattern(&tenant.region, &render_name(&naming.credentials_secret, id));

    let bucket = Resource::new(addr(ResourceType::S3Bucket, "documents"))
        .attr("bucket", bucket_name.clone())
        .attr("region", tenant.region.clone())
        .attr("versioning", "Enabled")
        .attr("lifecycle_rules", lifecycle(tier))
        .attr(
            "public_access_block",
            json!({
                "block_public_acls": true,
                "ignore_public_acls": true,
                "block_public_policy": true,
                "restrict_public_buckets": true,
            }),
        )
        .attr("tags", tags.clone());

    let policy = Resource::new(addr(ResourceType::IamPolicy, "documents_access"))
        .attr("name", policy_name.clone())
        .attr("description", format!("Access of tenant {id} to its documents bucket"))
        .attr(
            "document",
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "ListBucket", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn]},
                    {"Sid": "ObjectAccess", "Effect": "Allow", "Action": OBJECT_ACTIONS, "Resource": [objects_arn]},
                    {"Sid": "ReadOwnCredentials", "Effect": "Allow", "Action": [READ_CREDENTIALS], "Resource": [credentials_arn]},
                ],
            }),
        )
        .attr("tags", tags.clone());

    let role = Resource::new(addr(ResourceType::IamRole, "app"))
        .attr("name", role_name.clone())
        .attr("description", format!("Application role of tenant {id}"))
        .attr("assume_role_policy", trust_policy(aws))
        .attr("tags", tags.clone());

    let attachment = Resource::new(addr(
        ResourceType::IamRolePolicyAttachment,
        "documents_access",
    ))
    .attr("role", role_name.clone())
    .attr("policy_arn", policy_arn(&policy_name))
    .depends_on(&role)
    .depends_on(&policy);

    let tenant_role = role_arn(&role_name);
    debug_assert!(tenant_role.contains(ACCOUNT_PLACEHOLDER));
    // Allow statements only, for the tenant's role. With the role's IAM policy, which
    // reaches this bucket and no other, that is "only the tenant's role may touch it":
    // another tenant's role has neither an IAM permission nor a bucket grant here.
    //
    // There is deliberately no `Deny` for other principals (Principal "*" with a
    // condition on aws:PrincipalArn). moto evaluates a bucket policy's Deny without
    // knowing the caller, so a statement whose condition it cannot evaluate denies
    // everyone, the tenant's role included, and isolation could not be tested locally.
    // On AWS this also means that a principal of the same account whose IAM policy
    // allows S3 on every bucket (the platform team's admin role) keeps access through
    // IAM. That is intended: the platform team must be able to repair and empty a
    // tenant's bucket.
    let bucket_policy = Resource::new(addr(ResourceType::S3BucketPolicy, "documents"))
        .attr("bucket", bucket_name)
        .attr("region", tenant.region.clone())
        .attr(
            "policy",
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TenantRoleAccess",
                        "Effect": "Allow",
                        "Principal": {"AWS": tenant_role},
                        "Action": ["s3:ListBucket"],
                        "Resource": [bucket_arn],
                    },
                    {
                        "Sid": "TenantRoleObjects",
                        "Effect": "Allow",
                        "Principal": {"AWS": tenant_role},
                        "Action": OBJECT_ACTIONS,
                        "Resource": [objects_arn],
                    },
                ],
            }),
        )
        .depends_on(&bucket)
        .depends_on(&role);

    let mut out = vec![bucket, policy, role, attachment, bucket_policy];
    if tier.dedicated_cache {
        out.push(
            Resource::new(addr(ResourceType::ElasticacheCluster, "cache"))
                .attr("cluster_id", render_name(&naming.cache_cluster, id))
                .attr("region", tenant.region.clone())
                .attr("engine", "redis")
                .attr(
                    "node_type",
                    tier.cache_node_type.clone().unwrap_or_default(),
                )
                .attr("num_nodes", tier.cache_nodes.unwrap_or(1))
                .attr("tags", tags),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Specs;

    fn example() -> Specs {
        Specs::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs")).unwrap()
    }

    fn glacier_days(rules: &Value) -> Vec<(i64, String)> {
        rules[0]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["days"].as_i64().unwrap(),
                    t["storage_class"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn lifecycle_follows_the_tier_and_keeps_s3s_30_day_rule() {
        let specs = example();
        let days = |tier: &str| glacier_days(&lifecycle(&specs.platform.tiers[tier]));
        assert_eq!(
            days("gold"),
            vec![(30, "STANDARD_IA".into()), (90, "GLACIER".into())]
        );
        assert_eq!(
            days("silver"),
            vec![(30, "STANDARD_IA".into()), (60, "GLACIER".into())]
        );
        assert_eq!(days("bronze"), vec![(30, "GLACIER".into())]);
    }

    #[test]
    fn the_bucket_policy_only_allows_the_tenants_role() {
        let specs = example();
        let t = specs.tenants.values().next().unwrap();
        let rs = resources(
            t,
            specs.tier_of(t),
            &specs.platform.naming,
            &specs.platform.platform,
            &specs.platform.aws,
        );
        let policy = &rs
            .iter()
            .find(|r| r.address.resource_type == ResourceType::S3BucketPolicy)
            .unwrap()
            .attributes["policy"];
        let role = role_arn(&render_name(&specs.platform.naming.iam_role, &t.id));
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        for st in statements {
            assert_eq!(st["Effect"], "Allow", "{st}");
            assert_eq!(st["Principal"], json!({"AWS": role}), "{st}");
            assert!(st.get("Condition").is_none(), "{st}");
        }
        let bucket = format!(
            "arn:aws:s3:::{}",
            render_name(&specs.platform.naming.s3_bucket, &t.id)
        );
        assert_eq!(statements[0]["Action"], json!(["s3:ListBucket"]));
        assert_eq!(statements[0]["Resource"], json!([bucket]));
        assert_eq!(statements[1]["Action"], json!(OBJECT_ACTIONS));
        assert_eq!(statements[1]["Resource"], json!([format!("{bucket}/*")]));
    }

    #[test]
    fn trusted_principals_join_the_service_in_the_roles_one_trust_statement() {
        let mut aws = AwsSettings::default();
        assert_eq!(
            trust_policy(&aws)["Statement"],
            json!([{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                    "Action": "sts:AssumeRole"}])
        );
        aws.trusted_principals = vec!["arn:aws:iam::{aws_account_id}:role/validation".into()];
        assert_eq!(
            trust_policy(&aws)["Statement"],
            json!([{"Effect": "Allow",
                    "Principal": {"Service": "ecs-tasks.amazonaws.com",
                                  "AWS": ["arn:aws:iam::{aws_account_id}:role/validation"]},
                    "Action": "sts:AssumeRole"}])
        );
    }

    #[test]
    fn only_tiers_with_a_dedicated_cache_get_a_cluster_and_everything_is_tagged() {
        let specs = example();
        for t in specs.tenants.values() {
            let tier = specs.tier_of(t);
            let rs = resources(
                t,
                tier,
                &specs.platform.naming,
                &specs.platform.platform,
                &specs.platform.aws,
            );
            let has_cache = rs
                .iter()
                .any(|r| r.address.resource_type == ResourceType::ElasticacheCluster);
            assert_eq!(has_cache, tier.dedicated_cache, "{}", t.id);
            for r in rs.iter().filter(|r| r.schema().attribute("tags").is_some()) {
                let tags = &r.attributes["tags"];
                assert_eq!(tags["TenantID"], t.id.as_str());
                assert_eq!(tags["Tier"], tier.display_name.as_str());
                assert_eq!(tags["CostCenter"], t.cost_center.as_str());
                assert_eq!(tags["ManagedBy"], "tenantform");
            }
        }
    }
}
