//! IAM: a tenant's managed policy, its application role, and the attachment of one
//! to the other.
//!
//! A role or policy is created with the create's token as a tag
//! ([`super::aws::CREATE_TOKEN_TAG`]); when CreateRole or CreatePolicy answers that the
//! name exists, the object is this create's if it carries that token (an attempt whose
//! answer was lost made it) and someone else's otherwise.
//!
//! IAM is eventually consistent: a role or policy just created may be unknown for a
//! few seconds to other calls. Calls that name something created earlier in the same
//! run (the attachment) retry "no such entity" with [`PROPAGATION`]. Documents come
//! back URL-encoded and with the real account id; reads decode them and put
//! [`ACCOUNT_PLACEHOLDER`] back, so that they compare with the blueprint.
//!
//! A refresh of more than a few tenants reads in bulk ([`Provider::read_many`]):
//! `GetAccountAuthorizationDetails`, filtered to roles and local managed policies,
//! gives every role with its trust policy, tags and attached policies and every
//! policy with its default version, in one page per 1,000 entities; `ListRoles` adds
//! the roles' descriptions (which the details leave out), and `ListPolicyTags` each
//! policy's tags (IAM returns a managed policy's tags nowhere else: the one call per
//! tenant left). The answers are kept for the names the batch asks about, so the
//! scope is tenantform's names, not a path: `GetAccountAuthorizationDetails` takes no
//! path prefix, so a path would not make its answer smaller, and moving existing
//! roles and policies under one would mean replacing them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_iam::types::{EntityType, ManagedPolicyDetail, RoleDetail, Tag};
use serde_json::{Value, json};

use super::aws::{
    PROPAGATION, call, create_token_in, is_not_found, policy_text, policy_value, resource_tags,
    tag_changes, tags_with_token,
};
use super::{
    CreateMode, Provider, ProviderError, ReadOptions, ReadRequest, ReadResult, failed_batch,
};
use crate::connect::aws::{AwsClients, sdk_error};
use crate::connect::limit::{CallLimit, in_order};
use crate::connect::retry::RetryPolicy;
use crate::resource::iam::{ACCOUNT_PLACEHOLDER, policy_arn, role_arn};
use crate::resource::{
    Attributes, CreateToken, Resource, ResourceAddress, ResourceType, required_str, tags_of,
    tags_value,
};

const SERVICE: &str = "IAM";

fn iam_tags(tags: BTreeMap<String, String>) -> Result<Vec<Tag>, ProviderError> {
    tags.into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| ProviderError::Config(format!("IAM tag could not be built: {e}")))
        })
        .collect()
}

/// Tags as the resource's `tags` attribute sees them (the create token left out).
fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    resource_tags(tags.iter().map(|t| (t.key(), t.value())))
}

fn token_of(tags: &[Tag]) -> Option<CreateToken> {
    create_token_in(tags.iter().map(|t| (t.key(), t.value())))
}

/// IAM policies, roles and their attachments.
pub struct IamProvider {
    aws: Arc<AwsClients>,
    retry: RetryPolicy,
}

impl IamProvider {
    /// A provider calling IAM through `aws`, with the default retry policy.
    pub fn new(aws: Arc<AwsClients>) -> Self {
        IamProvider {
            aws,
            retry: RetryPolicy::DEFAULT,
        }
    }

    fn iam(&self) -> &aws_sdk_iam::Client {
        self.aws.iam()
    }

    async fn real_arn(&self, placeholder_arn: &str) -> Result<String, ProviderError> {
        let account = self.aws.account_id().await?;
        Ok(placeholder_arn.replace(ACCOUNT_PLACEHOLDER, account))
    }

    // --- policy ---------------------------------------------------------------------

    async fn read_policy(&self, current: &Attributes) -> Result<Option<Attributes>, ProviderError> {
        let name = required_str(current, "name")?;
        let arn = self.real_arn(&policy_arn(name)).await?;
        let account = self.aws.account_id().await?;
        let policy = call(&self.retry, SERVICE, || {
            self.iam().get_policy().policy_arn(&arn).send()
        })
        .await;
        let policy = match policy {
            Ok(o) => o,
            Err(e) if is_not_found(e.code()) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(p) = policy.policy() else {
            return Ok(None);
        };
        let version = p.default_version_id().unwrap_or("v1").to_owned();
        let document = call(&self.retry, SERVICE, || {
            self.iam()
                .get_policy_version()
                .policy_arn(&arn)
                .version_id(&version)
                .send()
        })
        .await?;
        let document = document
            .policy_version()
            .and_then(|v| v.document())
            .map(|d| policy_value(d, account))
            .unwrap_or(Value::Null);
        let tags = self.policy_tags(&arn).await?;
        Ok(Some(policy_attributes(
            name,
            p.description(),
            document,
            tags,
            &arn,
        )))
    }

    async fn policy_tags(&self, arn: &str) -> Result<BTreeMap<String, String>, ProviderError> {
        Ok(tag_map(&self.raw_policy_tags(arn).await?))
    }

    /// Every tag of the policy, the create token included.
    async fn raw_policy_tags(&self, arn: &str) -> Result<Vec<Tag>, ProviderError> {
        let out = call(&self.retry, SERVICE, || {
            self.iam().list_policy_tags().policy_arn(arn).send()
        })
        .await?;
        Ok(out.tags().to_vec())
    }

    async fn create_policy(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let name = required_str(a, "name")?;
        let account = self.aws.account_id().await?;
        let document = policy_text(a, "document", account)?;
        let tags = iam_tags(tags_with_token(a, mode.token()))?;
        let description = required_str(a, "description")?;
        let created = call(&self.retry, SERVICE, || {
            self.iam()
                .create_policy()
                .policy_name(name)
                .description(description)
                .policy_document(&document)
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await;
        let arn = self.real_arn(&policy_arn(name)).await?;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == "EntityAlreadyExists" => {
                // Ours only if it carries this create's token: made by an attempt
                // whose answer was lost, or by the run that this one resumes.
                let tags = self.raw_policy_tags(&arn).await?;
                if token_of(&tags) != Some(mode.token()) {
                    return Err(ProviderError::AlreadyExists {
                        what: format!("IAM policy {name:?}"),
                    });
                }
                if mode.is_resume() {
                    // The spec may have changed since the interrupted run.
                    self.set_policy_document(&arn, &document).await?;
                    self.converge_policy_tags(&arn, a).await?;
                }
            }
            Err(e) => return Err(e),
        }
        Ok(Attributes::from([("arn".into(), json!(arn))]))
    }

    /// Makes `document` the policy's default version, deleting the oldest other version
    /// first when IAM's limit of five is reached.
    async fn set_policy_document(&self, arn: &str, document: &str) -> Result<(), ProviderError> {
        let versions = call(&self.retry, SERVICE, || {
            self.iam().list_policy_versions().policy_arn(arn).send()
        })
        .await?;
        let mut old: Vec<_> = versions
            .versions()
            .iter()
            .filter(|v| !v.is_default_version())
            .filter_map(|v| Some((v.create_date()?.secs(), v.version_id()?.to_owned())))
            .collect();
        old.sort();
        if versions.versions().len() >= 5
            && let Some((_, oldest)) = old.first()
        {
            self.delete_policy_version(arn, oldest).await?;
        }
        call(&self.retry, SERVICE, || {
            self.iam()
                .create_policy_version()
                .policy_arn(arn)
                .policy_document(document)
                .set_as_default(true)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete_policy_version(&self, arn: &str, version: &str) -> Result<(), ProviderError> {
        let r = call(&self.retry, SERVICE, || {
            self.iam()
                .delete_policy_version()
                .policy_arn(arn)
                .version_id(version)
                .send()
        })
        .await;
        match r {
            Err(e) if !is_not_found(e.code()) => Err(e),
            _ => Ok(()),
        }
    }

    async fn converge_policy_tags(&self, arn: &str, a: &Attributes) -> Result<(), ProviderError> {
        let have = self.policy_tags(arn).await?;
        let (set, remove) = tag_changes(&tags_of(a), &have);
        if !remove.is_empty() {
            call(&self.retry, SERVICE, || {
                self.iam()
                    .untag_policy()
                    .policy_arn(arn)
                    .set_tag_keys(Some(remove.clone()))
                    .send()
            })
            .await?;
        }
        if !set.is_empty() {
            let tags = iam_tags(set)?;
            call(&self.retry, SERVICE, || {
                self.iam()
                    .tag_policy()
                    .policy_arn(arn)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        }
        Ok(())
    }

    async fn delete_policy(&self, current: &Attributes) -> Result<(), ProviderError> {
        let arn = self
            .real_arn(&policy_arn(required_str(current, "name")?))
            .await?;
        // Every version but the default one goes first.
        let versions = call(&self.retry, SERVICE, || {
            self.iam().list_policy_versions().policy_arn(&arn).send()
        })
        .await;
        let versions = match versions {
            Ok(v) => v,
            Err(e) if is_not_found(e.code()) => return Ok(()),
            Err(e) => return Err(e),
        };
        for v in versions
            .versions()
            .iter()
            .filter(|v| !v.is_default_version())
        {
            if let Some(id) = v.version_id() {
                self.delete_policy_version(&arn, id).await?;
            }
        }
        let r = call(&self.retry, SERVICE, || {
            self.iam().delete_policy().policy_arn(&arn).send()
        })
        .await;
        match r {
            Err(e) if !is_not_found(e.code()) => Err(e),
            _ => Ok(()),
        }
    }

    // --- role -----------------------------------------------------------------------

    async fn read_role(&self, current: &Attributes) -> Result<Option<Attributes>, ProviderError> {
        let name = required_str(current, "name")?;
        let account = self.aws.account_id().await?;
        let role = call(&self.retry, SERVICE, || {
            self.iam().get_role().role_name(name).send()
        })
        .await;
        let role = match role {
            Ok(o) => o,
            Err(e) if is_not_found(e.code()) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(r) = role.role() else {
            return Ok(None);
        };
        let tags = self.role_tags(name).await?;
        Ok(Some(role_attributes(
            name,
            r.description(),
            r.assume_role_policy_document(),
            tags,
            r.arn(),
            account,
        )))
    }

    async fn role_tags(&self, name: &str) -> Result<BTreeMap<String, String>, ProviderError> {
        Ok(tag_map(&self.raw_role_tags(name).await?))
    }

    /// Every tag of the role, the create token included.
    async fn raw_role_tags(&self, name: &str) -> Result<Vec<Tag>, ProviderError> {
        let out = call(&self.retry, SERVICE, || {
            self.iam().list_role_tags().role_name(name).send()
        })
        .await?;
        Ok(out.tags().to_vec())
    }

    async fn create_role(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let name = required_str(a, "name")?;
        let account = self.aws.account_id().await?;
        let trust = policy_text(a, "assume_role_policy", account)?;
        let tags = iam_tags(tags_with_token(a, mode.token()))?;
        let description = required_str(a, "description")?;
        let created = call(&self.retry, SERVICE, || {
            self.iam()
                .create_role()
                .role_name(name)
                .description(description)
                .assume_role_policy_document(&trust)
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await;
        match created {
            Ok(o) => Ok(Attributes::from([(
                "arn".into(),
                json!(o.role().map(|r| r.arn().to_owned())),
            )])),
            Err(e) if e.code() == "EntityAlreadyExists" => {
                // Ours only if it carries this create's token (see the policy).
                let tags = self.raw_role_tags(name).await?;
                if token_of(&tags) != Some(mode.token()) {
                    return Err(ProviderError::AlreadyExists {
                        what: format!("IAM role {name:?}"),
                    });
                }
                if mode.is_resume() {
                    let all = ["description", "assume_role_policy", "tags"].map(String::from);
                    self.update_role(a, &all).await?;
                }
                Ok(Attributes::from([(
                    "arn".into(),
                    json!(self.real_arn(&role_arn(name)).await?),
                )]))
            }
            Err(e) => Err(e),
        }
    }

    async fn update_role(&self, a: &Attributes, changed: &[String]) -> Result<(), ProviderError> {
        let name = required_str(a, "name")?;
        let wants = |n: &str| changed.iter().any(|c| c == n);
        if wants("assume_role_policy") {
            let account = self.aws.account_id().await?;
            let trust = policy_text(a, "assume_role_policy", account)?;
            call(&self.retry, SERVICE, || {
                self.iam()
                    .update_assume_role_policy()
                    .role_name(name)
                    .policy_document(&trust)
                    .send()
            })
            .await?;
        }
        if wants("description") {
            let description = required_str(a, "description")?;
            call(&self.retry, SERVICE, || {
                self.iam()
                    .update_role()
                    .role_name(name)
                    .description(description)
                    .send()
            })
            .await?;
        }
        if wants("tags") {
            let have = self.role_tags(name).await?;
            let (set, remove) = tag_changes(&tags_of(a), &have);
            if !remove.is_empty() {
                call(&self.retry, SERVICE, || {
                    self.iam()
                        .untag_role()
                        .role_name(name)
                        .set_tag_keys(Some(remove.clone()))
                        .send()
                })
                .await?;
            }
            if !set.is_empty() {
                let tags = iam_tags(set)?;
                call(&self.retry, SERVICE, || {
                    self.iam()
                        .tag_role()
                        .role_name(name)
                        .set_tags(Some(tags.clone()))
                        .send()
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn delete_role(&self, current: &Attributes) -> Result<(), ProviderError> {
        let name = required_str(current, "name")?;
        let r = call(&self.retry, SERVICE, || {
            self.iam().delete_role().role_name(name).send()
        })
        .await;
        match r {
            Err(e) if !is_not_found(e.code()) => Err(e),
            _ => Ok(()),
        }
    }

    // --- attachment -------------------------------------------------------------------

    async fn read_attachment(
        &self,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let role = required_str(current, "role")?;
        let want = self.real_arn(required_str(current, "policy_arn")?).await?;
        let mut marker: Option<String> = None;
        loop {
            let page = call(&self.retry, SERVICE, || {
                self.iam()
                    .list_attached_role_policies()
                    .role_name(role)
                    .set_marker(marker.clone())
                    .send()
            })
            .await;
            let page = match page {
                Ok(p) => p,
                Err(e) if is_not_found(e.code()) => return Ok(None),
                Err(e) => return Err(e),
            };
            if page
                .attached_policies()
                .iter()
                .any(|p| p.policy_arn() == Some(&want))
            {
                return Ok(Some(attachment_attributes(role, current)));
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    async fn attach(&self, a: &Attributes) -> Result<(), ProviderError> {
        let role = required_str(a, "role")?;
        let arn = self.real_arn(required_str(a, "policy_arn")?).await?;
        // The role and policy were likely created a moment ago.
        PROPAGATION
            .run(SERVICE, || async {
                self.iam()
                    .attach_role_policy()
                    .role_name(role)
                    .policy_arn(&arn)
                    .send()
                    .await
                    .map_err(|e| {
                        let e = sdk_error(SERVICE, e);
                        if is_not_found(e.code()) {
                            e.into_retryable()
                        } else {
                            e
                        }
                    })
            })
            .await?;
        Ok(())
    }

    async fn detach(&self, current: &Attributes) -> Result<(), ProviderError> {
        let role = required_str(current, "role")?;
        let arn = self.real_arn(required_str(current, "policy_arn")?).await?;
        let r = call(&self.retry, SERVICE, || {
            self.iam()
                .detach_role_policy()
                .role_name(role)
                .policy_arn(&arn)
                .send()
        })
        .await;
        match r {
            Err(e) if !is_not_found(e.code()) => Err(e),
            _ => Ok(()),
        }
    }
}

/// What a bulk read found in the account for the roles and policies of one batch.
struct AccountDetails {
    account: String,
    /// Role name -> its details (trust policy, tags, attached policies).
    roles: HashMap<String, RoleDetail>,
    /// Role name -> its description (which the details leave out).
    descriptions: HashMap<String, String>,
    /// Policy ARN -> its details (description, versions with the default one).
    policies: HashMap<String, ManagedPolicyDetail>,
    /// Policy ARN -> its tags (which the details leave out: one call per policy).
    policy_tags: HashMap<String, BTreeMap<String, String>>,
}

impl IamProvider {
    /// The roles and local policies of the account, read with
    /// `GetAccountAuthorizationDetails` (pages of 1000) and `ListRoles` (for the
    /// roles' descriptions), kept for the names in `reads` only; then the tags of the
    /// policies found, one `ListPolicyTags` each (IAM returns a managed policy's tags
    /// nowhere else).
    ///
    /// Scoped by name, not by path: `GetAccountAuthorizationDetails` takes no path
    /// prefix (only `ListRoles` and `ListPolicies` do), so a path would not make the
    /// answer smaller, and moving existing roles to a path would replace them.
    async fn account_details(
        &self,
        reads: &[ReadRequest<'_>],
        options: ReadOptions,
    ) -> Result<AccountDetails, ProviderError> {
        let account = self.aws.account_id().await?.to_owned();
        let mut role_names = HashSet::new();
        let mut policy_arns = HashSet::new();
        for (address, current) in reads {
            match address.resource_type {
                ResourceType::IamPolicy => {
                    let arn = policy_arn(required_str(current, "name")?);
                    policy_arns.insert(arn.replace(ACCOUNT_PLACEHOLDER, &account));
                }
                ResourceType::IamRole => {
                    role_names.insert(required_str(current, "name")?.to_owned());
                }
                ResourceType::IamRolePolicyAttachment => {
                    role_names.insert(required_str(current, "role")?.to_owned());
                }
                other => return Err(unsupported(other)),
            }
        }
        let mut details = AccountDetails {
            account,
            roles: HashMap::new(),
            descriptions: HashMap::new(),
            policies: HashMap::new(),
            policy_tags: HashMap::new(),
        };
        let mut marker: Option<String> = None;
        loop {
            let page = call(&self.retry, SERVICE, || {
                self.iam()
                    .get_account_authorization_details()
                    .filter(EntityType::Role)
                    .filter(EntityType::LocalManagedPolicy)
                    .max_items(1000)
                    .set_marker(marker.clone())
                    .send()
            })
            .await?;
            for r in page.role_detail_list() {
                if let Some(name) = r.role_name().filter(|n| role_names.contains(*n)) {
                    details.roles.insert(name.to_owned(), r.clone());
                }
            }
            for p in page.policies() {
                if let Some(arn) = p.arn().filter(|a| policy_arns.contains(*a)) {
                    details.policies.insert(arn.to_owned(), p.clone());
                }
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        if !details.roles.is_empty() {
            let mut marker: Option<String> = None;
            loop {
                let page = call(&self.retry, SERVICE, || {
                    self.iam()
                        .list_roles()
                        .max_items(1000)
                        .set_marker(marker.clone())
                        .send()
                })
                .await?;
                for r in page.roles() {
                    if details.roles.contains_key(r.role_name()) {
                        details.descriptions.insert(
                            r.role_name().to_owned(),
                            r.description().unwrap_or("").to_owned(),
                        );
                    }
                }
                match page.marker() {
                    Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
                    _ => break,
                }
            }
        }
        let limit = CallLimit::new(options.parallelism);
        // By index: a closure over borrowed keys would be general over lifetimes that
        // the trait's `Send` future cannot prove.
        let arns: Vec<String> = details.policies.keys().cloned().collect();
        let tags = in_order(
            (0..arns.len()).map(|i| {
                let (limit, arn) = (&limit, &arns[i]);
                async move { (arn.clone(), limit.run(self.policy_tags(arn)).await) }
            }),
            options.parallelism,
        )
        .await;
        for (arn, t) in tags {
            details.policy_tags.insert(arn, t?);
        }
        Ok(details)
    }

    /// What a read of `address` answers, from `details`: the same as `read`.
    fn answer(
        &self,
        details: &AccountDetails,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> ReadResult {
        let account = details.account.as_str();
        match address.resource_type {
            ResourceType::IamPolicy => {
                let name = required_str(current, "name")?;
                let arn = policy_arn(name).replace(ACCOUNT_PLACEHOLDER, account);
                let Some(p) = details.policies.get(&arn) else {
                    return Ok(None);
                };
                let version = p.default_version_id().unwrap_or("v1");
                let document = p
                    .policy_version_list()
                    .iter()
                    .find(|v| v.version_id() == Some(version))
                    .and_then(|v| v.document())
                    .map(|d| policy_value(d, account))
                    .unwrap_or(Value::Null);
                let tags = details.policy_tags.get(&arn).cloned().unwrap_or_default();
                Ok(Some(policy_attributes(
                    name,
                    p.description(),
                    document,
                    tags,
                    &arn,
                )))
            }
            ResourceType::IamRole => {
                let name = required_str(current, "name")?;
                let Some(r) = details.roles.get(name) else {
                    return Ok(None);
                };
                Ok(Some(role_attributes(
                    name,
                    details.descriptions.get(name).map(String::as_str),
                    r.assume_role_policy_document(),
                    tag_map(r.tags()),
                    r.arn().unwrap_or(""),
                    account,
                )))
            }
            ResourceType::IamRolePolicyAttachment => {
                let role = required_str(current, "role")?;
                let want =
                    required_str(current, "policy_arn")?.replace(ACCOUNT_PLACEHOLDER, account);
                let attached = details.roles.get(role).is_some_and(|r| {
                    r.attached_managed_policies()
                        .iter()
                        .any(|p| p.policy_arn() == Some(&want))
                });
                Ok(attached.then(|| attachment_attributes(role, current)))
            }
            other => Err(unsupported(other)),
        }
    }
}

fn policy_attributes(
    name: &str,
    description: Option<&str>,
    document: Value,
    tags: BTreeMap<String, String>,
    arn: &str,
) -> Attributes {
    Attributes::from([
        ("name".into(), json!(name)),
        ("description".into(), json!(description.unwrap_or(""))),
        ("document".into(), document),
        ("tags".into(), tags_value(tags)),
        ("arn".into(), json!(arn)),
    ])
}

fn role_attributes(
    name: &str,
    description: Option<&str>,
    trust: Option<&str>,
    tags: BTreeMap<String, String>,
    arn: &str,
    account: &str,
) -> Attributes {
    Attributes::from([
        ("name".into(), json!(name)),
        ("description".into(), json!(description.unwrap_or(""))),
        (
            "assume_role_policy".into(),
            trust
                .map(|d| policy_value(d, account))
                .unwrap_or(Value::Null),
        ),
        ("tags".into(), tags_value(tags)),
        ("arn".into(), json!(arn)),
    ])
}

fn attachment_attributes(role: &str, current: &Attributes) -> Attributes {
    Attributes::from([
        ("role".into(), json!(role)),
        (
            "policy_arn".into(),
            current.get("policy_arn").cloned().unwrap_or(Value::Null),
        ),
    ])
}

#[async_trait]
impl Provider for IamProvider {
    async fn read(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        match address.resource_type {
            ResourceType::IamPolicy => self.read_policy(current).await,
            ResourceType::IamRole => self.read_role(current).await,
            ResourceType::IamRolePolicyAttachment => self.read_attachment(current).await,
            other => Err(unsupported(other)),
        }
    }

    /// In bulk: the whole account's roles and local policies in a few pages (see
    /// [`IamProvider::account_details`]), then one call per policy for its tags.
    async fn read_many(&self, reads: &[ReadRequest<'_>], options: ReadOptions) -> Vec<ReadResult> {
        match self.account_details(reads, options).await {
            Ok(details) => reads
                .iter()
                .map(|(address, current)| self.answer(&details, address, current))
                .collect(),
            Err(e) => failed_batch(reads, &e),
        }
    }

    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        match resource.address.resource_type {
            ResourceType::IamPolicy => self.create_policy(resource, mode).await,
            ResourceType::IamRole => self.create_role(resource, mode).await,
            ResourceType::IamRolePolicyAttachment => {
                self.attach(&resource.attributes).await?;
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
            ResourceType::IamPolicy => {
                let arn = self.real_arn(&policy_arn(required_str(a, "name")?)).await?;
                if changed.iter().any(|c| c == "document") {
                    let account = self.aws.account_id().await?;
                    self.set_policy_document(&arn, &policy_text(a, "document", account)?)
                        .await?;
                }
                if changed.iter().any(|c| c == "tags") {
                    self.converge_policy_tags(&arn, a).await?;
                }
            }
            ResourceType::IamRole => self.update_role(a, changed).await?,
            // Both attributes force a replacement: there is nothing to update.
            ResourceType::IamRolePolicyAttachment => {}
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
            ResourceType::IamPolicy => self.delete_policy(current).await,
            ResourceType::IamRole => self.delete_role(current).await,
            ResourceType::IamRolePolicyAttachment => self.detach(current).await,
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
    ProviderError::Config(format!("the IAM provider does not manage {t} resources"))
}
