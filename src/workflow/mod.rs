//! The tenant lifecycle around the engine:
//! request → approval → provisioning → configuration → validation → activation →
//! notification, or rollback.
//!
//! # Expected flow
//!
//! `submit` validates a request (the same checks as a spec file, plus a unique name and
//! a budget within the tier's range) and records it, with the approvals the platform's
//! rules require. Submitting the same tenant again returns the existing request. When
//! no approval is needed, or the last required one arrives, the request is approved and
//! a `provision` run is queued ([`crate::runs`]); the call returns at once. The run,
//! executed by a worker or embedded in the command that queued it, calls
//! [`Workflow::provision`], which writes the tenant's spec to the registry
//! (`tenantform.tenant_specs`, where every worker and every plan reads it) and runs its
//! stages (`provision.rs`):
//!
//! 1. apply: the engine applies that tenant (a new tenant is all-or-nothing: the engine
//!    rolls a failed apply back);
//! 2. configure: Gold tenants get demo documents (tier settings, rate limits and the
//!    model are resources of the tenant, applied in step 1; why the documents are not
//!    is written where they are seeded);
//! 3. validate: the validation suite runs ([`checks`]); its results are stored. By the
//!    failure policy, a security or integration failure rolls the tenant back; a
//!    compliance failure blocks activation (status `failed`, resources kept for a fix);
//! 4. activate: a performance failure warns the platform team and the tenant is still
//!    activated;
//! 5. notifications go out; they never fail or undo anything.
//!
//! # Guarantees
//!
//! - Every status change is a legal transition ([`status::check_transition`]), made
//!   atomically with its audit entry; the audit trail is append-only.
//! - A failure names its step ([`FailedStep`]) in the request and its audit entry.
//! - After a rollback, the spec written for the request is removed again and no
//!   resource of the tenant remains; if the rollback itself fails, the request is
//!   `failed`, state keeps what is left, and a P0 alert goes out.
//! - A rolled-back or failed request can be retried (`request retry`).
//! - A provisioning that a new attempt of its run takes over (its worker died) resumes
//!   from the request's status: it applies again from the last state checkpoint (a
//!   re-plan, not a replay) and goes on from there.
//! - A tenant that a destroy left with nothing is `destroyed` in the registry, in the
//!   same transaction as its audit entry ([`Workflow::record_destroyed`], which
//!   `tenantform destroy` calls); a new request for its id then starts over.

pub mod approval;
pub mod checks;
mod destroyed;
pub mod metrics;
pub mod notify;
mod provision;
pub mod registry;
pub mod render;
pub mod status;

pub use provision::FailedStep;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use crate::Engine;
use crate::apply::ProgressSink;
use crate::connect::aws::AwsClients;
use crate::connect::postgres::PostgresConfig;
use crate::connect::redis::RedisConfig;
use crate::resource::TenantId;
use crate::spec::{PlatformSpec, SpecErrors, Specs, TenantSpec};
use crate::state::{ResourceStatus, TenantState};

use checks::{CheckContext, CheckResult};
use notify::{Audience, Notification, Notifier};
use registry::{CheckRecord, Decision, Registry, Request};
use status::{IllegalTransition, RequestStatus};

/// A failure of the workflow itself (not of a tenant's provisioning, which is a
/// request status).
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The request's spec is invalid; every problem is listed.
    #[error(transparent)]
    Spec(#[from] SpecErrors),
    /// The engine failed to plan or apply the request's tenant.
    #[error(transparent)]
    Engine(Box<crate::Error>),
    /// The request's status does not allow the step asked for.
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
    /// The registry's database cannot be read or written.
    #[error("the registry cannot be used: {0}")]
    Registry(String),
    /// No request has this id.
    #[error("no request {0}; `tenantform request list` shows the requests")]
    UnknownRequest(String),
    /// The step conflicts with the registry's current contents; the message says how.
    #[error("{0}")]
    Conflict(String),
    /// The input is not acceptable; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be written.
    #[error("cannot write {}: {detail}", path.display())]
    Io { path: PathBuf, detail: String },
}

impl From<crate::Error> for WorkflowError {
    fn from(e: crate::Error) -> Self {
        WorkflowError::Engine(Box::new(e))
    }
}

/// A request with everything known about it, for `request status`.
#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    #[serde(flatten)]
    pub request: Request,
    pub decisions: Vec<Decision>,
    /// Roles whose approval is still missing.
    pub pending_approvals: Vec<String>,
    pub checks: Vec<CheckRecord>,
    pub audit: Vec<registry::AuditEntry>,
}

/// What a call did to a request.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub request: Request,
    /// `false` when `submit` found the same request already there.
    pub created: bool,
    /// The validation suite's results, when it ran in this call.
    pub checks: Vec<CheckResult>,
}

/// The lifecycle, over an engine and the registry in the platform's database.
pub struct Workflow<'a> {
    engine: &'a Engine,
    specs_dir: PathBuf,
    registry: Registry,
    notifier: Notifier,
    pg: PostgresConfig,
    /// Where the metrics check scrapes when the platform file names no endpoint.
    metrics_url: Option<String>,
    progress: Option<ProgressSink>,
    /// Where an approved request's provisioning goes.
    provisioning: Option<Arc<dyn ProvisionQueue>>,
}

/// Where the provisioning of an approved or retried request is queued: the runs queue
/// ([`crate::runs`] implements it), so that a worker (or the command, embedded)
/// executes [`Workflow::provision`]. A trait, so that the lifecycle does not depend on
/// the runs that execute it.
pub trait ProvisionQueue: Send + Sync {
    /// Queues the provisioning of request `id`, unless one is open already.
    fn enqueue_provision<'a>(
        &'a self,
        id: &'a str,
        actor: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

impl<'a> Workflow<'a> {
    /// Opens the registry (creating or migrating its schema).
    pub async fn open(engine: &'a Engine) -> Result<Workflow<'a>, WorkflowError> {
        let (platform, pg) = Self::platform_database(engine)?;
        let registry = Registry::open(&pg).await?;
        Ok(Self::with_registry(engine, &platform, pg, registry))
    }

    /// The workflow over the registry that exists, or `None` when the platform's
    /// database has none: nothing was ever requested, and nothing is created.
    pub async fn open_existing(engine: &'a Engine) -> Result<Option<Workflow<'a>>, WorkflowError> {
        let (platform, pg) = Self::platform_database(engine)?;
        let registry = Registry::open_existing(&pg).await?;
        Ok(registry.map(|r| Self::with_registry(engine, &platform, pg, r)))
    }

    fn platform_database(engine: &Engine) -> Result<(PlatformSpec, PostgresConfig), WorkflowError> {
        // The platform file is enough here: connection and notification settings.
        let platform = crate::spec::load_platform(&engine.config().specs_dir)?;
        let pg = PostgresConfig::resolve(&platform.postgres, &engine.config().environment)
            .map_err(|e| WorkflowError::Registry(e.to_string()))?;
        Ok((platform, pg))
    }

    fn with_registry(
        engine: &'a Engine,
        platform: &PlatformSpec,
        pg: PostgresConfig,
        registry: Registry,
    ) -> Workflow<'a> {
        Workflow {
            engine,
            specs_dir: engine.config().specs_dir.clone(),
            registry,
            notifier: Notifier::new(
                platform.notifications.clone(),
                engine.config().environment.clone(),
            ),
            pg,
            metrics_url: None,
            progress: None,
            provisioning: None,
        }
    }

    /// Where the metrics check scrapes the platform's metrics when `[validation]
    /// metrics_url` is not set: the caller that serves them says where (the CLI
    /// serves tenantform's own on a loopback port). Without either, validation is
    /// refused with an error saying so.
    pub fn set_metrics_url(&mut self, url: impl Into<String>) {
        self.metrics_url = Some(url.into());
    }

    /// Where approved and retried requests' provisionings are queued.
    pub fn set_provisioning(&mut self, queue: Arc<dyn ProvisionQueue>) {
        self.provisioning = Some(queue);
    }

    /// Where provisioning reports its apply and rollback steps (a run's event log).
    pub fn set_progress(&mut self, progress: ProgressSink) {
        self.progress = Some(progress);
    }

    /// The registry the workflow records requests in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Parses a request file (the format of `specs/tenants/*.toml`; its name does not
    /// matter) and submits it.
    pub async fn submit_file(
        &mut self,
        path: &Path,
        requester: &str,
        notes: Option<&str>,
    ) -> Result<Outcome, WorkflowError> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            WorkflowError::Invalid(format!("cannot read request file {}: {e}", path.display()))
        })?;
        self.submit_source(path, &source, requester, notes).await
    }

    /// Submits a request given as TOML text; `origin` names it in messages.
    pub async fn submit_source(
        &mut self,
        origin: &Path,
        source: &str,
        requester: &str,
        notes: Option<&str>,
    ) -> Result<Outcome, WorkflowError> {
        let specs = self.engine.specs().await?;
        let spec = TenantSpec::parse(origin, source, &specs.platform)
            .map_err(SpecErrors)?
            .spec;
        self.submit(&specs, spec, requester, notes).await
    }

    async fn submit(
        &mut self,
        specs: &Specs,
        spec: TenantSpec,
        requester: &str,
        notes: Option<&str>,
    ) -> Result<Outcome, WorkflowError> {
        let tier = specs.tier_of(&spec);
        if spec.budget_inr < tier.budget_min_inr || spec.budget_inr > tier.budget_max_inr {
            return Err(WorkflowError::Invalid(format!(
                "field budget_inr: ₹{} is outside the {} tier's range ₹{}..₹{}; nothing was recorded: choose another tier or budget",
                spec.budget_inr, spec.tier, tier.budget_min_inr, tier.budget_max_inr
            )));
        }
        if requester.trim().is_empty() {
            return Err(WorkflowError::Invalid(
                "the requester is empty; a request needs its requester's name or e-mail address"
                    .into(),
            ));
        }
        if self.registry.get(spec.id.as_str()).await?.is_none()
            && (specs.tenants.contains_key(&spec.id)
                || self
                    .engine
                    .state_store()
                    .await?
                    .load(&spec.id)
                    .await
                    .map_err(crate::Error::from)?
                    .is_some())
        {
            return Err(WorkflowError::Conflict(format!(
                "tenant {} already exists (specs/tenants/{}.toml or its state) without a request; nothing was recorded: choose another id",
                spec.id, spec.id
            )));
        }
        let approvals = approval::required_approvals(&specs.platform, &spec);
        let (request, created) = self
            .registry
            .submit(&spec, requester, notes, &approvals)
            .await?;
        if !created {
            return Ok(Outcome {
                request,
                created,
                checks: Vec::new(),
            });
        }
        if approvals.is_empty() {
            self.registry
                .transition(
                    &request.id,
                    RequestStatus::PendingApproval,
                    RequestStatus::Approved,
                    "approval-policy",
                    None,
                    json!({"reason": "no approval required: budget below the automatic limit, no sensitive data, no cross-border transfer, no tier rule"}),
                )
                .await?;
            let mut outcome = self
                .enqueue_provision(&request.id, "approval-policy")
                .await?;
            outcome.created = true;
            return Ok(outcome);
        }
        Ok(Outcome {
            request,
            created,
            checks: Vec::new(),
        })
    }

    /// Records an approver's decision; a rejection ends the request, the last required
    /// approval starts provisioning.
    pub async fn decide(
        &mut self,
        id: &str,
        role: &str,
        approve: bool,
        actor: &str,
        note: Option<&str>,
    ) -> Result<Outcome, WorkflowError> {
        let request = self.registry.decide(id, role, approve, actor, note).await?;
        if !approve {
            let request = self
                .registry
                .transition(
                    id,
                    RequestStatus::PendingApproval,
                    RequestStatus::Rejected,
                    actor,
                    None,
                    json!({"role": role, "note": note}),
                )
                .await?;
            self.notify(
                &request,
                "rejected",
                format!(
                    "Tenant request {} ({}) was rejected",
                    request.id, request.name
                ),
                format!(
                    "The request for tenant {} was rejected by {role} ({actor}){}.",
                    request.id,
                    note.map(|n| format!(": {n}")).unwrap_or_default()
                ),
                vec![Audience::Requester],
            )
            .await?;
            return Ok(Outcome {
                request,
                created: false,
                checks: Vec::new(),
            });
        }
        if self.pending_approvals(&request).await?.is_empty() {
            self.registry
                .transition(
                    id,
                    RequestStatus::PendingApproval,
                    RequestStatus::Approved,
                    actor,
                    None,
                    json!({"reason": "every required approval is recorded"}),
                )
                .await?;
            return self.enqueue_provision(id, actor).await;
        }
        Ok(Outcome {
            request,
            created: false,
            checks: Vec::new(),
        })
    }

    async fn pending_approvals(&self, request: &Request) -> Result<Vec<String>, WorkflowError> {
        let decided = self.registry.decisions(&request.id).await?;
        Ok(request
            .required_approvals
            .iter()
            .filter(|a| {
                !decided
                    .iter()
                    .any(|d| d.role == a.role && d.decision == "approved")
            })
            .map(|a| a.role.clone())
            .collect())
    }

    /// Hands an approved (or retried) request's provisioning to the queue. Returns at
    /// once: a worker, or the caller (the embedded executor), executes it.
    async fn enqueue_provision(&mut self, id: &str, actor: &str) -> Result<Outcome, WorkflowError> {
        let queue = self.provisioning.as_ref().ok_or_else(|| {
            WorkflowError::Registry(
                "no provisioning queue: open the workflow with one (`runs::open_workflow`) to approve or retry requests".into(),
            )
        })?;
        queue
            .enqueue_provision(id, actor)
            .await
            .map_err(WorkflowError::Registry)?;
        Ok(Outcome {
            request: self.registry.require(id).await?,
            created: false,
            checks: Vec::new(),
        })
    }

    /// Provisions a rolled-back or failed request again (queues its `provision` run).
    pub async fn retry(&mut self, id: &str, actor: &str) -> Result<Outcome, WorkflowError> {
        let request = self.registry.require(id).await?;
        if !matches!(
            request.status,
            RequestStatus::RolledBack | RequestStatus::Failed
        ) {
            return Err(WorkflowError::Conflict(format!(
                "request {id} is {}; only a rolled_back or failed request can be retried",
                request.status
            )));
        }
        self.enqueue_provision(id, actor).await
    }

    fn spec_path(&self, id: &str) -> PathBuf {
        self.specs_dir.join("tenants").join(format!("{id}.toml"))
    }

    /// Makes the request's spec part of the desired specs, in the registry, where every
    /// worker and every plan reads it.
    async fn write_spec(&self, request: &Request) -> Result<(), WorkflowError> {
        let spec = request.spec()?;
        let text = format!(
            "# Written by `tenantform request` for request {} (requested by {}).\n{}",
            request.id,
            request.requester,
            toml::to_string(&spec).map_err(|e| WorkflowError::Invalid(format!("spec: {e}")))?
        );
        self.registry.put_tenant_spec(&request.id, &text).await
    }

    async fn remove_spec(&self, id: &str) -> Result<(), WorkflowError> {
        self.registry.remove_tenant_spec(id).await
    }

    /// Writes the registry's spec of a provisioned tenant to `specs/tenants/<id>.toml`,
    /// to manage it as a file (in git) from now on: the file wins over the registry's
    /// copy, which is kept, marked exported, so that a machine whose specs lack the file
    /// refuses to plan the tenant instead of planning its deletion. Returns the path.
    pub async fn export(&mut self, id: &str, actor: &str) -> Result<PathBuf, WorkflowError> {
        let request = self.registry.require(id).await?;
        let registered = self.registry.tenant_spec(id).await?.ok_or_else(|| {
            WorkflowError::Conflict(format!(
                "request {id} is {} and has no spec in the registry (it was never provisioned, or was rolled back); nothing to export",
                request.status
            ))
        })?;
        let path = self.spec_path(id);
        let io = |e: std::io::Error| WorkflowError::Io {
            path: path.clone(),
            detail: e.to_string(),
        };
        match std::fs::read_to_string(&path) {
            Ok(existing) if existing == registered.source => {}
            Ok(_) => {
                return Err(WorkflowError::Conflict(format!(
                    "{} exists and differs from the registry's spec of {id}; nothing was written: it already wins over the registry's copy",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tmp = path.with_extension("toml.tmp");
                std::fs::create_dir_all(path.parent().expect("tenants dir")).map_err(io)?;
                std::fs::write(&tmp, &registered.source).map_err(io)?;
                std::fs::rename(&tmp, &path).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        }
        self.registry
            .mark_exported(id, actor, &path.display().to_string())
            .await?;
        Ok(path)
    }

    /// The spec and state of a tenant that must have both (`when` says why, for the
    /// message when one is missing).
    /// The tenant's state as the engine's store holds it now.
    async fn load_state(&self, tenant: &TenantId) -> Result<Option<TenantState>, WorkflowError> {
        let store = self.engine.state_store().await?;
        Ok(store.load(tenant).await.map_err(crate::Error::from)?)
    }

    async fn spec_and_state(
        &self,
        specs: &Specs,
        tenant: &TenantId,
        when: &str,
    ) -> Result<(TenantSpec, TenantState), WorkflowError> {
        let spec = specs.tenants.get(tenant).cloned().ok_or_else(|| {
            WorkflowError::Invalid(format!(
                "tenant {tenant} {when} but has no spec (neither specs/tenants/{tenant}.toml nor the registry's)"
            ))
        })?;
        let state = self.load_state(tenant).await?.ok_or_else(|| {
            WorkflowError::Invalid(format!("tenant {tenant} {when} but has no state"))
        })?;
        Ok((spec, state))
    }

    /// Runs the suite against the tenant's state and stores the results.
    async fn run_checks(
        &mut self,
        specs: &Specs,
        spec: &TenantSpec,
        state: &TenantState,
    ) -> Result<Vec<CheckResult>, WorkflowError> {
        // The isolation check needs one other tenant to be refused: read states only
        // until one is found, not every tenant's on every provisioning.
        let store = self.engine.state_store().await?;
        let mut others: Vec<TenantState> = Vec::new();
        for t in store.tenants().await.map_err(crate::Error::from)? {
            if t == spec.id {
                continue;
            }
            if let Some(s) = store.load(&t).await.map_err(crate::Error::from)?
                && s.resources
                    .values()
                    .any(|r| r.status == ResourceStatus::Created)
            {
                others.push(s);
                break;
            }
        }
        let environment = &self.engine.config().environment;
        let redis = RedisConfig::resolve(&specs.platform.redis, environment).ok();
        let aws = AwsClients::load(&specs.platform.aws).await;
        let jwt_secret = specs
            .platform
            .validation
            .jwt_secret_env
            .as_deref()
            .and_then(|v| environment.get(v))
            .map(String::into_bytes)
            .unwrap_or_else(|| crate::secret::generate_password(48).into_bytes());
        // The platform's metrics endpoint, else the one the caller serves; checked over
        // HTTP like a scraper would.
        let metrics_url = specs
            .platform
            .validation
            .metrics_url
            .clone()
            .or_else(|| self.metrics_url.clone())
            .ok_or_else(|| {
                WorkflowError::Invalid(
                    "no metrics endpoint for the validation checks: set [validation] metrics_url in platform.toml, or serve tenantform's metrics and pass their URL to Workflow::set_metrics_url".into(),
                )
            })?;
        let cx = CheckContext {
            engine: self.engine,
            specs,
            spec,
            state,
            others: &others,
            pg: &self.pg,
            redis: redis.as_ref(),
            aws: &aws,
            metrics_url: &metrics_url,
            jwt_secret: &jwt_secret,
            latency_queries: specs.platform.validation.latency_queries,
            credentials: tokio::sync::OnceCell::new(),
        };
        // Boxed: the suite's future holds eight checks, each with its clients' calls;
        // inline, every caller up to the run's task would carry it on the stack.
        let results = Box::pin(checks::run_suite(&cx)).await;
        let records: Vec<CheckRecord> = results.iter().map(CheckRecord::from).collect();
        self.registry
            .record_checks(spec.id.as_str(), uuid::Uuid::new_v4(), &records)
            .await?;
        Ok(results)
    }

    /// Runs the suite on an active tenant (a daily check of its configuration). Records
    /// the results; the status does not change. Failures notify the platform team.
    pub async fn validate_tenant(&mut self, id: &str) -> Result<Vec<CheckResult>, WorkflowError> {
        let request = self.registry.require(id).await?;
        if request.status != RequestStatus::Active {
            return Err(WorkflowError::Conflict(format!(
                "request {id} is {}; validate-tenant checks active tenants",
                request.status
            )));
        }
        let specs = self.engine.specs().await?;
        let tenant: TenantId = request.spec()?.id;
        let (spec, state) = self.spec_and_state(&specs, &tenant, "is active").await?;
        let results = self.run_checks(&specs, &spec, &state).await?;
        let failed: Vec<String> = results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}: {}", r.name, r.message))
            .collect();
        self.registry
            .note(
                id,
                "validate-tenant",
                "revalidated",
                json!({"failed": failed}),
            )
            .await?;
        if !failed.is_empty() {
            self.notify(
                &request,
                "validation_failed",
                format!(
                    "Active tenant {} failed {} validation check(s)",
                    request.id,
                    failed.len()
                ),
                failed.join("\n"),
                vec![Audience::PlatformTeam],
            )
            .await?;
        }
        Ok(results)
    }

    async fn notify(
        &mut self,
        request: &Request,
        event: &str,
        subject: String,
        body: String,
        audiences: Vec<Audience>,
    ) -> Result<(), WorkflowError> {
        let n = Notification {
            event: event.into(),
            subject,
            body,
            audiences,
        };
        let deliveries = self
            .notifier
            .send(&n, &request.owner_email, &request.requester)
            .await;
        self.registry
            .note(
                &request.id,
                "tenantform",
                "notification",
                json!({"event": event, "deliveries": deliveries}),
            )
            .await
    }

    /// One request with its decisions, missing approvals, latest checks and audit trail.
    pub async fn view(&self, id: &str) -> Result<RequestView, WorkflowError> {
        let request = self.registry.require(id).await?;
        Ok(RequestView {
            pending_approvals: if request.status == RequestStatus::PendingApproval {
                self.pending_approvals(&request).await?
            } else {
                Vec::new()
            },
            decisions: self.registry.decisions(id).await?,
            checks: self.registry.latest_checks(id).await?,
            audit: self.registry.audit_trail(id).await?,
            request,
        })
    }

    /// Every request in the registry.
    pub async fn list(&self) -> Result<Vec<Request>, WorkflowError> {
        self.registry.list().await
    }
}
