//! AWS Secrets Manager: the tenant's credentials secret.
//!
//! The secret's value ([`Credentials`]: the tenant's PostgreSQL and Redis logins) is
//! written only when the apply hands the passwords over as inputs (the role's and the
//! Redis user's `password`, computed in the same apply): a create always has them, an
//! update has them when the plan renews the credentials, and otherwise leaves the value
//! as it is. The value is never read back: tenantform's own principal is refused it by
//! the secret's resource policy. A read reports the current version's id instead, so
//! that a value changed outside tenantform shows as drift.
//!
//! A refresh of many tenants lists their secrets (`ListSecrets`, one call per region and
//! ten names) and asks each one's policy (`GetResourcePolicy`): Secrets Manager has no
//! listing that carries the policies.
//!
//! A secret is created with the create's token as a tag
//! ([`super::aws::CREATE_TOKEN_TAG`]), like IAM objects. A delete is immediate
//! (`ForceDeleteWithoutRecovery`): a secret in its recovery window keeps its name, so a
//! replacement or a tenant created again could not have it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_secretsmanager::types::Tag;
use serde_json::{Value, json};

use super::aws::{
    PROPAGATION, call, create_token_in, policy_text, policy_value, resource_tags, tag_changes,
    tags_with_token,
};
use super::{
    CreateMode, Provider, ProviderError, ReadOptions, ReadRequest, ReadResult, failed_batch,
};
use crate::connect::aws::AwsClients;
use crate::connect::limit::in_order;
use crate::connect::postgres::PostgresConfig;
use crate::connect::redis::RedisConfig;
use crate::connect::retry::RetryPolicy;
use crate::resource::secret::VALUE;
use crate::resource::{Attributes, Resource, ResourceAddress, required_str, tags_of, tags_value};
use crate::secret::{Credentials, Login};

const SERVICE: &str = "Secrets Manager";

/// The stage of a secret's current value.
const CURRENT: &str = "AWSCURRENT";

/// Error codes of Secrets Manager that mean the secret does not exist.
fn is_not_found(code: &str) -> bool {
    code == "ResourceNotFoundException"
}

/// Secrets in AWS Secrets Manager.
pub struct SecretProvider {
    aws: Arc<AwsClients>,
    postgres: PostgresConfig,
    redis: RedisConfig,
    retry: RetryPolicy,
}

impl SecretProvider {
    /// A provider over `aws` whose credentials name the PostgreSQL and Redis the
    /// engine provisions on (where the tenant's application connects too).
    pub fn new(aws: Arc<AwsClients>, postgres: PostgresConfig, redis: RedisConfig) -> Self {
        SecretProvider {
            aws,
            postgres,
            redis,
            retry: RetryPolicy::DEFAULT,
        }
    }

    fn client(&self, a: &Attributes) -> Result<aws_sdk_secretsmanager::Client, ProviderError> {
        Ok(self.aws.secrets(required_str(a, "region")?))
    }

    /// The value to write, when the apply handed the passwords over; `None` otherwise.
    fn value(&self, a: &Attributes) -> Result<Option<String>, ProviderError> {
        let (Some(pg_password), Some(redis_password)) = (
            crate::resource::attr_str(a, "postgres_password"),
            crate::resource::attr_str(a, "redis_password"),
        ) else {
            return Ok(None);
        };
        let endpoint = self.redis.endpoint();
        let (redis_host, redis_port) = endpoint
            .rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.parse().unwrap_or(6379)))
            .unwrap_or((endpoint.clone(), 6379));
        let credentials = Credentials {
            postgres: Login {
                host: self.postgres.host.clone(),
                port: self.postgres.port,
                dbname: Some(self.postgres.database.clone()),
                username: required_str(a, "postgres_username")?.to_owned(),
                password: pg_password.to_owned(),
            },
            redis: Login {
                host: redis_host,
                port: redis_port,
                dbname: None,
                username: required_str(a, "redis_username")?.to_owned(),
                password: redis_password.to_owned(),
            },
        };
        serde_json::to_string(&credentials)
            .map(Some)
            .map_err(|e| ProviderError::Config(format!("credentials do not serialize: {e}")))
    }

    /// The secret as DescribeSecret tells it; `None` when it is gone or being deleted.
    async fn describe(
        &self,
        client: &aws_sdk_secretsmanager::Client,
        name: &str,
    ) -> Result<
        Option<aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput>,
        ProviderError,
    > {
        match call(&self.retry, SERVICE, || {
            client.describe_secret().secret_id(name).send()
        })
        .await
        {
            Ok(s) if s.deleted_date().is_some() => Ok(None),
            Ok(s) => Ok(Some(s)),
            Err(e) if is_not_found(e.code()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `value` as the secret's current value; returns the new version's id.
    async fn put_value(
        &self,
        client: &aws_sdk_secretsmanager::Client,
        name: &str,
        value: &str,
    ) -> Result<String, ProviderError> {
        // One version id for every attempt: a retry of a write whose answer was lost
        // is the same version, not a second one.
        let version = uuid::Uuid::new_v4().to_string();
        let out = call(&self.retry, SERVICE, || {
            client
                .put_secret_value()
                .secret_id(name)
                .client_request_token(&version)
                .secret_string(value)
                .send()
        })
        .await?;
        Ok(out.version_id().unwrap_or(&version).to_owned())
    }

    /// Puts the resource policy, with the account id in. A role created a moment ago
    /// may not be known to Secrets Manager yet: such a refusal is retried for a while.
    async fn put_policy(
        &self,
        client: &aws_sdk_secretsmanager::Client,
        a: &Attributes,
    ) -> Result<(), ProviderError> {
        let account = self.aws.account_id().await?;
        let policy = policy_text(a, "policy", account)?;
        let name = required_str(a, "name")?;
        PROPAGATION
            .run(SERVICE, || async {
                call(&self.retry, SERVICE, || {
                    client
                        .put_resource_policy()
                        .secret_id(name)
                        .resource_policy(&policy)
                        .send()
                })
                .await
                .map_err(|e| {
                    if e.code() == "MalformedPolicyDocumentException" {
                        e.into_retryable()
                    } else {
                        e
                    }
                })
            })
            .await
            .map(|_| ())
    }

    /// Brings the secret's tags to `want`'s, from the tags it has now (not the ones
    /// state records: a tag changed by hand is drift to repair).
    async fn update_tags(
        &self,
        client: &aws_sdk_secretsmanager::Client,
        name: &str,
        want: &Attributes,
    ) -> Result<(), ProviderError> {
        let have = match self.describe(client, name).await? {
            Some(s) => resource_tags(
                s.tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))),
            ),
            None => BTreeMap::new(),
        };
        let (set, remove) = tag_changes(&tags_of(want), &have);
        if !remove.is_empty() {
            call(&self.retry, SERVICE, || {
                client
                    .untag_resource()
                    .secret_id(name)
                    .set_tag_keys(Some(remove.clone()))
                    .send()
            })
            .await?;
        }
        if !set.is_empty() {
            let tags = secret_tags(set);
            call(&self.retry, SERVICE, || {
                client
                    .tag_resource()
                    .secret_id(name)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        }
        Ok(())
    }
}

fn secret_tags(tags: impl IntoIterator<Item = (String, String)>) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The id of the version in stage `AWSCURRENT`.
fn current_version<'a>(
    versions: Option<impl IntoIterator<Item = (&'a String, &'a Vec<String>)>>,
) -> Value {
    versions
        .into_iter()
        .flatten()
        .find(|(_, stages)| stages.iter().any(|st| st == CURRENT))
        .map_or(Value::Null, |(id, _)| json!(id))
}

/// What DescribeSecret and ListSecrets both tell of a secret.
struct Listed {
    arn: String,
    description: String,
    tags: Value,
    version_id: Value,
}

impl Listed {
    fn new<'a>(
        arn: Option<&str>,
        description: Option<&str>,
        tags: &[Tag],
        versions: Option<impl IntoIterator<Item = (&'a String, &'a Vec<String>)>>,
    ) -> Self {
        let tags = resource_tags(
            tags.iter()
                .filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))),
        );
        Listed {
            arn: arn.unwrap_or("").to_owned(),
            description: description.unwrap_or("").to_owned(),
            tags: tags_value(tags),
            version_id: current_version(versions),
        }
    }
}

impl SecretProvider {
    /// The secret `current` names as a read answers it, from what was listed of it
    /// and its resource policy (one `GetResourcePolicy`); `None` when it is gone.
    async fn attributes(
        &self,
        current: &Attributes,
        listed: Listed,
    ) -> Result<Option<Attributes>, ProviderError> {
        let client = self.client(current)?;
        let name = required_str(current, "name")?;
        let account = self.aws.account_id().await?;
        let policy = match call(&self.retry, SERVICE, || {
            client.get_resource_policy().secret_id(name).send()
        })
        .await
        {
            Ok(p) => p
                .resource_policy()
                .map_or(Value::Null, |text| policy_value(text, account)),
            Err(e) if is_not_found(e.code()) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Attributes::from([
            ("name".into(), json!(name)),
            (
                "region".into(),
                current.get("region").cloned().unwrap_or(Value::Null),
            ),
            ("description".into(), json!(listed.description)),
            ("policy".into(), policy),
            ("tags".into(), listed.tags),
            ("arn".into(), json!(listed.arn)),
            ("version_id".into(), listed.version_id),
        ])))
    }

    /// The secrets of `names` in `region` that exist and are not being deleted, by
    /// name: one `ListSecrets` per ten names (a name filter takes ten prefixes).
    async fn list(
        &self,
        region: &str,
        names: &[&str],
    ) -> Result<HashMap<String, Listed>, ProviderError> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let client = self.aws.secrets(region);
        let mut found = HashMap::new();
        for chunk in names.chunks(10) {
            let filter = Filter::builder()
                .key(FilterNameStringType::Name)
                .set_values(Some(chunk.iter().map(|n| (*n).to_owned()).collect()))
                .build();
            let mut token: Option<String> = None;
            loop {
                let page = call(&self.retry, SERVICE, || {
                    client
                        .list_secrets()
                        .filters(filter.clone())
                        .max_results(100)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
                for s in page.secret_list() {
                    // A name filter matches prefixes: only the names asked for count.
                    if let Some(name) = s.name().filter(|n| chunk.contains(n))
                        && s.deleted_date().is_none()
                    {
                        let listed = Listed::new(
                            s.arn(),
                            s.description(),
                            s.tags(),
                            s.secret_versions_to_stages(),
                        );
                        found.insert(name.to_owned(), listed);
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    /// The secrets of `reads`: one listing per region and ten names, then each one's
    /// policy, at most `options.parallelism` calls at once.
    async fn read_all(
        &self,
        reads: &[ReadRequest<'_>],
        options: ReadOptions,
    ) -> Result<Vec<ReadResult>, ProviderError> {
        let mut names: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (_, current) in reads {
            names
                .entry(required_str(current, "region")?)
                .or_default()
                .push(required_str(current, "name")?);
        }
        let mut listed = HashMap::new();
        for (region, names) in names {
            listed.insert(region, self.list(region, &names).await?);
        }
        let found: Vec<Option<Listed>> = reads
            .iter()
            .map(|(_, current)| {
                let region = crate::resource::attr_str(current, "region")?;
                let name = crate::resource::attr_str(current, "name")?;
                listed.get_mut(region)?.remove(name)
            })
            .collect();
        // Made up front (nothing runs until polled), as `read_each` does: a closure
        // inside the stream would need to be general over lifetimes `Send` cannot prove.
        let answers: Vec<_> = found
            .into_iter()
            .zip(reads)
            .map(|(found, (_, current))| async move {
                match found {
                    Some(l) => self.attributes(current, l).await,
                    None => Ok(None),
                }
            })
            .collect();
        Ok(in_order(answers, options.parallelism).await)
    }
}

#[async_trait]
impl Provider for SecretProvider {
    async fn read(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let client = self.client(current)?;
        let name = required_str(current, "name")?;
        let Some(secret) = self.describe(&client, name).await? else {
            return Ok(None);
        };
        let listed = Listed::new(
            secret.arn(),
            secret.description(),
            secret.tags(),
            secret.version_ids_to_stages(),
        );
        self.attributes(current, listed).await
    }

    async fn read_many(&self, reads: &[ReadRequest<'_>], options: ReadOptions) -> Vec<ReadResult> {
        match self.read_all(reads, options).await {
            Ok(answers) => answers,
            Err(e) => failed_batch(reads, &e),
        }
    }

    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let client = self.client(a)?;
        let name = required_str(a, "name")?;
        let value = self.value(a)?.ok_or_else(|| {
            ProviderError::Config(format!(
                "{}: the credentials to store were not handed over by the apply",
                resource.address
            ))
        })?;
        let description = required_str(a, "description")?;
        let tags = secret_tags(tags_with_token(a, mode.token()));
        let created = call(&self.retry, SERVICE, || {
            client
                .create_secret()
                .name(name)
                .description(description)
                .secret_string(&value)
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await;
        let (arn, version_id) = match created {
            Ok(out) => (
                out.arn().unwrap_or("").to_owned(),
                out.version_id().unwrap_or("").to_owned(),
            ),
            Err(e) if e.code() == "ResourceExistsException" => {
                let existing = self.describe(&client, name).await?;
                let ours = existing.as_ref().is_some_and(|s| {
                    create_token_in(
                        s.tags()
                            .iter()
                            .filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))),
                    ) == Some(mode.token())
                });
                match existing {
                    // Made by an attempt whose answer was lost, or by the run this one
                    // resumes: it takes the value this create has.
                    Some(s) if ours => {
                        let version = self.put_value(&client, name, &value).await?;
                        if s.description() != Some(description) {
                            call(&self.retry, SERVICE, || {
                                client
                                    .update_secret()
                                    .secret_id(name)
                                    .description(description)
                                    .send()
                            })
                            .await?;
                        }
                        self.update_tags(&client, name, a).await?;
                        (s.arn().unwrap_or("").to_owned(), version)
                    }
                    _ => {
                        return Err(ProviderError::AlreadyExists {
                            what: format!("secret {name:?}"),
                        });
                    }
                }
            }
            Err(e) => return Err(e),
        };
        self.put_policy(&client, a).await?;
        Ok(Attributes::from([
            ("arn".into(), json!(arn)),
            ("version_id".into(), json!(version_id)),
        ]))
    }

    async fn update(
        &self,
        resource: &Resource,
        _current: &Attributes,
        changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let client = self.client(a)?;
        let name = required_str(a, "name")?;
        let has = |n: &str| changed.iter().any(|c| c == n);
        if has("description") {
            let description = required_str(a, "description")?;
            call(&self.retry, SERVICE, || {
                client
                    .update_secret()
                    .secret_id(name)
                    .description(description)
                    .send()
            })
            .await?;
        }
        if has("tags") {
            self.update_tags(&client, name, a).await?;
        }
        if has("policy") {
            self.put_policy(&client, a).await?;
        }
        let mut computed = Attributes::new();
        match self.value(a)? {
            Some(value) => {
                let version = self.put_value(&client, name, &value).await?;
                computed.insert("version_id".into(), json!(version));
            }
            None if has(VALUE) => {
                return Err(ProviderError::Config(format!(
                    "{}: the plan renews the credentials, but the apply did not hand them over",
                    resource.address
                )));
            }
            None => {}
        }
        Ok(computed)
    }

    async fn delete(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        let client = self.client(current)?;
        let name = required_str(current, "name")?;
        match call(&self.retry, SERVICE, || {
            client
                .delete_secret()
                .secret_id(name)
                .force_delete_without_recovery(true)
                .send()
        })
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(e.code()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
