//! S3: a tenant's bucket (with its versioning, lifecycle, public access block and tags)
//! and the bucket's policy.
//!
//! CreateBucket takes no tag, so a bucket is proven this create's in two ways: within
//! one create, S3's `BucketAlreadyOwnedByYou` on a retry of a call that found no bucket
//! of that name when it began (the attempt whose answer was lost made it); across runs,
//! the create's token ([`super::aws::CREATE_TOKEN_TAG`]), which the create tags the
//! bucket with before anything else, or, for a bucket with no tags at all, a creation
//! time after the token was made (the run died between CreateBucket and the tagging).
//! Any other existing bucket is someone else's.
//!
//! The bucket's sub-configurations are attributes of `s3_bucket`, each set with its
//! own API call, so that an update touches only what changed. The policy is its own
//! resource because it names the tenant's role and so must wait for it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, Delete, ExpirationStatus, LifecycleRule, LifecycleRuleFilter,
    ObjectIdentifier, PublicAccessBlockConfiguration, Tag, Tagging, Transition,
    TransitionStorageClass, VersioningConfiguration,
};
use serde_json::{Value, json};

use super::aws::{
    PROPAGATION, call, create_token_in, is_not_found, policy_text, policy_value, resource_tags,
    tags_with_token,
};
use super::{
    CreateMode, Provider, ProviderError, ReadOptions, ReadRequest, ReadResult, failed_batch,
};
use crate::connect::aws::{AwsClients, location_region, moto_quirks, sdk_error};
use crate::connect::limit::{CallLimit, in_order};
use crate::connect::retry::RetryPolicy;
use crate::resource::s3::lifecycle_rule_json;
use crate::resource::{
    Attributes, CreateToken, Resource, ResourceAddress, ResourceType, attr_str, required_str,
    tags_of, tags_value,
};

const SERVICE: &str = "S3";

/// The error code of a call about a bucket that does not exist.
const BUCKET_GONE: &str = "NoSuchBucket";

/// The longest prefix the names share (for `ListBuckets` to list only those like
/// them).
fn common_prefix(names: &[&str]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut len = first.len();
    for n in &names[1..] {
        len = first
            .bytes()
            .zip(n.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // Bucket names are ASCII; stay on a character boundary all the same.
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    first[..len].to_owned()
}

/// S3 buckets and their policies.
pub struct S3Provider {
    aws: Arc<AwsClients>,
    retry: RetryPolicy,
}

fn build_error(e: aws_sdk_s3::error::BuildError) -> ProviderError {
    ProviderError::Config(format!("S3 request could not be built: {e}"))
}

fn lifecycle_rules(attrs: &Attributes) -> Result<Vec<LifecycleRule>, ProviderError> {
    let bad = || ProviderError::Config("attribute lifecycle_rules is not a list of rules".into());
    let Some(rules) = attrs.get("lifecycle_rules") else {
        return Ok(Vec::new());
    };
    rules
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|r| {
            let id = r.get("id").and_then(Value::as_str).ok_or_else(bad)?;
            let prefix = r.get("prefix").and_then(Value::as_str).unwrap_or("");
            let enabled = r.get("enabled").and_then(Value::as_bool).unwrap_or(true);
            let mut rule = LifecycleRule::builder()
                .id(id)
                .status(if enabled {
                    ExpirationStatus::Enabled
                } else {
                    ExpirationStatus::Disabled
                })
                .filter(LifecycleRuleFilter::builder().prefix(prefix).build());
            for t in r
                .get("transitions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let days = t.get("days").and_then(Value::as_i64).ok_or_else(bad)?;
                let class = t
                    .get("storage_class")
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?;
                rule = rule.transitions(
                    Transition::builder()
                        .days(i32::try_from(days).map_err(|_| bad())?)
                        .storage_class(TransitionStorageClass::from(class))
                        .build(),
                );
            }
            rule.build().map_err(build_error)
        })
        .collect()
}

fn rule_json(rule: &LifecycleRule) -> Value {
    // Rules written by other tools may still use the old rule-level prefix.
    #[allow(deprecated)]
    let prefix = rule
        .filter()
        .and_then(|f| f.prefix())
        .or(rule.prefix())
        .unwrap_or("");
    let mut transitions: Vec<(i32, String)> = rule
        .transitions()
        .iter()
        .map(|t| {
            (
                t.days().unwrap_or(0),
                t.storage_class()
                    .map(|c| c.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    transitions.sort();
    let transitions: Vec<(i32, &str)> = transitions
        .iter()
        .map(|(days, class)| (*days, class.as_str()))
        .collect();
    lifecycle_rule_json(
        rule.id().unwrap_or(""),
        prefix,
        rule.status() == &ExpirationStatus::Enabled,
        &transitions,
    )
}

const PUBLIC_ACCESS_FLAGS: [&str; 4] = [
    "block_public_acls",
    "ignore_public_acls",
    "block_public_policy",
    "restrict_public_buckets",
];

fn public_access_block(attrs: &Attributes) -> PublicAccessBlockConfiguration {
    let flag = |name: &str| {
        attrs
            .get("public_access_block")
            .and_then(|p| p.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    PublicAccessBlockConfiguration::builder()
        .block_public_acls(flag("block_public_acls"))
        .ignore_public_acls(flag("ignore_public_acls"))
        .block_public_policy(flag("block_public_policy"))
        .restrict_public_buckets(flag("restrict_public_buckets"))
        .build()
}

impl S3Provider {
    /// A provider calling S3 through `aws`, with the default retry policy.
    pub fn new(aws: Arc<AwsClients>) -> Self {
        S3Provider {
            aws,
            retry: RetryPolicy::DEFAULT,
        }
    }

    fn client(&self, attrs: &Attributes) -> Result<(aws_sdk_s3::Client, String), ProviderError> {
        let bucket = required_str(attrs, "bucket")?.to_owned();
        Ok((self.aws.s3(required_str(attrs, "region")?), bucket))
    }

    async fn bucket_exists(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
    ) -> Result<bool, ProviderError> {
        let r = call(&self.retry, SERVICE, || {
            s3.head_bucket().bucket(bucket).send()
        })
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(e.code()) => Ok(false),
            // 403: it exists and belongs to another account.
            Err(e) if e.code() == "HTTP 403" || e.code() == "Forbidden" => Ok(true),
            Err(e) => Err(e),
        }
    }

    // --- bucket ---------------------------------------------------------------------

    async fn read_bucket(&self, current: &Attributes) -> Result<Option<Attributes>, ProviderError> {
        let (s3, bucket) = self.client(current)?;
        let s3 = &s3;
        let bucket = bucket.as_str();
        if !self.bucket_exists(s3, bucket).await? {
            return Ok(None);
        }
        let region = call(&self.retry, SERVICE, || {
            s3.get_bucket_location().bucket(bucket).send()
        })
        .await
        .map(|o| location_region(o.location_constraint()));
        let region = match region {
            Ok(r) => r,
            Err(e) if is_not_found(e.code()) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.bucket_configuration(s3, bucket, region, &CallLimit::new(1))
            .await
    }

    /// The bucket's attributes once it is known to exist in `region`: its versioning,
    /// lifecycle, public access block and tags, one call each (S3 has no call that
    /// returns more than one), at most `limit` of them at once. `None` if the bucket
    /// turns out to be gone.
    async fn bucket_configuration(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        region: String,
        limit: &CallLimit,
    ) -> Result<Option<Attributes>, ProviderError> {
        let versioning = limit.run(self.read_versioning(s3, bucket));
        let lifecycle = limit.run(async {
            let lifecycle = call(&self.retry, SERVICE, || {
                s3.get_bucket_lifecycle_configuration()
                    .bucket(bucket)
                    .send()
            })
            .await;
            let mut rules: Vec<Value> = match lifecycle {
                Ok(o) => o.rules().iter().map(rule_json).collect(),
                Err(e) if is_not_found(e.code()) && e.code() != BUCKET_GONE => Vec::new(),
                Err(e) => return Err(e),
            };
            rules.sort_by_key(|r| r["id"].to_string());
            Ok(rules)
        });
        let pab = limit.run(async {
            let pab = call(&self.retry, SERVICE, || {
                s3.get_public_access_block().bucket(bucket).send()
            })
            .await;
            Ok(match pab {
                Ok(o) => {
                    let c = o.public_access_block_configuration();
                    let get = |f: fn(&PublicAccessBlockConfiguration) -> Option<bool>| {
                        c.and_then(f).unwrap_or(false)
                    };
                    json!({
                        "block_public_acls": get(|c| c.block_public_acls()),
                        "ignore_public_acls": get(|c| c.ignore_public_acls()),
                        "block_public_policy": get(|c| c.block_public_policy()),
                        "restrict_public_buckets": get(|c| c.restrict_public_buckets()),
                    })
                }
                Err(e) if is_not_found(e.code()) && e.code() != BUCKET_GONE => Value::Object(
                    PUBLIC_ACCESS_FLAGS
                        .iter()
                        .map(|f| (f.to_string(), json!(false)))
                        .collect(),
                ),
                Err(e) => return Err(e),
            })
        });
        let tags = limit.run(async {
            let tags = call(&self.retry, SERVICE, || {
                s3.get_bucket_tagging().bucket(bucket).send()
            })
            .await;
            Ok(match tags {
                Ok(o) => tags_value(resource_tags(
                    o.tag_set().iter().map(|t| (t.key(), t.value())),
                )),
                Err(e) if is_not_found(e.code()) && e.code() != BUCKET_GONE => {
                    tags_value(Vec::<(String, String)>::new())
                }
                Err(e) => return Err(e),
            })
        });
        let (versioning, rules, pab, tags) =
            match tokio::try_join!(versioning, lifecycle, pab, tags) {
                Ok(read) => read,
                // Deleted while being read.
                Err(e) if e.code() == BUCKET_GONE => return Ok(None),
                Err(e) => return Err(e),
            };
        Ok(Some(Attributes::from([
            ("bucket".into(), json!(bucket)),
            ("region".into(), json!(region)),
            ("versioning".into(), json!(versioning)),
            ("lifecycle_rules".into(), Value::Array(rules)),
            ("public_access_block".into(), pab),
            ("tags".into(), tags),
            ("arn".into(), json!(format!("arn:aws:s3:::{bucket}"))),
        ])))
    }

    /// The buckets of `region` whose names start with `prefix`: one `ListBuckets`
    /// (filtered by region and prefix) per page of 10,000.
    async fn buckets_in(
        &self,
        region: &str,
        prefix: &str,
    ) -> Result<HashSet<String>, ProviderError> {
        let s3 = self.aws.s3(region);
        let mut names = HashSet::new();
        let mut token: Option<String> = None;
        loop {
            let page = call(&self.retry, SERVICE, || {
                s3.list_buckets()
                    .bucket_region(region)
                    .prefix(prefix)
                    .max_buckets(10_000)
                    .set_continuation_token(token.clone())
                    .send()
            })
            .await?;
            names.extend(
                page.buckets()
                    .iter()
                    .filter_map(|b| b.name())
                    .map(str::to_owned),
            );
            match page.continuation_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(names),
            }
        }
    }

    /// In bulk: one listing per region says which buckets exist there (what
    /// `HeadBucket` and `GetBucketLocation` say of one bucket); then each listed
    /// bucket's four sub-configurations and each policy, all at once under one limit.
    /// A bucket not listed in its recorded region (deleted, or re-created elsewhere)
    /// is read on its own, as `read` does.
    async fn read_all(&self, reads: &[ReadRequest<'_>], options: ReadOptions) -> Vec<ReadResult> {
        let mut by_region: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (address, current) in reads {
            if address.resource_type == ResourceType::S3Bucket
                && let (Some(region), Some(bucket)) =
                    (attr_str(current, "region"), attr_str(current, "bucket"))
            {
                by_region.entry(region).or_default().push(bucket);
            }
        }
        let mut listed: HashMap<&str, HashSet<String>> = HashMap::new();
        for (region, buckets) in &by_region {
            match self.buckets_in(region, &common_prefix(buckets)).await {
                Ok(names) => {
                    listed.insert(region, names);
                }
                Err(e) => return failed_batch(reads, &e),
            }
        }
        let limit = CallLimit::new(options.parallelism);
        // By index: a closure over borrowed items would be general over lifetimes
        // that the trait's `Send` future cannot prove.
        let answers = (0..reads.len()).map(|i| {
            let (limit, listed, (address, current)) = (&limit, &listed, reads[i]);
            async move {
                match address.resource_type {
                    ResourceType::S3Bucket => {
                        let (s3, bucket) = self.client(current)?;
                        let region = required_str(current, "region")?;
                        if listed.get(region).is_some_and(|l| l.contains(&bucket)) {
                            self.bucket_configuration(&s3, &bucket, region.to_owned(), limit)
                                .await
                        } else {
                            limit.run(self.read_bucket(current)).await
                        }
                    }
                    ResourceType::S3BucketPolicy => limit.run(self.read_policy(current)).await,
                    other => Err(unsupported(other)),
                }
            }
        });
        // Buckets at most `parallelism` at once, each reading its parts side by side
        // under the shared limit: the limit keeps the calls to `parallelism`, and a
        // bucket's future is made only when one before it is done.
        in_order(answers, options.parallelism).await
    }

    /// `Enabled`, `Suspended`, or `` (never enabled).
    async fn read_versioning(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
    ) -> Result<String, ProviderError> {
        self.retry
            .run(SERVICE, || async {
                match s3.get_bucket_versioning().bucket(bucket).send().await {
                    Ok(o) => Ok(o
                        .status()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default()),
                    Err(e) => {
                        if let Some(raw) = e.raw_response()
                            && let Some(status) = moto_quirks::versioning_status_from_unparsed_body(
                                raw.status().as_u16(),
                                raw.body().bytes().unwrap_or_default(),
                            )
                        {
                            return Ok(status);
                        }
                        Err(sdk_error(SERVICE, e))
                    }
                }
            })
            .await
    }

    async fn create_bucket(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let (s3, bucket) = self.client(a)?;
        let region = required_str(a, "region")?;
        // CreateBucket by the owner of an existing bucket succeeds in us-east-1, so ask
        // first: in a fresh create an existing bucket is never ours.
        let exists = self.bucket_exists(&s3, &bucket).await?;
        if exists && !(mode.is_resume() && self.made_by(&s3, &bucket, mode.token()).await?) {
            return Err(ProviderError::AlreadyExists {
                what: format!("S3 bucket {bucket:?}"),
            });
        }
        if !exists {
            let attempts = AtomicU32::new(0);
            let created = self
                .retry
                .run(SERVICE, || async {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let mut call = s3.create_bucket().bucket(&bucket);
                    if region != "us-east-1" {
                        call = call.create_bucket_configuration(
                            CreateBucketConfiguration::builder()
                                .location_constraint(BucketLocationConstraint::from(region))
                                .build(),
                        );
                    }
                    call.send().await.map_err(|e| sdk_error(SERVICE, e))
                })
                .await;
            // A bucket of this account that was not there when this call began: an
            // earlier attempt of the call made it and its answer was lost. (In
            // us-east-1 S3 answers such a CreateBucket with success instead.)
            let lost_answer = attempts.load(Ordering::Relaxed) > 1;
            match created {
                Ok(_) => {}
                Err(e)
                    if e.code() == "BucketAlreadyOwnedByYou"
                        && (mode.is_resume() || lost_answer) => {}
                Err(e) if matches!(e.code(), "BucketAlreadyExists" | "BucketAlreadyOwnedByYou") => {
                    return Err(ProviderError::AlreadyExists {
                        what: format!("S3 bucket {bucket:?}"),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        // The token's tag goes on first: from then on the bucket is provably this
        // create's, whatever happens before state says it is created.
        self.put_tags(&s3, &bucket, tags_with_token(a, mode.token()))
            .await?;
        let rest = ["public_access_block", "versioning", "lifecycle_rules"].map(String::from);
        self.configure_bucket(&s3, &bucket, a, &rest).await?;
        Ok(Attributes::from([(
            "arn".into(),
            json!(format!("arn:aws:s3:::{bucket}")),
        )]))
    }

    /// Sets the sub-configurations named in `changed`.
    async fn configure_bucket(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        a: &Attributes,
        changed: &[String],
    ) -> Result<(), ProviderError> {
        let wants = |name: &str| changed.iter().any(|c| c == name);
        if wants("public_access_block") {
            let config = public_access_block(a);
            call(&self.retry, SERVICE, || {
                s3.put_public_access_block()
                    .bucket(bucket)
                    .public_access_block_configuration(config.clone())
                    .send()
            })
            .await?;
        }
        if wants("versioning") {
            let status = match required_str(a, "versioning")? {
                "Enabled" => Some(BucketVersioningStatus::Enabled),
                "Suspended" => Some(BucketVersioningStatus::Suspended),
                // A bucket cannot go back to never-versioned; nothing to do.
                "" => None,
                other => {
                    return Err(ProviderError::Config(format!(
                        "versioning {other:?} is not one of Enabled, Suspended"
                    )));
                }
            };
            if let Some(status) = status {
                call(&self.retry, SERVICE, || {
                    s3.put_bucket_versioning()
                        .bucket(bucket)
                        .versioning_configuration(
                            VersioningConfiguration::builder()
                                .status(status.clone())
                                .build(),
                        )
                        .send()
                })
                .await?;
            }
        }
        if wants("lifecycle_rules") {
            let rules = lifecycle_rules(a)?;
            if rules.is_empty() {
                call(&self.retry, SERVICE, || {
                    s3.delete_bucket_lifecycle().bucket(bucket).send()
                })
                .await?;
            } else {
                let config = BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .map_err(build_error)?;
                call(&self.retry, SERVICE, || {
                    s3.put_bucket_lifecycle_configuration()
                        .bucket(bucket)
                        .lifecycle_configuration(config.clone())
                        .send()
                })
                .await?;
            }
        }
        if wants("tags") {
            self.put_tags(s3, bucket, tags_of(a)).await?;
        }
        Ok(())
    }

    /// Replaces the bucket's tags with `tags` (none: removes them).
    async fn put_tags(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<(), ProviderError> {
        if tags.is_empty() {
            call(&self.retry, SERVICE, || {
                s3.delete_bucket_tagging().bucket(bucket).send()
            })
            .await?;
            return Ok(());
        }
        let tag_set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(build_error))
            .collect::<Result<Vec<_>, _>>()?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(build_error)?;
        call(&self.retry, SERVICE, || {
            s3.put_bucket_tagging()
                .bucket(bucket)
                .tagging(tagging.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    /// Whether the existing `bucket` is the one the create of `token` made: it carries
    /// the token's tag, or, having no tags at all, it was made after the token (the
    /// interrupted create made it and died before it could tag it).
    async fn made_by(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        token: CreateToken,
    ) -> Result<bool, ProviderError> {
        let tags = call(&self.retry, SERVICE, || {
            s3.get_bucket_tagging().bucket(bucket).send()
        })
        .await;
        match tags {
            Ok(o) => {
                let found = create_token_in(o.tag_set().iter().map(|t| (t.key(), t.value())));
                return Ok(found == Some(token));
            }
            Err(e) if is_not_found(e.code()) => {}
            Err(e) => return Err(e),
        }
        let Some(issued) = token.issued_at_millis() else {
            return Ok(false);
        };
        let listed = call(&self.retry, SERVICE, || s3.list_buckets().send()).await?;
        let created = listed
            .buckets()
            .iter()
            .find(|b| b.name() == Some(bucket))
            .and_then(|b| b.creation_date())
            .and_then(|d| d.to_millis().ok());
        // S3 gives the creation time to the second.
        Ok(created.is_some_and(|c| c >= i64::try_from(issued).unwrap_or(i64::MAX) - 1000))
    }

    /// Deletes every object version and delete marker, then the bucket. A bucket
    /// that is already gone is fine.
    async fn delete_bucket(&self, current: &Attributes) -> Result<(), ProviderError> {
        let (s3, bucket) = self.client(current)?;
        // The tags go first: moto keeps a deleted bucket's tags and gives them to the
        // next bucket of that name, where an old create's token would contradict the
        // new one's (see `made_by`). On AWS it is one more call on a bucket that goes.
        match self.put_tags(&s3, &bucket, BTreeMap::new()).await {
            Ok(()) => {}
            Err(e) if is_not_found(e.code()) => return Ok(()),
            Err(e) => return Err(e),
        }
        // A writer racing the delete can refill the bucket; a few rounds settle it.
        for _ in 0..5 {
            match self.empty_bucket(&s3, &bucket).await {
                Ok(()) => {}
                Err(e) if is_not_found(e.code()) => return Ok(()),
                Err(e) => return Err(e),
            }
            let deleted = call(&self.retry, SERVICE, || {
                s3.delete_bucket().bucket(&bucket).send()
            })
            .await;
            match deleted {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(e.code()) => return Ok(()),
                Err(e) if e.code() == "BucketNotEmpty" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ProviderError::Api {
            service: SERVICE,
            code: "BucketNotEmpty".into(),
            message: format!(
                "bucket {bucket:?} keeps getting new objects while it is being emptied; stop the writers and retry"
            ),
            retryable: false,
        })
    }

    async fn empty_bucket(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
    ) -> Result<(), ProviderError> {
        loop {
            let page = call(&self.retry, SERVICE, || {
                s3.list_object_versions()
                    .bucket(bucket)
                    .max_keys(1000)
                    .send()
            })
            .await?;
            let mut ids = Vec::new();
            for v in page.versions() {
                if let Some(key) = v.key() {
                    ids.push(
                        ObjectIdentifier::builder()
                            .key(key)
                            .set_version_id(v.version_id().map(str::to_owned))
                            .build()
                            .map_err(build_error)?,
                    );
                }
            }
            for m in page.delete_markers() {
                if let Some(key) = m.key() {
                    ids.push(
                        ObjectIdentifier::builder()
                            .key(key)
                            .set_version_id(m.version_id().map(str::to_owned))
                            .build()
                            .map_err(build_error)?,
                    );
                }
            }
            if ids.is_empty() {
                return Ok(());
            }
            tracing::debug!(bucket, objects = ids.len(), "deleting object versions");
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(build_error)?;
            let out = call(&self.retry, SERVICE, || {
                s3.delete_objects()
                    .bucket(bucket)
                    .delete(delete.clone())
                    .send()
            })
            .await?;
            if let Some(err) = out.errors().first() {
                return Err(ProviderError::Api {
                    service: SERVICE,
                    code: err.code().unwrap_or("DeleteObjectsFailed").to_owned(),
                    message: format!(
                        "could not delete {:?} (version {}) from bucket {bucket:?}: {}",
                        err.key().unwrap_or(""),
                        err.version_id().unwrap_or("-"),
                        err.message().unwrap_or("")
                    ),
                    retryable: false,
                });
            }
            // Listed afresh each round, rather than paged, because each page's
            // objects are gone by the next call.
        }
    }

    // --- bucket policy ----------------------------------------------------------------

    async fn read_policy(&self, current: &Attributes) -> Result<Option<Attributes>, ProviderError> {
        let (s3, bucket) = self.client(current)?;
        let account = self.aws.account_id().await?;
        let r = call(&self.retry, SERVICE, || {
            s3.get_bucket_policy().bucket(&bucket).send()
        })
        .await;
        match r {
            Ok(o) => Ok(Some(Attributes::from([
                ("bucket".into(), json!(bucket)),
                (
                    "region".into(),
                    current.get("region").cloned().unwrap_or(Value::Null),
                ),
                (
                    "policy".into(),
                    policy_value(o.policy().unwrap_or(""), account),
                ),
            ]))),
            Err(e) if is_not_found(e.code()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_policy(&self, a: &Attributes) -> Result<(), ProviderError> {
        let (s3, bucket) = self.client(a)?;
        let account = self.aws.account_id().await?;
        let policy = policy_text(a, "policy", account)?;
        // A role created a moment ago may not be accepted as a principal yet.
        PROPAGATION
            .run(SERVICE, || async {
                s3.put_bucket_policy()
                    .bucket(&bucket)
                    .policy(&policy)
                    .send()
                    .await
                    .map_err(|e| {
                        let e = sdk_error(SERVICE, e);
                        if e.code() == "MalformedPolicy" && e.to_string().contains("rincipal") {
                            e.into_retryable()
                        } else {
                            e
                        }
                    })
            })
            .await?;
        Ok(())
    }

    async fn delete_policy(&self, current: &Attributes) -> Result<(), ProviderError> {
        let (s3, bucket) = self.client(current)?;
        let r = call(&self.retry, SERVICE, || {
            s3.delete_bucket_policy().bucket(&bucket).send()
        })
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(e.code()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Provider for S3Provider {
    async fn read(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        match address.resource_type {
            ResourceType::S3Bucket => self.read_bucket(current).await,
            ResourceType::S3BucketPolicy => self.read_policy(current).await,
            other => Err(unsupported(other)),
        }
    }

    /// In bulk where S3 allows: whether buckets exist, and where, from one listing
    /// per region; the sub-configurations S3 has no bulk read for, per bucket, all at
    /// once (see [`S3Provider::read_all`]).
    async fn read_many(&self, reads: &[ReadRequest<'_>], options: ReadOptions) -> Vec<ReadResult> {
        self.read_all(reads, options).await
    }

    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        match resource.address.resource_type {
            ResourceType::S3Bucket => self.create_bucket(resource, mode).await,
            ResourceType::S3BucketPolicy => {
                self.put_policy(&resource.attributes).await?;
                Ok(Attributes::new())
            }
            other => Err(unsupported(other)),
        }
    }

    async fn update(
        &self,
        resource: &Resource,
        _current: &Attributes,
        changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        match resource.address.resource_type {
            ResourceType::S3Bucket => {
                let (s3, bucket) = self.client(a)?;
                self.configure_bucket(&s3, &bucket, a, changed).await?;
            }
            ResourceType::S3BucketPolicy => self.put_policy(a).await?,
            other => return Err(unsupported(other)),
        }
        Ok(Attributes::new())
    }

    async fn delete(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        match address.resource_type {
            ResourceType::S3Bucket => self.delete_bucket(current).await,
            ResourceType::S3BucketPolicy => self.delete_policy(current).await,
            other => Err(unsupported(other)),
        }
    }

    async fn check_access(&self) -> Result<(), ProviderError> {
        self.aws.check_credentials().await
    }

    async fn aws_account_id(&self) -> Option<String> {
        self.aws.account_id().await.ok().map(str::to_owned)
    }
}

fn unsupported(t: ResourceType) -> ProviderError {
    ProviderError::Config(format!("the S3 provider does not manage {t} resources"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_rules_round_trip_through_the_sdk_types() {
        let attrs = Attributes::from([(
            "lifecycle_rules".into(),
            json!([lifecycle_rule_json(
                "tiering",
                "",
                true,
                &[(30, "STANDARD_IA"), (90, "GLACIER")]
            )]),
        )]);
        let rules = lifecycle_rules(&attrs).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rule_json(&rules[0]), attrs["lifecycle_rules"][0]);
    }

    #[test]
    fn malformed_lifecycle_rules_are_an_error_not_a_panic() {
        for bad in [
            json!("x"),
            json!([{"transitions": []}]),
            json!([{"id": "a", "transitions": [{"days": "x"}]}]),
        ] {
            let attrs = Attributes::from([("lifecycle_rules".into(), bad)]);
            assert!(lifecycle_rules(&attrs).is_err());
        }
    }
}
