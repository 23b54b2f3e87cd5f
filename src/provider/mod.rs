//! Providers: the only code that talks to the outside world's resources.
//!
//! One module per resource family behind one trait, [`Provider`]. The engine never
//! knows what a provider talks to; a provider never knows about plans or state files.
//!
//! Contract every provider keeps:
//! - "Not found" is an answer: `read` returns `Ok(None)`, `delete` of a missing
//!   resource returns `Ok(())`.
//! - `create` is idempotent across its own attempts: an attempt whose answer was lost
//!   (a dropped connection, a timeout) may have made the object, and the next attempt
//!   must take that object as its own, not fail on its name. What proves it is written
//!   by the create itself: the mode's [`CreateToken`], stored with the object (IAM and
//!   ElastiCache tags in the creating call, an S3 bucket's tags before anything else is
//!   set, a PostgreSQL schema's or role's comment in the creating transaction, a Redis
//!   user's channel rule in the creating `ACL SETUSER`), or the commit status of the
//!   creating transaction (PostgreSQL), or the service's own word (S3's
//!   `BucketAlreadyOwnedByYou` for a bucket that was absent when the call began).
//! - An existing object of the name that the create cannot prove its own is someone
//!   else's: `create` fails with [`ProviderError::AlreadyExists`] and must then have
//!   changed nothing. In [`CreateMode::Resume`] (state says a run started this create
//!   and did not see it finish) the same holds: state saying `creating` is no proof.
//!   Only what lives inside an object already proven the tenant's (a table in its
//!   schema, its row of the settings table, its dashboard file) is taken by name. A
//!   resumed object is brought to the desired attributes.
//! - Every call has a timeout; transient failures are retried by
//!   [`crate::connect::retry`], not by the caller.
//! - Connections come from [`crate::connect`], with the configuration the engine
//!   passes in; a provider reads no spec and no environment of its own.
//! - Errors never contain secrets (passwords are not echoed, SQL with a password is
//!   not logged).
//! - [`Provider::read_many`] answers exactly what [`Provider::read`] would answer for
//!   each resource of the batch, attribute by attribute; a family that can read in
//!   bulk overrides it (one `GetAccountAuthorizationDetails` for IAM, one catalog
//!   query per kind for PostgreSQL, `ACL LIST` for Redis, ...). [`ProviderSet::read_many`]
//!   decides, for every family alike, whether a batch is read in bulk or one resource
//!   at a time (a small batch; see [`ReadOptions::bulk_for`]).
//!   Each family's batch bounds its own calls in flight (`ReadOptions::parallelism`
//!   per family, through [`crate::connect::limit::CallLimit`] or a buffered stream),
//!   and the families read at once: PostgreSQL reads never wait for AWS slots, and a
//!   throttled service, whose calls back off while holding their slots, slows down
//!   only its own family.

pub mod aws;
mod catalog;
pub mod dashboard;
pub mod elasticache;
pub mod iam;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod secret;
pub mod settings;
pub mod vector;

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;

use crate::connect::ServiceError;
use crate::resource::{
    AttributeError, Attributes, CreateToken, Resource, ResourceAddress, ResourceType,
};

/// How a create treats an existing resource of the same name, with the token of the
/// create (see [`CreateToken`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateMode {
    /// Nothing of this name was ours before the call: an existing resource belongs to
    /// someone else (fail with `AlreadyExists`) unless this create made it in an attempt
    /// whose answer was lost.
    Fresh(CreateToken),
    /// A previous run started this create and did not see it finish: an existing
    /// resource of that name is ours if it carries the token (or, for what lives inside
    /// an object already proven the tenant's, by its name).
    Resume(CreateToken),
}

impl CreateMode {
    /// The token to write with the object, and to look for on an existing one.
    pub fn token(self) -> CreateToken {
        match self {
            CreateMode::Fresh(t) | CreateMode::Resume(t) => t,
        }
    }

    /// Whether a previous run started this create ([`CreateMode::Resume`]).
    pub fn is_resume(self) -> bool {
        matches!(self, CreateMode::Resume(_))
    }
}

/// A failure of one provider call: what a call to a service can fail with, including
/// a create that finds the name taken ([`ProviderError::AlreadyExists`]). One type, so
/// that what a connection reports passes through a provider unchanged.
pub type ProviderError = ServiceError;

impl From<AttributeError> for ProviderError {
    fn from(e: AttributeError) -> Self {
        ProviderError::Config(e.to_string())
    }
}

/// One resource to read back: its address and its attributes as state records them.
pub type ReadRequest<'a> = (&'a ResourceAddress, &'a Attributes);

/// What one read answers: the resource as it is, `None` when it is gone.
pub type ReadResult = Result<Option<Attributes>, ProviderError>;

/// Whether a refresh reads the families that can in bulk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BulkRead {
    /// In bulk when a batch spans more than [`BULK_MIN_TENANTS`] tenants, one resource
    /// at a time otherwise (a bulk call reads the whole account, which costs more than
    /// a few tenants' own reads).
    #[default]
    Auto,
    /// In bulk whatever the batch (for tests comparing the two ways).
    Always,
    /// One resource at a time, as `read` does.
    Never,
}

impl FromStr for BulkRead {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BulkRead::Auto),
            "always" => Ok(BulkRead::Always),
            "never" => Ok(BulkRead::Never),
            other => Err(format!(
                "bulk read mode {other:?} is not one of auto, always, never"
            )),
        }
    }
}

/// Batches spanning more tenants than this are read in bulk under [`BulkRead::Auto`].
pub const BULK_MIN_TENANTS: usize = 3;

/// How a provider reads a batch.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Calls in flight at once to the provider's service.
    pub parallelism: usize,
    /// Whether to read in bulk where the family can.
    pub bulk: BulkRead,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            parallelism: 10,
            bulk: BulkRead::Auto,
        }
    }
}

impl ReadOptions {
    /// Whether a family that can read in bulk should, for `reads`.
    pub fn bulk_for(&self, reads: &[ReadRequest<'_>]) -> bool {
        match self.bulk {
            BulkRead::Always => true,
            BulkRead::Never => false,
            BulkRead::Auto => {
                let tenants: BTreeSet<_> = reads.iter().map(|(a, _)| &a.tenant).collect();
                tenants.len() > BULK_MIN_TENANTS
            }
        }
    }
}

/// Reads `reads` one at a time through `provider.read`, at most `options.parallelism`
/// at once, answering in the order asked: what [`Provider::read_many`] does by default.
pub async fn read_each<P: Provider + ?Sized>(
    provider: &P,
    reads: &[ReadRequest<'_>],
    options: ReadOptions,
) -> Vec<ReadResult> {
    // The reads are made up front (nothing runs until polled): a closure inside the
    // stream would need to be general over lifetimes that `Send` cannot prove here.
    let pending: Vec<_> = reads
        .iter()
        .map(|(address, current)| provider.read(address, current))
        .collect();
    crate::connect::limit::in_order(pending, options.parallelism).await
}

/// What a provider returns for a password it generated: the password (ephemeral:
/// handed to the credentials secret, never recorded) and a new random version id,
/// which state records in its place.
pub fn generated_password(password: String) -> Attributes {
    Attributes::from([
        ("password".into(), serde_json::Value::String(password)),
        (
            crate::resource::version_of("password"),
            serde_json::Value::String(uuid::Uuid::now_v7().simple().to_string()),
        ),
    ])
}

/// `e` as the answer to every request of a batch: what a bulk read answers when the
/// call that reads the whole batch fails.
pub fn failed_batch(reads: &[ReadRequest<'_>], e: &ProviderError) -> Vec<ReadResult> {
    reads.iter().map(|_| Err(e.clone())).collect()
}

/// Read, create, update and delete of one family of resources.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The resource as it really is, or `None` when it does not exist. Returns the
    /// readable attributes; the engine keeps unreadable ones (a password) from state.
    async fn read(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError>;

    /// Reads a batch of resources in bulk: one answer per request, in the order asked,
    /// each the one `read` would give. By default one `read` per resource, at most
    /// `options.parallelism` at once; families that can read many resources in few
    /// calls override it. [`ProviderSet::read_many`] calls it only for a batch that
    /// [`ReadOptions::bulk_for`] says to read in bulk, and [`read_each`] otherwise.
    async fn read_many(&self, reads: &[ReadRequest<'_>], options: ReadOptions) -> Vec<ReadResult> {
        read_each(self, reads, options).await
    }

    /// Creates the resource; returns its computed attributes (a generated password,
    /// an ARN). Writes `mode`'s token with the object where the service takes it, and
    /// takes an existing object of that name only as the contract above says.
    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError>;

    /// Brings an existing resource to `resource`'s attributes; `changed` names the
    /// attributes that differ. Returns computed attributes that changed.
    async fn update(
        &self,
        resource: &Resource,
        current: &Attributes,
        changed: &[String],
    ) -> Result<Attributes, ProviderError>;

    /// Deletes the resource; a resource that is already gone is not an error.
    async fn delete(
        &self,
        address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError>;

    /// Whether the service takes the engine's credentials, asked before an apply changes
    /// anything, so that wrong or missing credentials stop it with nothing half-made.
    /// One cheap call that changes nothing; the default checks nothing.
    async fn check_access(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The AWS account this provider's objects live in, for showing ARNs with the real
    /// id; `None` for a family outside AWS or when the account cannot be told. Asked
    /// only by a plan that reads the endpoints anyway.
    async fn aws_account_id(&self) -> Option<String> {
        None
    }
}

/// The providers of an engine, by the resource types they serve.
#[derive(Clone, Default)]
pub struct ProviderSet {
    by_type: HashMap<ResourceType, Arc<dyn Provider>>,
}

impl ProviderSet {
    /// A set that serves no type.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `types` with `provider`, replacing what served them before. Library users
    /// use this to wrap or substitute a provider.
    pub fn register(&mut self, types: &[ResourceType], provider: Arc<dyn Provider>) {
        for t in types {
            self.by_type.insert(*t, provider.clone());
        }
    }

    /// The same set with every provider passed through `wrap` (to count or log calls,
    /// or inject faults). A provider serving several types is wrapped once.
    pub fn map(self, wrap: impl Fn(Arc<dyn Provider>) -> Arc<dyn Provider>) -> ProviderSet {
        let mut wrapped: Vec<(Arc<dyn Provider>, Arc<dyn Provider>)> = Vec::new();
        let mut by_type = HashMap::new();
        for (t, p) in self.by_type {
            let w = match wrapped.iter().find(|(orig, _)| Arc::ptr_eq(orig, &p)) {
                Some((_, w)) => w.clone(),
                None => {
                    let w = wrap(p.clone());
                    wrapped.push((p, w.clone()));
                    w
                }
            };
            by_type.insert(t, w);
        }
        ProviderSet { by_type }
    }

    /// Reads `reads` back, each family through its own provider's
    /// [`Provider::read_many`], all families at once: each bounds its own calls by
    /// `options.parallelism`, so that one slow or throttled service does not hold up
    /// the others. One answer per request, in the order asked.
    pub async fn read_many(
        &self,
        reads: &[ReadRequest<'_>],
        options: ReadOptions,
    ) -> Vec<ReadResult> {
        let mut results: Vec<Option<ReadResult>> = vec![None; reads.len()];
        // Requests grouped by the provider serving them (one provider may serve
        // several types), in the order first seen.
        let mut groups: Vec<(Arc<dyn Provider>, Vec<usize>)> = Vec::new();
        for (i, (address, _)) in reads.iter().enumerate() {
            match self.get(address.resource_type) {
                Ok(p) => match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, p)) {
                    Some((_, indexes)) => indexes.push(i),
                    None => groups.push((p.clone(), vec![i])),
                },
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let answers = futures::future::join_all(groups.iter().map(|(p, indexes)| async move {
            let batch: Vec<ReadRequest<'_>> = indexes.iter().map(|&i| reads[i]).collect();
            if options.bulk_for(&batch) {
                p.read_many(&batch, options).await
            } else {
                read_each(p.as_ref(), &batch, options).await
            }
        }))
        .await;
        for ((_, indexes), answer) in groups.iter().zip(answers) {
            let complete = answer.len() == indexes.len();
            let mut answer = answer.into_iter();
            for &i in indexes {
                results[i] = Some(match answer.next().filter(|_| complete) {
                    Some(r) => r,
                    None => Err(ProviderError::Config(format!(
                        "the provider of {} answered a batch read with the wrong number of results",
                        reads[i].0.resource_type
                    ))),
                });
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(ProviderError::Config("a read was not answered".into())))
            })
            .collect()
    }

    /// The providers serving `types`, each once (a provider may serve several types).
    pub fn serving(&self, types: impl IntoIterator<Item = ResourceType>) -> Vec<Arc<dyn Provider>> {
        let mut distinct: Vec<Arc<dyn Provider>> = Vec::new();
        for t in types {
            if let Some(p) = self.by_type.get(&t)
                && !distinct.iter().any(|d| Arc::ptr_eq(d, p))
            {
                distinct.push(p.clone());
            }
        }
        distinct
    }

    /// The provider that serves `resource_type`.
    ///
    /// # Errors
    /// [`ProviderError::Config`] when none does.
    pub fn get(&self, resource_type: ResourceType) -> Result<&Arc<dyn Provider>, ProviderError> {
        self.by_type.get(&resource_type).ok_or_else(|| {
            ProviderError::Config(format!(
                "no provider is configured for {resource_type} resources"
            ))
        })
    }
}
