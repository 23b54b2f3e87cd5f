//! Provisioning of an approved (or retried) request, as a sequence of stages.
//!
//! Each stage does its part and returns what comes next ([`Next`]), the way a
//! reconciler returns its action: go on to another stage, finish with the outcome, end
//! the request as failed, or undo the tenant first. [`Workflow::provision`] runs the
//! stages in a loop, each inside a `tracing` span `provision` with the request, the
//! tenant and the stage, so that one request's log reads as its story.
//!
//! ```text
//! Apply ──> Configure ──> Validate ──> Activate ──> Done
//!   │           │            ├─ security or integration check failed ──> RollBack
//!   │           │            └─ compliance check failed ──> Fail (activation blocked)
//!   │           └─ demo documents could not be seeded ──> RollBack
//!   └─ the engine's apply failed ──> Fail (the engine already undid a new tenant)
//! ```
//!
//! A failure names its step ([`FailedStep`]; the registry stores it as text such as
//! `apply:acme/s3_bucket.documents` or `validation:cross_tenant_isolation`) and ends as
//! one [`FailureKind`], which decides the request's status and who is told.

use std::fmt;

use serde_json::json;
use tracing::Instrument;

use super::checks::{self, CheckCategory, CheckResult};
use super::notify::Audience;
use super::registry::{Failure, Request};
use super::status::RequestStatus;
use super::{Outcome, Workflow, WorkflowError};
use crate::apply::{Progress, StepOutcome, TenantOutcome};
use crate::connect::postgres::{PostgresConfig, ident};
use crate::engine::PlanOptions;
use crate::plan::PlanMode;
use crate::resource::{ResourceAddress, TenantId};
use crate::spec::{Specs, TenantSpec};
use crate::state::TenantState;

/// The step of provisioning that failed, as the registry, the audit trail and the
/// notifications name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailedStep {
    /// The engine's apply, before any resource step (planning or locking failed).
    Apply,
    /// One resource step of the engine's apply.
    ApplyResource(ResourceAddress),
    /// Seeding the tier's demo documents.
    Configure,
    /// A validation check, by name ([`checks::CHECKS`]).
    Validation(String),
}

impl fmt::Display for FailedStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailedStep::Apply => f.write_str("apply"),
            FailedStep::ApplyResource(address) => write!(f, "apply:{address}"),
            FailedStep::Configure => f.write_str("configure"),
            FailedStep::Validation(check) => write!(f, "validation:{check}"),
        }
    }
}

/// How a provisioning failed: what is left of the tenant decides the request's status,
/// the event and who is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailureKind {
    /// Nothing of the tenant remains: it was undone, or nothing had been changed.
    RolledBack,
    /// Provisioned, but a compliance check blocks activation; the resources and the
    /// spec stay for a fix and a retry.
    ActivationBlocked,
    /// Failed and not fully undone: state keeps what is left. A P0 for the platform team.
    NotUndone,
}

impl FailureKind {
    fn status(self) -> RequestStatus {
        match self {
            FailureKind::RolledBack => RequestStatus::RolledBack,
            FailureKind::ActivationBlocked | FailureKind::NotUndone => RequestStatus::Failed,
        }
    }

    fn event(self) -> &'static str {
        match self {
            FailureKind::RolledBack => "rolled_back",
            FailureKind::ActivationBlocked => "activation_blocked",
            FailureKind::NotUndone => "p0_rollback_failed",
        }
    }

    fn subject(self, tenant: &str) -> String {
        match self {
            FailureKind::RolledBack => {
                format!("Provisioning of tenant {tenant} failed and was rolled back")
            }
            FailureKind::ActivationBlocked => {
                format!("Tenant {tenant} was provisioned but not activated")
            }
            FailureKind::NotUndone => {
                format!("P0: provisioning of tenant {tenant} failed and was not fully undone")
            }
        }
    }

    fn audiences(self) -> Vec<Audience> {
        match self {
            FailureKind::NotUndone => vec![Audience::PlatformTeam, Audience::Owner],
            FailureKind::RolledBack | FailureKind::ActivationBlocked => {
                vec![Audience::Owner, Audience::PlatformTeam]
            }
        }
    }

    /// Whether the spec written for the request stays: only when the tenant's
    /// resources are kept on purpose. Otherwise a later plan would create it again.
    fn keeps_spec(self) -> bool {
        self == FailureKind::ActivationBlocked
    }
}

/// A stage of provisioning, with what it needs from the stages before it.
#[derive(Debug)]
enum Stage {
    /// The engine applies the tenant's spec (a new tenant is all-or-nothing).
    Apply,
    /// What the tier configures beyond its resources: the demo documents.
    Configure,
    /// The validation suite, on the tenant as applied.
    Validate(Box<Applied>),
    /// Activation and the notifications, with the suite's results.
    Activate(Vec<CheckResult>),
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Apply => "apply",
            Stage::Configure => "configure",
            Stage::Validate(_) => "validate",
            Stage::Activate(_) => "activate",
        }
    }
}

/// A tenant as the apply left it.
#[derive(Debug)]
struct Applied {
    specs: Specs,
    spec: TenantSpec,
    state: TenantState,
}

/// What a stage decided.
#[must_use]
#[derive(Debug)]
enum Next {
    Continue(Stage),
    Done(Box<Outcome>),
    /// End the request as `kind` says; there is nothing for the workflow to undo.
    Fail {
        kind: FailureKind,
        failure: Failure,
        checks: Vec<CheckResult>,
    },
    /// Destroy what the tenant has, then end the request rolled back (or, when that
    /// is incomplete, failed with a P0).
    RollBack {
        failure: Failure,
        checks: Vec<CheckResult>,
    },
}

/// One provisioning of a request: what every stage works on.
struct Provisioning<'a> {
    /// The request as last written.
    request: Request,
    tenant: TenantId,
    actor: &'a str,
}

impl Workflow<'_> {
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
        let tenant = request.spec()?.id;
        let mut run = Provisioning {
            request,
            tenant,
            actor,
        };
        let mut stage = Stage::Apply;
        loop {
            let span = tracing::info_span!(
                "provision",
                request = %run.request.id,
                tenant = %run.tenant,
                stage = stage.name()
            );
            // Boxed: the stages' futures nest deep (the validation suite), and a
            // caller's future that held them inline would exceed the compiler's
            // layout depth limit.
            let next = Box::pin(self.run_stage(&mut run, stage).instrument(span.clone())).await?;
            stage = match next {
                Next::Continue(stage) => stage,
                Next::Done(outcome) => return Ok(*outcome),
                Next::Fail {
                    kind,
                    failure,
                    checks,
                } => {
                    return self
                        .fail(&run.request, kind, failure, checks)
                        .instrument(span)
                        .await;
                }
                Next::RollBack { failure, checks } => {
                    return self.roll_back(&run, failure, checks).instrument(span).await;
                }
            };
        }
    }

    async fn run_stage(
        &mut self,
        run: &mut Provisioning<'_>,
        stage: Stage,
    ) -> Result<Next, WorkflowError> {
        tracing::info!("stage started");
        match stage {
            Stage::Apply => self.apply(run).await,
            Stage::Configure => self.configure(run).await,
            Stage::Validate(applied) => self.validate(run, *applied).await,
            Stage::Activate(checks) => self.activate(run, checks).await,
        }
    }

    /// The engine applies the tenant. A new tenant is all-or-nothing: the engine rolls a
    /// failed apply back itself, so a failure here leaves nothing for the workflow to undo.
    async fn apply(&mut self, run: &Provisioning<'_>) -> Result<Next, WorkflowError> {
        let applied = self
            .engine
            .plan_and_apply(
                &PlanOptions {
                    tenants: vec![run.tenant.clone()],
                    refresh: true,
                    mode: PlanMode::Normal,
                    replace: Vec::new(),
                    rotate: Vec::new(),
                },
                &crate::ApplyOptions::default(),
                |_| true,
                self.progress.clone(),
            )
            .await;
        let report = match applied {
            Ok((_, report)) => report,
            // Nothing was changed (planning or locking failed before any step).
            Err(e) => return Ok(Next::fail(FailureKind::RolledBack, FailedStep::Apply, e)),
        };
        let Some(t) = report
            .as_ref()
            .and_then(|r| r.tenants.iter().find(|t| t.tenant == run.tenant))
        else {
            return Ok(Next::Continue(Stage::Configure));
        };
        let kind = match t.outcome {
            TenantOutcome::Applied | TenantOutcome::Unchanged => {
                return Ok(Next::Continue(Stage::Configure));
            }
            TenantOutcome::RolledBack => FailureKind::RolledBack,
            TenantOutcome::RollbackFailed | TenantOutcome::Failed | TenantOutcome::Interrupted => {
                FailureKind::NotUndone
            }
        };
        let step = t
            .steps
            .iter()
            .find(|s| matches!(s.outcome, StepOutcome::Failed { .. }))
            .map_or(FailedStep::Apply, |s| {
                FailedStep::ApplyResource(s.address.clone())
            });
        let error = t.first_error().unwrap_or_else(|| "interrupted".into());
        Ok(Next::fail(kind, step, error))
    }

    /// The tier's settings, rate limits and model are resources, applied already; what
    /// is left is seeding a Gold tenant's demo documents.
    async fn configure(&mut self, run: &Provisioning<'_>) -> Result<Next, WorkflowError> {
        let specs = self.engine.specs().await?;
        let (spec, state) = self
            .spec_and_state(&specs, &run.tenant, "was just applied")
            .await?;
        let mut configured = json!({"demo_documents": 0});
        if specs.tier_of(&spec).demo_documents {
            let aws = crate::connect::aws::AwsClients::load(&specs.platform.aws).await;
            match seed_demo_documents(&self.pg, &aws, &state).await {
                Ok(n) => configured = json!({"demo_documents": n}),
                Err(e) => {
                    return Ok(Next::RollBack {
                        failure: Failure {
                            step: FailedStep::Configure,
                            reason: e,
                        },
                        checks: Vec::new(),
                    });
                }
            }
        }
        self.registry
            .note(&run.request.id, run.actor, "configured", configured)
            .await?;
        Ok(Next::Continue(Stage::Validate(Box::new(Applied {
            specs,
            spec,
            state,
        }))))
    }

    /// The validation suite, by the failure policy: a security or integration failure
    /// rolls the tenant back (a security failure is named first); a compliance failure
    /// blocks activation; a performance failure only warns (at activation).
    async fn validate(
        &mut self,
        run: &mut Provisioning<'_>,
        applied: Applied,
    ) -> Result<Next, WorkflowError> {
        // A resumed run may find the request validating already.
        let current = self.registry.require(&run.request.id).await?;
        run.request = if current.status == RequestStatus::Validating {
            current
        } else {
            self.registry
                .transition(
                    &run.request.id,
                    RequestStatus::Provisioning,
                    RequestStatus::Validating,
                    run.actor,
                    None,
                    json!({}),
                )
                .await?
        };
        let results = self
            .run_checks(&applied.specs, &applied.spec, &applied.state)
            .await?;
        let failed = |c: CheckCategory| results.iter().find(|r| !r.passed && r.category == c);
        if let Some(first) =
            failed(CheckCategory::Security).or_else(|| failed(CheckCategory::Integration))
        {
            let failure = Failure {
                step: FailedStep::Validation(first.name.clone()),
                reason: first.message.clone(),
            };
            return Ok(Next::RollBack {
                failure,
                checks: results,
            });
        }
        if let Some(first) = failed(CheckCategory::Compliance) {
            let failure = Failure {
                step: FailedStep::Validation(first.name.clone()),
                reason: format!(
                    "activation blocked by a compliance check: {}",
                    first.message
                ),
            };
            return Ok(Next::Fail {
                kind: FailureKind::ActivationBlocked,
                failure,
                checks: results,
            });
        }
        Ok(Next::Continue(Stage::Activate(results)))
    }

    async fn activate(
        &mut self,
        run: &Provisioning<'_>,
        results: Vec<CheckResult>,
    ) -> Result<Next, WorkflowError> {
        let passed = results.iter().filter(|r| r.passed).count();
        let request = self
            .registry
            .transition(
                &run.request.id,
                RequestStatus::Validating,
                RequestStatus::Active,
                run.actor,
                None,
                json!({"checks_passed": passed, "checks": results.len()}),
            )
            .await?;
        if let Some(p) = results
            .iter()
            .find(|r| !r.passed && r.category == CheckCategory::Performance)
        {
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
                passed,
                results.len(),
                request.budget_inr,
                request.cost_center
            ),
            vec![Audience::Owner, Audience::PlatformTeam, Audience::Finance],
        )
        .await?;
        tracing::info!(checks_passed = passed, "tenant active");
        Ok(Next::Done(Box::new(Outcome {
            request,
            created: false,
            checks: results,
        })))
    }

    /// Undoes a provisioned tenant: deletes everything its state holds, then ends the
    /// request rolled back, or failed with a P0 when something is left.
    async fn roll_back(
        &mut self,
        run: &Provisioning<'_>,
        failure: Failure,
        checks: Vec<CheckResult>,
    ) -> Result<Outcome, WorkflowError> {
        if let Some(p) = &self.progress {
            let resources = self
                .load_state(&run.tenant)
                .await?
                .map_or(0, |s| s.resources.len());
            p(&Progress::RollbackStarted {
                tenant: run.tenant.clone(),
                resources,
            });
        }
        let report = self
            .engine
            .roll_back_tenant(&run.tenant, self.progress.clone())
            .await?;
        let complete = report.succeeded()
            && self
                .load_state(&run.tenant)
                .await?
                .is_none_or(|s| s.resources.is_empty());
        if complete {
            return self
                .fail(&run.request, FailureKind::RolledBack, failure, checks)
                .await;
        }
        let failure = Failure {
            reason: format!(
                "{}; the rollback did not complete: state keeps what is left, run `tenantform destroy --tenant {}` or `tenantform request retry {}`",
                failure.reason, run.tenant, run.request.id
            ),
            ..failure
        };
        self.fail(&run.request, FailureKind::NotUndone, failure, checks)
            .await
    }

    /// Ends a request as `kind` says: removes the spec written for it (unless its
    /// resources are kept), records the failure with the status change, and tells
    /// those who need to know.
    async fn fail(
        &mut self,
        request: &Request,
        kind: FailureKind,
        failure: Failure,
        checks: Vec<CheckResult>,
    ) -> Result<Outcome, WorkflowError> {
        if !kind.keeps_spec() {
            self.remove_spec(&request.id).await?;
        }
        let current = self.registry.require(&request.id).await?;
        let request = self
            .registry
            .transition(
                &request.id,
                current.status,
                kind.status(),
                "tenantform",
                Some(&failure),
                json!({}),
            )
            .await?;
        tracing::warn!(
            status = %request.status,
            step = %failure.step,
            error = %failure.reason,
            "provisioning failed"
        );
        self.notify(
            &request,
            kind.event(),
            kind.subject(&request.id),
            format!("Step {} failed: {}", failure.step, failure.reason),
            kind.audiences(),
        )
        .await?;
        Ok(Outcome {
            request,
            created: false,
            checks,
        })
    }
}

impl Next {
    fn fail(kind: FailureKind, step: FailedStep, error: impl ToString) -> Next {
        Next::Fail {
            kind,
            failure: Failure {
                step,
                reason: error.to_string(),
            },
            checks: Vec::new(),
        }
    }
}

/// Seeds a Gold tenant's demo documents, as the tenant's own role (so row-level
/// security stamps them as the tenant's). Idempotent: returns how many exist.
///
/// Why they are rows seeded here and not a resource of the blueprint: they are starter
/// content that becomes the tenant's own data the moment it exists. The tenant may edit
/// or delete them, and a resource would report that as drift and put them back on the
/// next apply. What follows from that:
/// - **destroy** removes them: they live in the tenant's `documents` table, which is
///   the resource `postgres_table.documents` (dropped on destroy, and with the schema);
/// - **drift** does not see them, as it does not see any of the tenant's documents;
/// - only provisioning through a request seeds them (a retry seeds what is missing); a
///   tenant applied from a spec file alone, or moved to Gold later, gets none. The tier
///   settings row (`tenant_settings.main`, a resource) records `demo_documents`.
async fn seed_demo_documents(
    pg: &PostgresConfig,
    aws: &crate::connect::aws::AwsClients,
    state: &TenantState,
) -> Result<i64, String> {
    let credentials = checks::tenant_credentials(aws, state).await?;
    let (db, _, schema) = checks::connect_as_tenant(pg, &credentials, state).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The text stored in the registry and shown by `request status` is the same as
    /// before steps had a type: tests, metrics labels and audit readers depend on it.
    #[test]
    fn failed_steps_read_as_the_registry_stores_them() {
        let address: ResourceAddress = "acme/s3_bucket.documents".parse().unwrap();
        let cases = [
            (FailedStep::Apply, "apply"),
            (
                FailedStep::ApplyResource(address),
                "apply:acme/s3_bucket.documents",
            ),
            (FailedStep::Configure, "configure"),
            (
                FailedStep::Validation("cross_tenant_isolation".into()),
                "validation:cross_tenant_isolation",
            ),
        ];
        for (step, text) in cases {
            assert_eq!(step.to_string(), text);
        }
    }

    #[test]
    fn each_kind_of_failure_has_its_status_event_and_audience() {
        use FailureKind::*;
        assert_eq!(RolledBack.status(), RequestStatus::RolledBack);
        assert_eq!(ActivationBlocked.status(), RequestStatus::Failed);
        assert_eq!(NotUndone.status(), RequestStatus::Failed);
        assert_eq!(NotUndone.event(), "p0_rollback_failed");
        assert!(NotUndone.subject("acme").starts_with("P0: "));
        assert_eq!(NotUndone.audiences()[0], Audience::PlatformTeam);
        assert!(ActivationBlocked.keeps_spec());
        assert!(!RolledBack.keeps_spec() && !NotUndone.keeps_spec());
    }
}
