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
//! [`Workflow::provision`]:
//!
//! 1. the tenant's spec is written to the registry (`tenantform.tenant_specs`, where
//!    every worker and every plan reads it) and the engine applies that tenant (a new
//!    tenant is all-or-nothing: the engine rolls back a failed apply);
//! 2. configuration: Gold tenants get demo documents (tier settings, rate limits and the
//!    model are resources of the tenant, applied in step 1);
//! 3. the validation suite runs ([`checks`]); its results are stored;
//! 4. by the failure policy: a security or integration failure rolls the tenant back; a
//!    compliance failure blocks activation (status `failed`, resources kept for a fix); a
//!    performance failure warns the platform team and the tenant is still activated;
//! 5. notifications go out; they never fail or undo anything.
//!
//! # Guarantees
//!
//! - Every status change is a legal transition ([`status::check_transition`]), made
//!   atomically with its audit entry; the audit trail is append-only.
//! - After a rollback, the spec written for the request is removed again and no
//!   resource of the tenant remains; if the rollback itself fails, the request is
//!   `failed`, state keeps what is left, and a P0 alert goes out.
//! - A rolled-back or failed request can be retried (`request retry`).
//! - A provisioning that a new attempt of its run takes over (its worker died) resumes
//!   from the request's status: it applies again from the last state checkpoint (a
//!   re-plan, not a replay) and goes on from there.

pub mod approval;
pub mod checks;
pub mod metrics;
pub mod notify;
pub mod registry;
pub mod render;
pub mod status;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::Engine;
use crate::apply::{Progress, ProgressSink, StepOutcome, TenantOutcome};
use crate::engine::PlanOptions;
use crate::plan::PlanMode;
use crate::provider::aws::AwsClients;
use crate::provider::postgres::{PostgresConfig, ident};
use crate::provider::redis::RedisConfig;
use crate::resource::TenantId;
use crate::spec::{SpecErrors, Specs, TenantSpec};
use crate::state::{ResourceStatus, TenantState};

use checks::{CheckCategory, CheckContext, CheckResult};
use notify::{Audience, Notification, Notifier};
use registry::{CheckRecord, Decision, Failure, Registry, Request};
use status::{IllegalTransition, RequestStatus};

/// A failure of the workflow itself (not of a tenant's provisioning, which is a
/// request status).
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error(transparent)]
    Spec(#[from] SpecErrors),
    #[error(transparent)]
    Engine(Box<crate::Error>),
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
    #[error("the registry cannot be used: {0}")]
    Registry(String),
    #[error("no request {0}; `tenantform request list` shows the requests")]
    UnknownRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
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
    progress: Option<ProgressSink>,
}

impl<'a> Workflow<'a> {
    /// Opens the registry (creating or migrating its schema).
    pub async fn open(engine: &'a Engine) -> Result<Workflow<'a>, WorkflowError> {
        // The platform file is enough here: connection and notification settings.
        let specs = Specs::load(&engine.config().specs_dir)?;
        let pg = PostgresConfig::resolve(&specs.platform.postgres)
            .map_err(|e| WorkflowError::Registry(e.to_string()))?;
        let registry = Registry::open(&pg).await?;
        Ok(Workflow {
            engine,
            specs_dir: engine.config().specs_dir.clone(),
            registry,
            notifier: Notifier::new(specs.platform.notifications.clone()),
            pg,
            progress: None,
        })
    }

    /// Where provisioning reports its apply and rollback steps (a run's event log).
    pub fn set_progress(&mut self, progress: ProgressSink) {
        self.progress = Some(progress);
    }

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
                "the requester is empty; pass --requester with a name or e-mail address".into(),
            ));
        }
        if self.registry.get(spec.id.as_str()).await?.is_none()
            && (specs.tenants.contains_key(&spec.id)
                || self
                    .engine
                    .state_store()
                    .load(&spec.id)
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

    /// Queues the `provision` run of an approved (or retried) request, unless one is
    /// already open. Returns at once: a worker, or the caller ([`crate::runs`]'s
    /// embedded executor), executes it.
    async fn enqueue_provision(&mut self, id: &str, actor: &str) -> Result<Outcome, WorkflowError> {
        let queue = crate::runs::RunQueue::open(&self.pg)
            .await
            .map_err(|e| WorkflowError::Registry(e.to_string()))?;
        queue
            .enqueue_provision(id, actor)
            .await
            .map_err(|e| WorkflowError::Registry(e.to_string()))?;
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

    /// Provisioning, configuration, validation and activation of an approved (or
    /// retried) request: what its `provision` run executes. A request already
    /// `provisioning` or `validating` is resumed (a new attempt of the run took over
    /// from a worker that died): the apply re-plans from the last state checkpoint, so
    /// nothing is done twice. An `active` request is left as it is.
    pub async fn provision(&mut self, id: &str, actor: &str) -> Result<Outcome, WorkflowError> {
        let request = self.registry.require(id).await?;
        let request = match request.status {
            RequestStatus::Provisioning | RequestStatus::Validating => request,
            RequestStatus::Active => {
                return Ok(Outcome {
                    request,
                    created: false,
                    checks: Vec::new(),
                });
            }
            from => {
                self.registry
                    .transition(
                        id,
                        from,
                        RequestStatus::Provisioning,
                        actor,
                        None,
                        json!({}),
                    )
                    .await?
            }
        };
        self.write_spec(&request).await?;
        let tenant: TenantId = request.spec()?.id;

        // 1. Apply. A new tenant is all-or-nothing: the engine rolls a failed apply back.
        let applied = self
            .engine
            .plan_and_apply(
                &PlanOptions {
                    tenants: vec![tenant.clone()],
                    refresh: true,
                    mode: PlanMode::Normal,
                    replace: Vec::new(),
                },
                &crate::ApplyOptions::default(),
                |_| true,
                self.progress.clone(),
            )
            .await;
        let report = match applied {
            Ok((_, report)) => report,
            Err(e) => {
                // Nothing was changed (planning or locking failed before any step).
                self.remove_spec(id).await?;
                return self
                    .fail(
                        &request,
                        RequestStatus::RolledBack,
                        "apply",
                        &e.to_string(),
                        false,
                    )
                    .await;
            }
        };
        if let Some(t) = report
            .as_ref()
            .and_then(|r| r.tenants.iter().find(|t| t.tenant == tenant))
        {
            let failed_step = t
                .steps
                .iter()
                .find(|s| matches!(s.outcome, StepOutcome::Failed { .. }))
                .map(|s| format!("apply:{}", s.address))
                .unwrap_or_else(|| "apply".into());
            let error = t.first_error().unwrap_or_else(|| "interrupted".into());
            match t.outcome {
                TenantOutcome::Applied | TenantOutcome::Unchanged => {}
                TenantOutcome::RolledBack => {
                    self.remove_spec(id).await?;
                    return self
                        .fail(
                            &request,
                            RequestStatus::RolledBack,
                            &failed_step,
                            &error,
                            false,
                        )
                        .await;
                }
                TenantOutcome::RollbackFailed
                | TenantOutcome::Failed
                | TenantOutcome::Interrupted => {
                    self.remove_spec(id).await?;
                    return self
                        .fail(&request, RequestStatus::Failed, &failed_step, &error, true)
                        .await;
                }
            }
        }

        // 2. Configuration.
        let specs = self.engine.specs().await?;
        let (spec, state) = self.spec_and_state(&specs, &tenant, "was just applied")?;
        let mut configured = json!({"demo_documents": 0});
        if specs.tier_of(&spec).demo_documents {
            match seed_demo_documents(&self.pg, &state).await {
                Ok(n) => configured = json!({"demo_documents": n}),
                Err(e) => return self.roll_back(&request, &tenant, "configure", &e).await,
            }
        }
        self.registry
            .note(id, actor, "configured", configured)
            .await?;

        // 3. Validation (again, when a resumed run finds the request validating).
        let request = match self.registry.require(id).await? {
            r if r.status == RequestStatus::Validating => r,
            _ => {
                self.registry
                    .transition(
                        id,
                        RequestStatus::Provisioning,
                        RequestStatus::Validating,
                        actor,
                        None,
                        json!({}),
                    )
                    .await?
            }
        };
        let results = self.run_checks(&specs, &spec, &state).await?;
        let failed = |c: CheckCategory| {
            results
                .iter()
                .filter(|r| !r.passed && r.category == c)
                .collect::<Vec<_>>()
        };
        let critical: Vec<&CheckResult> = failed(CheckCategory::Security)
            .into_iter()
            .chain(failed(CheckCategory::Integration))
            .collect();
        if let Some(first) = critical.first() {
            let mut outcome = self
                .roll_back(
                    &request,
                    &tenant,
                    &format!("validation:{}", first.name),
                    &first.message,
                )
                .await?;
            outcome.checks = results;
            return Ok(outcome);
        }
        if let Some(first) = failed(CheckCategory::Compliance).first() {
            let mut outcome = self
                .fail(
                    &request,
                    RequestStatus::Failed,
                    &format!("validation:{}", first.name),
                    &format!(
                        "activation blocked by a compliance check: {}",
                        first.message
                    ),
                    false,
                )
                .await?;
            outcome.checks = results;
            return Ok(outcome);
        }

        // 4. Activation.
        let slow = failed(CheckCategory::Performance);
        let request = self
            .registry
            .transition(
                id,
                RequestStatus::Validating,
                RequestStatus::Active,
                actor,
                None,
                json!({"checks_passed": results.iter().filter(|r| r.passed).count(), "checks": results.len()}),
            )
            .await?;
        if let Some(p) = slow.first() {
            self.notify(
                &request,
                "performance_warning",
                format!("Tenant {} is active but missed its latency SLA", request.id),
                format!(
                    "Check {} failed: {}. The tenant was activated; please look into it.",
                    p.name, p.message
                ),
                vec![Audience::PlatformTeam],
            )
            .await?;
        }
        self.notify(
            &request,
            "activated",
            format!("Tenant {} ({}) is active", request.id, request.name),
            format!(
                "Tenant {} ({}, {} tier in {}) is provisioned, validated ({} of {} checks passed) and active. Monthly budget: ₹{}. Cost center: {}.",
                request.id,
                request.name,
                request.tier,
                request.region,
                results.iter().filter(|r| r.passed).count(),
                results.len(),
                request.budget_inr,
                request.cost_center
            ),
            vec![Audience::Owner, Audience::PlatformTeam, Audience::Finance],
        )
        .await?;
        Ok(Outcome {
            request,
            created: false,
            checks: results,
        })
    }

    /// The spec and state of a tenant that must have both (`when` says why, for the
    /// message when one is missing).
    fn spec_and_state(
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
        let state = self
            .engine
            .state_store()
            .load(tenant)
            .map_err(crate::Error::from)?
            .ok_or_else(|| {
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
        let store = self.engine.state_store();
        let mut others: Vec<TenantState> = Vec::new();
        for t in store.tenants().map_err(crate::Error::from)? {
            if t == spec.id {
                continue;
            }
            if let Some(s) = store.load(&t).map_err(crate::Error::from)?
                && s.resources
                    .values()
                    .any(|r| r.status == ResourceStatus::Created)
            {
                others.push(s);
                break;
            }
        }
        let redis = RedisConfig::resolve(&specs.platform.redis).ok();
        let aws = AwsClients::load(&specs.platform.aws).await;
        let jwt_secret = specs
            .platform
            .validation
            .jwt_secret_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|s| !s.is_empty())
            .map(String::into_bytes)
            .unwrap_or_else(|| crate::secret::generate_password(48).into_bytes());
        // Without a configured metrics endpoint, serve our own on a loopback port for
        // the duration of the suite, and check it over HTTP like a scraper would.
        let (metrics_url, server) = match &specs.platform.validation.metrics_url {
            Some(url) => (url.clone(), None),
            None => {
                let (addr, handle) = crate::server::serve_metrics_on_loopback(self.pg.clone())
                    .await
                    .map_err(|e| WorkflowError::Invalid(format!("cannot serve metrics: {e}")))?;
                (format!("http://{addr}/metrics"), Some(handle))
            }
        };
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
        };
        let results = checks::run_suite(&cx).await;
        if let Some(h) = server {
            h.abort();
        }
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
        let (spec, state) = self.spec_and_state(&specs, &tenant, "is active")?;
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

    /// Undoes a provisioned tenant: deletes everything its state holds, removes the
    /// spec written for the request, and marks the request.
    async fn roll_back(
        &mut self,
        request: &Request,
        tenant: &TenantId,
        step: &str,
        error: &str,
    ) -> Result<Outcome, WorkflowError> {
        if let Some(p) = &self.progress {
            let resources = self
                .engine
                .state_store()
                .load(tenant)
                .map_err(crate::Error::from)?
                .map_or(0, |s| s.resources.len());
            p(&Progress::RollbackStarted {
                tenant: tenant.clone(),
                resources,
            });
        }
        let report = self
            .engine
            .roll_back_tenant(tenant, self.progress.clone())
            .await?;
        let complete = report.succeeded()
            && self
                .engine
                .state_store()
                .load(tenant)
                .map_err(crate::Error::from)?
                .is_none_or(|s| s.resources.is_empty());
        self.remove_spec(&request.id).await?;
        if complete {
            self.fail(request, RequestStatus::RolledBack, step, error, false)
                .await
        } else {
            let left = format!(
                "{error}; the rollback did not complete: state keeps what is left, run `tenantform destroy --tenant {tenant}` or `tenantform request retry {}`",
                request.id
            );
            self.fail(request, RequestStatus::Failed, step, &left, true)
                .await
        }
    }

    async fn fail(
        &mut self,
        request: &Request,
        to: RequestStatus,
        step: &str,
        error: &str,
        p0: bool,
    ) -> Result<Outcome, WorkflowError> {
        let current = self.registry.require(&request.id).await?;
        let request = self
            .registry
            .transition(
                &request.id,
                current.status,
                to,
                "tenantform",
                Some(&Failure {
                    step: step.into(),
                    reason: error.into(),
                }),
                json!({}),
            )
            .await?;
        let (event, subject, audiences) = match (to, p0) {
            (_, true) => (
                "p0_rollback_failed",
                format!(
                    "P0: provisioning of tenant {} failed and was not fully undone",
                    request.id
                ),
                vec![Audience::PlatformTeam, Audience::Owner],
            ),
            (RequestStatus::RolledBack, _) => (
                "rolled_back",
                format!(
                    "Provisioning of tenant {} failed and was rolled back",
                    request.id
                ),
                vec![Audience::Owner, Audience::PlatformTeam],
            ),
            _ => (
                "activation_blocked",
                format!("Tenant {} was provisioned but not activated", request.id),
                vec![Audience::Owner, Audience::PlatformTeam],
            ),
        };
        self.notify(
            &request,
            event,
            subject,
            format!("Step {step} failed: {error}"),
            audiences,
        )
        .await?;
        Ok(Outcome {
            request,
            created: false,
            checks: Vec::new(),
        })
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

    pub async fn list(&self) -> Result<Vec<Request>, WorkflowError> {
        self.registry.list().await
    }
}

/// Seeds a Gold tenant's demo documents, as the tenant's own role (so row-level
/// security stamps them as the tenant's). Idempotent: returns how many exist.
async fn seed_demo_documents(pg: &PostgresConfig, state: &TenantState) -> Result<i64, String> {
    let (db, _, schema) = checks::connect_as_tenant(pg, state).await?;
    let table = format!("{}.documents", ident(&schema));
    const DEMO: [(&str, &str); 3] = [
        (
            "Welcome to your RAG workspace",
            "Upload documents to index them for retrieval and question answering.",
        ),
        (
            "Using advanced search",
            "Combine keyword filters with semantic search to find passages across documents.",
        ),
        (
            "Custom models",
            "Gold tenants may bring fine-tuned models; contact the platform team to register one.",
        ),
    ];
    for (title, content) in DEMO {
        db.execute(
            &format!(
                "INSERT INTO {table} (title, content, metadata) SELECT $1, $2, '{{\"demo\": true}}'::jsonb \
                 WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE title = $1 AND metadata->>'demo' = 'true')"
            ),
            &[&title, &content],
        )
        .await
        .map_err(|e| format!("seeding {table}: {e}"))?;
    }
    let n: i64 = db
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE metadata->>'demo' = 'true'"),
            &[],
        )
        .await
        .map_err(|e| format!("counting demo documents: {e}"))?
        .get(0);
    Ok(n)
}
