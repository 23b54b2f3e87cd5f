//! ElastiCache: a Gold tenant's dedicated Redis cluster.
//!
//! A cluster is created with the create's token as a tag
//! ([`super::aws::CREATE_TOKEN_TAG`]): when CreateCacheCluster answers that the id
//! exists, the cluster is this create's only if it carries the token.
//!
//! A create returns only once the cluster is `available` (or fails after the
//! platform's `cache_wait_timeout_secs`), logging its status while it waits, and
//! records the endpoint as a computed attribute. A cluster in `deleting` counts as
//! gone (see [`moto_quirks::cluster_status_means_gone`]); a create whose id such a
//! cluster still holds waits for the deletion to end, as long as it would wait for a
//! new cluster.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_elasticache::types::{CacheCluster, Tag};
use serde_json::{Value, json};

use super::aws::{
    call, create_token_in, is_not_found, resource_tags, tag_changes, tags_with_token,
};
use super::{
    CreateMode, Provider, ProviderError, ReadOptions, ReadRequest, ReadResult, failed_batch,
};
use crate::connect::aws::{AwsClients, moto_quirks};
use crate::connect::limit::{CallLimit, in_order};
use crate::connect::retry::RetryPolicy;
use crate::resource::{
    Attributes, CreateToken, Resource, ResourceAddress, ResourceType, required_str, tags_of,
    tags_value,
};

const SERVICE: &str = "ElastiCache";

/// How often a create looks at the cluster while it waits for it.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Dedicated ElastiCache clusters.
pub struct ElasticacheProvider {
    aws: Arc<AwsClients>,
    retry: RetryPolicy,
    wait_timeout: Duration,
}

/// ElastiCache's tags as key-value pairs (a tag without a key is no tag).
fn tag_pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect()
}

fn endpoint_of(c: &CacheCluster) -> Value {
    let ep = c
        .cache_nodes()
        .iter()
        .find_map(|n| n.endpoint())
        .or(c.configuration_endpoint());
    match ep.and_then(|e| Some((e.address()?, e.port()?))) {
        Some((address, port)) => json!(format!("{address}:{port}")),
        None => Value::Null,
    }
}

/// What a read answers for the cluster `c` that `current` names.
fn cluster_attributes(
    current: &Attributes,
    c: &CacheCluster,
    arn: String,
    tags: Value,
) -> Attributes {
    Attributes::from([
        (
            "cluster_id".into(),
            current.get("cluster_id").cloned().unwrap_or(Value::Null),
        ),
        (
            "region".into(),
            current.get("region").cloned().unwrap_or(Value::Null),
        ),
        ("engine".into(), json!(c.engine().unwrap_or(""))),
        ("node_type".into(), json!(c.cache_node_type().unwrap_or(""))),
        ("num_nodes".into(), json!(c.num_cache_nodes().unwrap_or(0))),
        ("tags".into(), tags),
        ("arn".into(), json!(arn)),
        ("endpoint".into(), endpoint_of(c)),
    ])
}

impl ElasticacheProvider {
    /// A provider over `aws` whose creates wait at most `wait_timeout` for a cluster
    /// to become available.
    pub fn new(aws: Arc<AwsClients>, wait_timeout: Duration) -> Self {
        let wait_timeout = wait_timeout.max(Duration::from_secs(1));
        ElasticacheProvider {
            aws,
            retry: RetryPolicy::DEFAULT,
            wait_timeout,
        }
    }

    fn client(&self, a: &Attributes) -> Result<aws_sdk_elasticache::Client, ProviderError> {
        Ok(self.aws.elasticache(required_str(a, "region")?))
    }

    /// The cluster, or `None` when it does not exist or is being deleted.
    async fn describe(
        &self,
        client: &aws_sdk_elasticache::Client,
        id: &str,
    ) -> Result<Option<CacheCluster>, ProviderError> {
        let r = call(&self.retry, SERVICE, || {
            client
                .describe_cache_clusters()
                .cache_cluster_id(id)
                .show_cache_node_info(true)
                .send()
        })
        .await;
        match r {
            Ok(o) => Ok(o.cache_clusters().first().cloned().filter(|c| {
                !moto_quirks::cluster_status_means_gone(c.cache_cluster_status().unwrap_or(""))
            })),
            Err(e) if is_not_found(e.code()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The create token the cluster carries, if any.
    async fn token(
        &self,
        client: &aws_sdk_elasticache::Client,
        a: &Attributes,
    ) -> Result<Option<CreateToken>, ProviderError> {
        let arn = self.arn(a).await?;
        let tags = call(&self.retry, SERVICE, || {
            client.list_tags_for_resource().resource_name(&arn).send()
        })
        .await?;
        let pairs = tag_pairs(tags.tag_list());
        Ok(create_token_in(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ))
    }

    async fn arn(&self, a: &Attributes) -> Result<String, ProviderError> {
        let account = self.aws.account_id().await?;
        Ok(format!(
            "arn:aws:elasticache:{}:{account}:cluster:{}",
            required_str(a, "region")?,
            required_str(a, "cluster_id")?
        ))
    }

    async fn read_cluster(
        &self,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let client = self.client(current)?;
        let id = required_str(current, "cluster_id")?;
        let Some(c) = self.describe(&client, id).await? else {
            return Ok(None);
        };
        let (arn, tags) = self.cluster_tags(&client, &c, current).await?;
        Ok(Some(cluster_attributes(current, &c, arn, tags)))
    }

    /// The cluster's ARN and its tags (one `ListTagsForResource`).
    async fn cluster_tags(
        &self,
        client: &aws_sdk_elasticache::Client,
        c: &CacheCluster,
        current: &Attributes,
    ) -> Result<(String, Value), ProviderError> {
        let arn = match c.arn() {
            Some(a) => a.to_owned(),
            None => self.arn(current).await?,
        };
        let tags = call(&self.retry, SERVICE, || {
            client.list_tags_for_resource().resource_name(&arn).send()
        })
        .await?;
        let tags = tags_value(resource_tags(tag_pairs(tags.tag_list())));
        Ok((arn, tags))
    }

    /// Every cluster of `region` that is not being deleted, by id: one
    /// `DescribeCacheClusters` per 100 clusters.
    async fn clusters_in(
        &self,
        region: &str,
    ) -> Result<HashMap<String, CacheCluster>, ProviderError> {
        let client = self.aws.elasticache(region);
        let mut clusters = HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            let page = call(&self.retry, SERVICE, || {
                client
                    .describe_cache_clusters()
                    .show_cache_node_info(true)
                    .max_records(100)
                    .set_marker(marker.clone())
                    .send()
            })
            .await?;
            for c in page.cache_clusters() {
                let gone =
                    moto_quirks::cluster_status_means_gone(c.cache_cluster_status().unwrap_or(""));
                if let (Some(id), false) = (c.cache_cluster_id(), gone) {
                    clusters.insert(id.to_owned(), c.clone());
                }
            }
            match page.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                _ => return Ok(clusters),
            }
        }
    }

    /// The clusters of `reads`: one listing per region, then the tags of each
    /// cluster found, at most `options.parallelism` calls at once.
    async fn read_all(
        &self,
        reads: &[ReadRequest<'_>],
        options: ReadOptions,
    ) -> Result<Vec<ReadResult>, ProviderError> {
        let mut regions = BTreeSet::new();
        for (address, current) in reads {
            if address.resource_type != ResourceType::ElasticacheCluster {
                return Err(unsupported(address.resource_type));
            }
            regions.insert(required_str(current, "region")?);
        }
        let mut clusters = HashMap::new();
        for region in regions {
            clusters.insert(region, self.clusters_in(region).await?);
        }
        let limit = CallLimit::new(options.parallelism);
        // By index: a closure over borrowed items would be general over lifetimes
        // that the trait's `Send` future cannot prove.
        let answers = (0..reads.len()).map(|i| {
            let (clusters, limit, current) = (&clusters, &limit, reads[i].1);
            async move {
                let region = required_str(current, "region")?;
                let id = required_str(current, "cluster_id")?;
                let Some(c) = clusters.get(region).and_then(|r| r.get(id)) else {
                    return Ok(None);
                };
                let client = self.aws.elasticache(region);
                let (arn, tags) = limit.run(self.cluster_tags(&client, c, current)).await?;
                Ok(Some(cluster_attributes(current, c, arn, tags)))
            }
        });
        Ok(in_order(answers, options.parallelism).await)
    }

    async fn create_cluster(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let client = self.client(a)?;
        let id = required_str(a, "cluster_id")?;
        let nodes = a
            .get("num_nodes")
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(1);
        let tags: Vec<Tag> = tags_with_token(a, mode.token())
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let (engine, node_type) = (required_str(a, "engine")?, required_str(a, "node_type")?);
        let send = || {
            client
                .create_cache_cluster()
                .cache_cluster_id(id)
                .engine(engine)
                .cache_node_type(node_type)
                .num_cache_nodes(nodes)
                .set_tags(Some(tags.clone()))
                .send()
        };
        let mut waited = false;
        loop {
            let e = match call(&self.retry, SERVICE, send).await {
                Ok(_) => break,
                Err(e) if e.code() == "CacheClusterAlreadyExists" => e,
                Err(e) => return Err(e),
            };
            match self.describe(&client, id).await? {
                // Ours only if it carries this create's token: made by an attempt
                // whose answer was lost, or by the run that this one resumes.
                Some(_) if self.token(&client, a).await? != Some(mode.token()) => {
                    return Err(ProviderError::AlreadyExists {
                        what: format!("ElastiCache cluster {id:?}"),
                    });
                }
                Some(_) => {
                    if mode.is_resume() {
                        let all = ["node_type", "tags"].map(String::from);
                        self.update_cluster(a, &all).await?;
                    }
                    break;
                }
                // Held by a cluster being deleted (a replacement, or a tenant applied
                // again right after its destroy or rollback): AWS frees the id when it
                // is done.
                None if !waited => {
                    self.wait_deleted(&client, id).await?;
                    waited = true;
                }
                // Deleted again while this create waited.
                None => {
                    return Err(ProviderError::Api {
                        service: SERVICE,
                        code: e.code().to_owned(),
                        message: format!(
                            "cluster id {id:?} is still held by a cluster being deleted; apply again once it is gone"
                        ),
                        retryable: false,
                    });
                }
            }
        }
        let cluster = self.wait_available(&client, id).await?;
        Ok(Attributes::from([
            (
                "arn".into(),
                json!(match cluster.arn() {
                    Some(arn) => arn.to_owned(),
                    None => self.arn(a).await?,
                }),
            ),
            ("endpoint".into(), endpoint_of(&cluster)),
        ]))
    }

    /// Polls until the cluster is `available`, logging its status on the way.
    async fn wait_available(
        &self,
        client: &aws_sdk_elasticache::Client,
        id: &str,
    ) -> Result<CacheCluster, ProviderError> {
        let t0 = Instant::now();
        let mut last_status = String::new();
        loop {
            let cluster = self
                .describe(client, id)
                .await?
                .ok_or_else(|| ProviderError::Api {
                    service: SERVICE,
                    code: "CacheClusterNotFound".into(),
                    message: format!("cluster {id:?} disappeared while it was being created"),
                    retryable: false,
                })?;
            let status = cluster
                .cache_cluster_status()
                .unwrap_or("unknown")
                .to_owned();
            if status == "available" {
                tracing::info!(
                    cluster = id,
                    elapsed_s = t0.elapsed().as_secs(),
                    "cache cluster available"
                );
                return Ok(cluster);
            }
            if matches!(
                status.as_str(),
                "create-failed" | "incompatible-network" | "restore-failed"
            ) {
                return Err(ProviderError::Api {
                    service: SERVICE,
                    code: status.clone(),
                    message: format!("cluster {id:?} ended in status {status:?}"),
                    retryable: false,
                });
            }
            if status != last_status {
                tracing::info!(cluster = id, status = %status, elapsed_s = t0.elapsed().as_secs(), "waiting for cache cluster");
                last_status = status.clone();
            }
            if t0.elapsed() >= self.wait_timeout {
                return Err(self.timed_out(
                    &format!("cluster {id:?} is still {status:?}"),
                    "to keep waiting",
                ));
            }
            tokio::time::sleep(POLL_INTERVAL.min(self.wait_timeout)).await;
        }
    }

    /// A wait that ran out: `what` is still so after the platform's timeout; apply
    /// again `then`.
    fn timed_out(&self, what: &str, then: &str) -> ProviderError {
        ProviderError::Api {
            service: SERVICE,
            code: "WaitTimeout".into(),
            message: format!(
                "{what} after {}s (cache_wait_timeout_secs in [aws] of platform.toml); apply again {then}",
                self.wait_timeout.as_secs()
            ),
            retryable: false,
        }
    }

    /// Waits until no cluster, not even one being deleted, holds `id` (at most the
    /// platform's `cache_wait_timeout_secs`), polling soon at first.
    async fn wait_deleted(
        &self,
        client: &aws_sdk_elasticache::Client,
        id: &str,
    ) -> Result<(), ProviderError> {
        let t0 = Instant::now();
        let mut pause = Duration::from_secs(1);
        tracing::info!(
            cluster = id,
            "waiting for a cluster being deleted to free its id"
        );
        loop {
            let listed = call(&self.retry, SERVICE, || {
                client.describe_cache_clusters().cache_cluster_id(id).send()
            })
            .await;
            match listed {
                Ok(o) if !o.cache_clusters().is_empty() => {}
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(e.code()) => return Ok(()),
                Err(e) => return Err(e),
            }
            if t0.elapsed() >= self.wait_timeout {
                return Err(self.timed_out(
                    &format!("cluster id {id:?} is still held by a cluster being deleted"),
                    "once it is gone",
                ));
            }
            tokio::time::sleep(pause.min(self.wait_timeout)).await;
            pause = (pause * 2).min(POLL_INTERVAL);
        }
    }

    async fn update_cluster(
        &self,
        a: &Attributes,
        changed: &[String],
    ) -> Result<(), ProviderError> {
        let client = self.client(a)?;
        let id = required_str(a, "cluster_id")?;
        if changed.iter().any(|c| c == "node_type") {
            let node_type = required_str(a, "node_type")?;
            let current = self.describe(&client, id).await?;
            if current.as_ref().and_then(|c| c.cache_node_type()) != Some(node_type) {
                call(&self.retry, SERVICE, || {
                    client
                        .modify_cache_cluster()
                        .cache_cluster_id(id)
                        .cache_node_type(node_type)
                        .apply_immediately(true)
                        .send()
                })
                .await?;
                self.wait_available(&client, id).await?;
            }
        }
        if changed.iter().any(|c| c == "tags") {
            let arn = self.arn(a).await?;
            let have = call(&self.retry, SERVICE, || {
                client.list_tags_for_resource().resource_name(&arn).send()
            })
            .await?;
            let have = resource_tags(tag_pairs(have.tag_list()));
            let (set, remove) = tag_changes(&tags_of(a), &have);
            if !remove.is_empty() {
                call(&self.retry, SERVICE, || {
                    client
                        .remove_tags_from_resource()
                        .resource_name(&arn)
                        .set_tag_keys(Some(remove.clone()))
                        .send()
                })
                .await?;
            }
            if !set.is_empty() {
                let tags: Vec<Tag> = set
                    .into_iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect();
                call(&self.retry, SERVICE, || {
                    client
                        .add_tags_to_resource()
                        .resource_name(&arn)
                        .set_tags(Some(tags.clone()))
                        .send()
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn delete_cluster(&self, current: &Attributes) -> Result<(), ProviderError> {
        let client = self.client(current)?;
        let id = required_str(current, "cluster_id")?;
        if self.describe(&client, id).await?.is_none() {
            return Ok(());
        }
        let r = call(&self.retry, SERVICE, || {
            client.delete_cache_cluster().cache_cluster_id(id).send()
        })
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(e.code()) => Ok(()),
            // Already being deleted.
            Err(e)
                if e.code() == "InvalidCacheClusterState"
                    && self.describe(&client, id).await?.is_none() =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Provider for ElasticacheProvider {
    async fn read(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        match address.resource_type {
            ResourceType::ElasticacheCluster => self.read_cluster(current).await,
            other => Err(unsupported(other)),
        }
    }

    /// In bulk: one `DescribeCacheClusters` per region for every cluster, then the
    /// tags of those that exist.
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
        match resource.address.resource_type {
            ResourceType::ElasticacheCluster => self.create_cluster(resource, mode).await,
            other => Err(unsupported(other)),
        }
    }

    async fn update(
        &self,
        resource: &Resource,
        _current: &Attributes,
        changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        match resource.address.resource_type {
            ResourceType::ElasticacheCluster => {
                self.update_cluster(&resource.attributes, changed).await?;
                Ok(Attributes::new())
            }
            other => Err(unsupported(other)),
        }
    }

    async fn delete(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        match address.resource_type {
            ResourceType::ElasticacheCluster => self.delete_cluster(current).await,
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
    ProviderError::Config(format!(
        "the ElastiCache provider does not manage {t} resources"
    ))
}
