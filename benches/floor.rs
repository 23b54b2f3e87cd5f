//! The floor: the AWS API calls tenantform makes for N tenants, issued directly
//! through the same SDK clients at the same concurrency, with no engine around them
//! (no specs, no plan graph, no state files, no PostgreSQL). What tenantform takes
//! beyond this is the engine's overhead; `scripts/bench` reports tenantform / floor.
//!
//!     cargo build --release --bench floor   # then run the built binary:
//!     floor apply|read|destroy --tenants N [--tiers gold,silver,bronze] [--parallelism 10]
//!
//! Tenants are `bench-00001` .. `bench-N`, tiers assigned round-robin from `--tiers`,
//! exactly as `scripts/bench` generates the specs. Endpoint and credentials come from
//! the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), as for tenantform.
//!
//! The call sequence per resource mirrors tenantform's providers (src/provider/s3.rs,
//! iam.rs, elasticache.rs):
//!
//! | resource        | apply                                                  | read (refresh/drift)                          | destroy                          |
//! |-----------------|--------------------------------------------------------|-----------------------------------------------|----------------------------------|
//! | bucket          | HeadBucket, CreateBucket, PutPublicAccessBlock, PutBucketVersioning, PutBucketLifecycleConfiguration, PutBucketTagging | HeadBucket, GetBucketLocation, GetBucketVersioning, GetBucketLifecycleConfiguration, GetPublicAccessBlock, GetBucketTagging | ListObjectVersions, DeleteBucket |
//! | bucket policy   | PutBucketPolicy (after bucket and role)                | GetBucketPolicy                               | DeleteBucketPolicy               |
//! | IAM policy      | CreatePolicy                                           | GetPolicy, GetPolicyVersion, ListPolicyTags   | ListPolicyVersions, DeletePolicy |
//! | IAM role        | CreateRole                                             | GetRole, ListRoleTags                         | DeleteRole (after the attachment and bucket policy) |
//! | attachment      | AttachRolePolicy (after role and policy)               | ListAttachedRolePolicies                      | DetachRolePolicy                 |
//! | cache (Gold)    | CreateCacheCluster, DescribeCacheClusters              | DescribeCacheClusters, ListTagsForResource    | DescribeCacheClusters, DeleteCacheCluster |
//!
//! plus one STS GetCallerIdentity per run (the account id). At most `--parallelism`
//! resource actions run at once (tenantform's `--parallelism`, default 10), each one's
//! calls in sequence, dependencies respected. Prints one JSON line: calls, seconds.
//!
//! A read of more than three tenants is made as tenantform's refresh makes it then, in
//! bulk: one GetAccountAuthorizationDetails and one ListRoles for IAM, then
//! ListPolicyTags per policy; one DescribeCacheClusters, then ListTagsForResource per
//! cluster; one ListBuckets (by region and prefix), then per bucket
//! GetBucketVersioning, GetBucketLifecycleConfiguration, GetPublicAccessBlock,
//! GetBucketTagging and GetBucketPolicy; at most `--parallelism` calls in flight per
//! service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus, LifecycleRule,
    LifecycleRuleFilter, PublicAccessBlockConfiguration, Tag, Tagging, Transition,
    TransitionStorageClass, VersioningConfiguration,
};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde_json::json;
use tokio::sync::Semaphore;

type Step = Shared<BoxFuture<'static, Result<(), String>>>;

struct Tier {
    display: &'static str,
    glacier_days: i32,
    cache: bool,
}

fn tier(name: &str) -> Tier {
    match name {
        "gold" => Tier {
            display: "Gold",
            glacier_days: 90,
            cache: true,
        },
        "silver" => Tier {
            display: "Silver",
            glacier_days: 60,
            cache: false,
        },
        "bronze" => Tier {
            display: "Bronze",
            glacier_days: 30,
            cache: false,
        },
        other => panic!("unknown tier {other:?}; use gold, silver or bronze"),
    }
}

struct Clients {
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    ec: aws_sdk_elasticache::Client,
    calls: AtomicUsize,
    sem: Semaphore,
    account: tokio::sync::OnceCell<String>,
}

impl Clients {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    async fn account(&self) -> Result<&str, String> {
        self.account
            .get_or_try_init(|| async {
                self.count();
                let out = self.sts.get_caller_identity().send().await.map_err(err)?;
                Ok::<_, String>(out.account().unwrap_or("123456789012").to_owned())
            })
            .await
            .map(String::as_str)
    }
}

fn err<E: std::error::Error>(e: E) -> String {
    aws_sdk_s3::error::DisplayErrorContext(e).to_string()
}

fn tags(id: &str, t: &Tier) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("CostCenter", format!("CC-{}", id.to_uppercase())),
        ("ManagedBy", "tenantform".into()),
        ("Platform", "rag-platform".into()),
        ("TenantID", id.to_owned()),
        ("Tier", t.display.into()),
    ])
}

const OBJECT_ACTIONS: [&str; 3] = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"];

/// One resource action: waits for `after`, takes a parallelism slot, runs `body`.
fn step<F>(c: &Arc<Clients>, after: Vec<Step>, body: F) -> Step
where
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let c = c.clone();
    async move {
        for dep in after {
            dep.await?;
        }
        let _slot = c.sem.acquire().await.map_err(err)?;
        body.await
    }
    .boxed()
    .shared()
}

fn apply_tenant(c: &Arc<Clients>, id: String, t: Tier) -> Vec<Step> {
    let bucket = format!("rag-{id}-documents");
    let role = format!("rag-{id}-app");
    let policy = format!("rag-{id}-documents-access");
    let tags = tags(&id, &t);

    let b = {
        let (c2, bucket, tags) = (c.clone(), bucket.clone(), tags.clone());
        step(c, vec![], async move {
            let s3 = &c2.s3;
            c2.count();
            let _ = s3.head_bucket().bucket(&bucket).send().await; // 404 expected
            c2.count();
            s3.create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            s3.put_public_access_block()
                .bucket(&bucket)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .ignore_public_acls(true)
                        .block_public_policy(true)
                        .restrict_public_buckets(true)
                        .build(),
                )
                .send()
                .await
                .map_err(err)?;
            c2.count();
            s3.put_bucket_versioning()
                .bucket(&bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map_err(err)?;
            let mut rule = LifecycleRule::builder()
                .id("tiering")
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("").build());
            if t.glacier_days >= 60 {
                rule = rule.transitions(
                    Transition::builder()
                        .days(30)
                        .storage_class(TransitionStorageClass::StandardIa)
                        .build(),
                );
            }
            rule = rule.transitions(
                Transition::builder()
                    .days(t.glacier_days)
                    .storage_class(TransitionStorageClass::Glacier)
                    .build(),
            );
            let lifecycle = BucketLifecycleConfiguration::builder()
                .rules(rule.build().map_err(err)?)
                .build()
                .map_err(err)?;
            c2.count();
            s3.put_bucket_lifecycle_configuration()
                .bucket(&bucket)
                .lifecycle_configuration(lifecycle)
                .send()
                .await
                .map_err(err)?;
            let tag_set = tags
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(v).build().map_err(err))
                .collect::<Result<Vec<_>, _>>()?;
            c2.count();
            s3.put_bucket_tagging()
                .bucket(&bucket)
                .tagging(
                    Tagging::builder()
                        .set_tag_set(Some(tag_set))
                        .build()
                        .map_err(err)?,
                )
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let p = {
        let (c2, id, bucket, policy, tags) = (
            c.clone(),
            id.clone(),
            bucket.clone(),
            policy.clone(),
            tags.clone(),
        );
        step(c, vec![], async move {
            c2.account().await?;
            let doc = json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "ListBucket", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [format!("arn:aws:s3:::{bucket}")]},
                    {"Sid": "ObjectAccess", "Effect": "Allow", "Action": OBJECT_ACTIONS, "Resource": [format!("arn:aws:s3:::{bucket}/*")]},
                ],
            });
            c2.count();
            c2.iam
                .create_policy()
                .policy_name(&policy)
                .description(format!("Access of tenant {id} to its documents bucket"))
                .policy_document(doc.to_string())
                .set_tags(Some(iam_tags(&tags)))
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let r = {
        let (c2, id, role, tags) = (c.clone(), id.clone(), role.clone(), tags.clone());
        step(c, vec![], async move {
            c2.account().await?;
            let trust = json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
            });
            c2.count();
            c2.iam
                .create_role()
                .role_name(&role)
                .description(format!("Application role of tenant {id}"))
                .assume_role_policy_document(trust.to_string())
                .set_tags(Some(iam_tags(&tags)))
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let a = {
        let (c2, role, policy) = (c.clone(), role.clone(), policy.clone());
        step(c, vec![r.clone(), p.clone()], async move {
            let account = c2.account().await?.to_owned();
            c2.count();
            c2.iam
                .attach_role_policy()
                .role_name(&role)
                .policy_arn(format!("arn:aws:iam::{account}:policy/{policy}"))
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let bp = {
        let (c2, bucket, role) = (c.clone(), bucket.clone(), role.clone());
        step(c, vec![b.clone(), r.clone()], async move {
            let account = c2.account().await?.to_owned();
            let role_arn = format!("arn:aws:iam::{account}:role/{role}");
            let objects = format!("arn:aws:s3:::{bucket}/*");
            let doc = json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "TenantRoleAccess", "Effect": "Allow", "Principal": {"AWS": role_arn}, "Action": ["s3:ListBucket"], "Resource": [format!("arn:aws:s3:::{bucket}")]},
                    {"Sid": "TenantRoleObjects", "Effect": "Allow", "Principal": {"AWS": role_arn}, "Action": OBJECT_ACTIONS, "Resource": [objects]},
                    {"Sid": "DenyOtherPrincipals", "Effect": "Deny", "Principal": "*", "Action": OBJECT_ACTIONS, "Resource": [objects],
                     "Condition": {"StringNotEquals": {"aws:PrincipalArn": [role_arn]}}},
                ],
            });
            c2.count();
            c2.s3
                .put_bucket_policy()
                .bucket(&bucket)
                .policy(doc.to_string())
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let mut steps = vec![b, p, r, a, bp];
    if t.cache {
        let (c2, tags) = (c.clone(), tags.clone());
        let cluster = format!("rag-{id}");
        steps.push(step(c, vec![], async move {
            let tag_list = tags
                .iter()
                .map(|(k, v)| {
                    aws_sdk_elasticache::types::Tag::builder()
                        .key(*k)
                        .value(v)
                        .build()
                })
                .collect();
            c2.count();
            c2.ec
                .create_cache_cluster()
                .cache_cluster_id(&cluster)
                .engine("redis")
                .cache_node_type("cache.r6g.large")
                .num_cache_nodes(1)
                .set_tags(Some(tag_list))
                .send()
                .await
                .map_err(err)?;
            c2.count();
            c2.ec
                .describe_cache_clusters()
                .cache_cluster_id(&cluster)
                .show_cache_node_info(true)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        }));
    }
    steps
}

fn iam_tags(tags: &BTreeMap<&'static str, String>) -> Vec<aws_sdk_iam::types::Tag> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(*k)
                .value(v)
                .build()
                .expect("key and value set")
        })
        .collect()
}

/// The refresh of one tenant, one resource at a time, as tenantform reads a run of a
/// few tenants.
fn read_tenant(c: &Arc<Clients>, id: String, t: Tier) -> Vec<Step> {
    let bucket = format!("rag-{id}-documents");
    let role = format!("rag-{id}-app");
    let policy = format!("rag-{id}-documents-access");
    let mut steps = Vec::new();
    {
        let (c2, bucket) = (c.clone(), bucket.clone());
        steps.push(step(c, vec![], async move {
            let s3 = &c2.s3;
            c2.count();
            s3.head_bucket().bucket(&bucket).send().await.map_err(err)?;
            c2.count();
            s3.get_bucket_location()
                .bucket(&bucket)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            // moto answers with an XML root the SDK cannot parse: the call was made.
            let _ = s3.get_bucket_versioning().bucket(&bucket).send().await;
            c2.count();
            s3.get_bucket_lifecycle_configuration()
                .bucket(&bucket)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            s3.get_public_access_block()
                .bucket(&bucket)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            s3.get_bucket_tagging()
                .bucket(&bucket)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        }));
    }
    {
        let (c2, bucket) = (c.clone(), bucket.clone());
        steps.push(step(c, vec![], async move {
            c2.account().await?;
            c2.count();
            c2.s3
                .get_bucket_policy()
                .bucket(&bucket)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        }));
    }
    {
        let (c2, policy) = (c.clone(), policy.clone());
        steps.push(step(c, vec![], async move {
            let arn = format!("arn:aws:iam::{}:policy/{policy}", c2.account().await?);
            c2.count();
            let p = c2
                .iam
                .get_policy()
                .policy_arn(&arn)
                .send()
                .await
                .map_err(err)?;
            let version = p
                .policy()
                .and_then(|p| p.default_version_id())
                .unwrap_or("v1")
                .to_owned();
            c2.count();
            c2.iam
                .get_policy_version()
                .policy_arn(&arn)
                .version_id(version)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            c2.iam
                .list_policy_tags()
                .policy_arn(&arn)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        }));
    }
    {
        let (c2, role) = (c.clone(), role.clone());
        steps.push(step(c, vec![], async move {
            c2.account().await?;
            c2.count();
            c2.iam
                .get_role()
                .role_name(&role)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            c2.iam
                .list_role_tags()
                .role_name(&role)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        }));
    }
    {
        let (c2, role) = (c.clone(), role.clone());
        steps.push(step(c, vec![], async move {
            c2.account().await?;
            c2.count();
            c2.iam
                .list_attached_role_policies()
                .role_name(&role)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        }));
    }
    if t.cache {
        let c2 = c.clone();
        let cluster = format!("rag-{id}");
        steps.push(step(c, vec![], async move {
            c2.count();
            let out = c2
                .ec
                .describe_cache_clusters()
                .cache_cluster_id(&cluster)
                .show_cache_node_info(true)
                .send()
                .await
                .map_err(err)?;
            let arn = out
                .cache_clusters()
                .first()
                .and_then(|c| c.arn())
                .unwrap_or_default()
                .to_owned();
            c2.count();
            c2.ec
                .list_tags_for_resource()
                .resource_name(arn)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        }));
    }
    steps
}

/// Runs `body` after `after`, holding one of `slots` (a service's own limit).
fn step_on<F>(slots: &Arc<Semaphore>, after: Vec<Step>, body: F) -> Step
where
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let slots = slots.clone();
    async move {
        for dep in after {
            dep.await?;
        }
        let _slot = slots.acquire().await.map_err(err)?;
        body.await
    }
    .boxed()
    .shared()
}

/// The refresh of every tenant, as tenantform reads a run of more than a few tenants:
/// each service in as few calls as its API allows, at most `parallelism` calls in
/// flight per service.
fn read_all(c: &Arc<Clients>, tenants: Vec<(String, Tier)>, parallelism: usize) -> Vec<Step> {
    let slots = || Arc::new(Semaphore::new(parallelism.max(1)));
    let (iam, s3, ec) = (slots(), slots(), slots());
    let mut steps = Vec::new();

    // IAM: the account's roles and local policies, the roles' descriptions, then each
    // policy's tags.
    let details = {
        let c2 = c.clone();
        step_on(&iam, vec![], async move {
            c2.account().await?;
            c2.count();
            c2.iam
                .get_account_authorization_details()
                .filter(aws_sdk_iam::types::EntityType::Role)
                .filter(aws_sdk_iam::types::EntityType::LocalManagedPolicy)
                .max_items(1000)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            c2.iam
                .list_roles()
                .max_items(1000)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    steps.push(details.clone());
    for (id, _) in &tenants {
        let (c2, policy) = (c.clone(), format!("rag-{id}-documents-access"));
        steps.push(step_on(&iam, vec![details.clone()], async move {
            let arn = format!("arn:aws:iam::{}:policy/{policy}", c2.account().await?);
            c2.count();
            c2.iam
                .list_policy_tags()
                .policy_arn(&arn)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        }));
    }

    // ElastiCache: one listing, then each cluster's tags.
    let gold: Vec<String> = tenants
        .iter()
        .filter(|(_, t)| t.cache)
        .map(|(id, _)| format!("rag-{id}"))
        .collect();
    if !gold.is_empty() {
        let clusters: Arc<tokio::sync::OnceCell<BTreeMap<String, String>>> = Arc::default();
        let list = {
            let (c2, clusters) = (c.clone(), clusters.clone());
            step_on(&ec, vec![], async move {
                c2.count();
                let out = c2
                    .ec
                    .describe_cache_clusters()
                    .show_cache_node_info(true)
                    .max_records(100)
                    .send()
                    .await
                    .map_err(err)?;
                let arns = out
                    .cache_clusters()
                    .iter()
                    .filter_map(|c| Some((c.cache_cluster_id()?.to_owned(), c.arn()?.to_owned())))
                    .collect();
                let _ = clusters.set(arns);
                Ok(())
            })
        };
        steps.push(list.clone());
        for cluster in gold {
            let (c2, clusters) = (c.clone(), clusters.clone());
            steps.push(step_on(&ec, vec![list.clone()], async move {
                let arn = clusters
                    .get()
                    .and_then(|a| a.get(&cluster))
                    .cloned()
                    .unwrap_or_default();
                c2.count();
                c2.ec
                    .list_tags_for_resource()
                    .resource_name(arn)
                    .send()
                    .await
                    .map_err(err)?;
                Ok(())
            }));
        }
    }

    // S3: one listing of the region's buckets like the tenants', then each bucket's
    // four sub-configurations and its policy.
    let list = {
        let c2 = c.clone();
        step_on(&s3, vec![], async move {
            c2.count();
            c2.s3
                .list_buckets()
                .bucket_region("us-east-1")
                .prefix("rag-bench-")
                .max_buckets(10_000)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    steps.push(list.clone());
    for (id, _) in &tenants {
        let bucket = format!("rag-{id}-documents");
        for part in 0..5 {
            let (c2, bucket) = (c.clone(), bucket.clone());
            steps.push(step_on(&s3, vec![list.clone()], async move {
                let s3 = &c2.s3;
                c2.count();
                match part {
                    // moto answers with an XML root the SDK cannot parse: the call was
                    // made.
                    0 => drop(s3.get_bucket_versioning().bucket(&bucket).send().await),
                    1 => drop(
                        s3.get_bucket_lifecycle_configuration()
                            .bucket(&bucket)
                            .send()
                            .await
                            .map_err(err)?,
                    ),
                    2 => drop(
                        s3.get_public_access_block()
                            .bucket(&bucket)
                            .send()
                            .await
                            .map_err(err)?,
                    ),
                    3 => drop(
                        s3.get_bucket_tagging()
                            .bucket(&bucket)
                            .send()
                            .await
                            .map_err(err)?,
                    ),
                    _ => {
                        c2.account().await?;
                        drop(
                            s3.get_bucket_policy()
                                .bucket(&bucket)
                                .send()
                                .await
                                .map_err(err)?,
                        )
                    }
                }
                Ok(())
            }));
        }
    }
    steps
}

fn destroy_tenant(c: &Arc<Clients>, id: String, t: Tier) -> Vec<Step> {
    let bucket = format!("rag-{id}-documents");
    let role = format!("rag-{id}-app");
    let policy = format!("rag-{id}-documents-access");
    let bp = {
        let (c2, bucket) = (c.clone(), bucket.clone());
        step(c, vec![], async move {
            c2.count();
            c2.s3
                .delete_bucket_policy()
                .bucket(&bucket)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let a = {
        let (c2, role, policy) = (c.clone(), role.clone(), policy.clone());
        step(c, vec![], async move {
            let arn = format!("arn:aws:iam::{}:policy/{policy}", c2.account().await?);
            c2.count();
            c2.iam
                .detach_role_policy()
                .role_name(&role)
                .policy_arn(arn)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let b = {
        let (c2, bucket) = (c.clone(), bucket.clone());
        step(c, vec![bp.clone()], async move {
            c2.count();
            c2.s3
                .list_object_versions()
                .bucket(&bucket)
                .max_keys(1000)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            c2.s3
                .delete_bucket()
                .bucket(&bucket)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let p = {
        let (c2, policy) = (c.clone(), policy.clone());
        step(c, vec![a.clone()], async move {
            let arn = format!("arn:aws:iam::{}:policy/{policy}", c2.account().await?);
            c2.count();
            c2.iam
                .list_policy_versions()
                .policy_arn(&arn)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            c2.iam
                .delete_policy()
                .policy_arn(&arn)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let r = {
        let (c2, role) = (c.clone(), role.clone());
        step(c, vec![a.clone(), bp.clone()], async move {
            c2.count();
            c2.iam
                .delete_role()
                .role_name(&role)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        })
    };
    let mut steps = vec![bp, a, b, p, r];
    if t.cache {
        let c2 = c.clone();
        let cluster = format!("rag-{id}");
        steps.push(step(c, vec![], async move {
            c2.count();
            c2.ec
                .describe_cache_clusters()
                .cache_cluster_id(&cluster)
                .show_cache_node_info(true)
                .send()
                .await
                .map_err(err)?;
            c2.count();
            c2.ec
                .delete_cache_cluster()
                .cache_cluster_id(&cluster)
                .send()
                .await
                .map_err(err)?;
            Ok(())
        }));
    }
    steps
}

fn usage() -> ! {
    eprintln!(
        "usage: floor apply|read|destroy --tenants N [--tiers gold,silver,bronze] [--parallelism 10] [--no-cache-destroy]"
    );
    std::process::exit(64)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    // `cargo test --all-targets` runs this binary with no arguments and `cargo bench`
    // with `--bench`: both only check that it builds and starts.
    if args.peek().is_none_or(|a| a.starts_with("--")) {
        eprintln!("floor: no operation given; scripts/bench runs it (see the file's header)");
        return;
    }
    let op = args.next().unwrap_or_else(|| usage());
    let (mut n, mut tiers, mut parallelism, mut cache_destroy) =
        (1usize, "gold,silver,bronze".to_owned(), 10usize, true);
    while let Some(a) = args.next() {
        match a.as_str() {
            // `cargo bench` passes this to every bench target.
            "--bench" => {}
            "--tenants" => {
                n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--tiers" => tiers = args.next().unwrap_or_else(|| usage()),
            "--parallelism" => {
                parallelism = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--no-cache-destroy" => cache_destroy = false,
            _ => usage(),
        }
    }
    let tiers: Vec<String> = tiers.split(',').map(str::to_owned).collect();

    let base = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&base)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build(),
    );
    let c = Arc::new(Clients {
        s3,
        iam: aws_sdk_iam::Client::new(&base),
        sts: aws_sdk_sts::Client::new(&base),
        ec: aws_sdk_elasticache::Client::new(&base),
        calls: AtomicUsize::new(0),
        sem: Semaphore::new(parallelism.max(1)),
        account: tokio::sync::OnceCell::new(),
    });

    let t0 = Instant::now();
    let mut steps = Vec::new();
    let mut read = Vec::new();
    for i in 1..=n {
        let id = format!("bench-{i:05}");
        let mut t = tier(&tiers[(i - 1) % tiers.len()]);
        steps.extend(match op.as_str() {
            "apply" => apply_tenant(&c, id, t),
            // tenantform reads a run of more than three tenants in bulk.
            "read" if n > 3 => {
                read.push((id, t));
                Vec::new()
            }
            "read" => read_tenant(&c, id, t),
            "destroy" => {
                t.cache &= cache_destroy;
                destroy_tenant(&c, id, t)
            }
            _ => usage(),
        });
    }
    if !read.is_empty() {
        steps.extend(read_all(&c, read, parallelism));
    }
    let results = futures::future::join_all(steps).await;
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    println!(
        "{}",
        json!({
            "op": op,
            "tenants": n,
            "parallelism": parallelism,
            "calls": c.calls.load(Ordering::Relaxed),
            "seconds": t0.elapsed().as_secs_f64(),
            "errors": errors.len(),
        })
    );
    if let Some(e) = errors.first() {
        eprintln!(
            "floor: {} of {} steps failed; first: {e}",
            errors.len(),
            results.len()
        );
        std::process::exit(1);
    }
}
