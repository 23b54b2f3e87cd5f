//! Executing one claimed run, through the same library calls the CLI makes
//! (`Engine::plan`, `apply_plan`, `plan_and_apply`, `drift`, `refresh_state`, and
//! [`Workflow::provision`]): there is no second code path for a run.
//!
//! Progress (resource steps, rollbacks, status changes) goes through one ordered
//! `EventLog` whose single writer appends it to `run_events` under the lease's fence;
//! the run's end is written after the log is drained, so a follower sees every event
//! before the final status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RunError;
use super::queue::{EventKind, Finish, Lease, Run};
use super::status::{Operation, RunStatus};
use crate::apply::{ApplyOptions, ApplyReport, Progress, ProgressSink, TenantOutcome, step_name};
use crate::plan::{Plan, PlanMode, render};
use crate::spec::RunSettings;
use crate::workflow::Workflow;
use crate::workflow::registry::{CheckRecord, Request};
use crate::workflow::status::RequestStatus;
use crate::{Engine, EngineConfig, PlanOptions, TenantId};

/// What every run of a worker shares: where the specs and state are, how hard to work.
#[derive(Clone, Debug)]
pub struct RunContext {
    pub specs_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Provider calls in flight at once within one run.
    pub parallelism: usize,
    pub settings: RunSettings,
    /// Where a provisioning's metrics check scrapes when `[validation] metrics_url` is
    /// not set: the process that executes runs serves tenantform's own metrics and says
    /// where ([`Workflow::set_metrics_url`]).
    pub metrics_url: Option<String>,
    /// The variables every run's engine reads (see [`crate::environment`]).
    pub environment: crate::Environment,
}

impl RunContext {
    /// The engine of one attempt at a run: its locks name the run and the attempt.
    fn engine(&self, lease: &Lease) -> Engine {
        Engine::new(EngineConfig {
            specs_dir: self.specs_dir.clone(),
            state_dir: self.state_dir.clone(),
            parallelism: self.parallelism,
            lock_timeout: Duration::from_secs(self.settings.lock_timeout_secs),
            policy_dir: None,
            run: Some(lease.run()),
            environment: self.environment.clone(),
            bulk_read: crate::engine::BulkRead::Auto,
        })
    }
}

/// The outcome of a `provision` run, as its result holds it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ProvisionResult {
    pub request: Request,
    /// The validation suite's results, when it ran in this run.
    pub checks: Vec<CheckRecord>,
}

/// Executes `run` (claimed by this attempt) to its end and writes the end. `cancel`
/// is cancelled when someone asks to cancel the run: no new step starts.
pub async fn execute(
    cx: &RunContext,
    lease: Arc<Lease>,
    run: &Run,
    saved_plan: Option<Value>,
    cancel: CancellationToken,
) -> Result<Run, RunError> {
    let engine = cx.engine(&lease);
    let (log, writer) = EventLog::start(lease.clone(), run.status);
    let tenant: Result<TenantId, RunError> = run
        .tenant
        .parse()
        .map_err(|e: String| RunError::Invalid(format!("run {}: {e}", run.id)));
    let end = match tenant {
        Err(e) => Finish::errored(e),
        Ok(tenant) => {
            let step = Step {
                engine: &engine,
                run,
                tenant,
                log: &log,
                cancel: &cancel,
                parallelism: cx.parallelism,
                metrics_url: cx.metrics_url.as_deref(),
            };
            // Boxed: the lifecycle's future is deep enough to overflow the compiler's
            // layout query inside a worker's.
            let ended = match run.operation {
                Operation::Provision => Box::pin(step.provision()).await,
                Operation::Drift => Box::pin(step.drift()).await,
                Operation::Refresh => Box::pin(step.refresh()).await,
                Operation::Plan | Operation::Apply | Operation::Destroy => {
                    match (&saved_plan, run.applies_confirmed_plan()) {
                        (Some(plan), true) => Box::pin(step.apply_confirmed(plan)).await,
                        _ if run.auto_apply && run.operation != Operation::Plan => {
                            Box::pin(step.plan_and_apply()).await
                        }
                        _ => Box::pin(step.plan_only()).await,
                    }
                }
            };
            ended.unwrap_or_else(Finish::errored)
        }
    };
    drop(log);
    let reached = writer
        .await
        .map_err(|e| RunError::Invalid(format!("the event writer failed: {e}")))??;
    let end = if reached.next().contains(&end.status) {
        end
    } else {
        Finish::errored(format!(
            "the run reached {reached} and cannot end {} from there: {}",
            end.status,
            end.error.as_deref().unwrap_or("no error was reported")
        ))
    };
    tracing::info!(run = %run.id, attempt = run.attempt, status = %end.status, "run ended");
    lease.finish(reached, &end).await
}

/// One attempt's view of the run it executes.
struct Step<'a> {
    engine: &'a Engine,
    run: &'a Run,
    tenant: TenantId,
    log: &'a EventLog,
    cancel: &'a CancellationToken,
    parallelism: usize,
    metrics_url: Option<&'a str>,
}

impl Step<'_> {
    fn mode(&self) -> PlanMode {
        match self.run.operation {
            Operation::Destroy => PlanMode::Destroy,
            _ => PlanMode::Normal,
        }
    }

    fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            tenants: vec![self.tenant.clone()],
            // As the CLI does: destroy does not refresh.
            refresh: self.mode() == PlanMode::Normal,
            mode: self.mode(),
            replace: Vec::new(),
            rotate: if self.run.rotate {
                vec![self.tenant.clone()]
            } else {
                Vec::new()
            },
        }
    }

    fn apply_options(&self) -> ApplyOptions {
        ApplyOptions {
            parallelism: self.parallelism,
            rollback: true,
            cancel: self.cancel.clone(),
        }
    }

    /// Plans and stores the plan: `planned` (waits for `runs apply`) when there are
    /// changes, else `planned_and_finished`.
    async fn plan_only(&self) -> Result<Finish, RunError> {
        let plan = self
            .engine
            .plan(&self.plan_options())
            .await
            .map_err(engine)?;
        let result = Some(json!({"plan": render::json(&plan)}));
        if !plan.has_changes() {
            return Ok(Finish {
                status: RunStatus::PlannedAndFinished,
                result,
                error: None,
                saved_plan: None,
            });
        }
        Ok(Finish {
            status: RunStatus::Planned,
            result,
            error: None,
            saved_plan: Some(serde_json::to_value(&plan).expect("a plan serializes")),
        })
    }

    /// Locks, plans and applies at once (auto-apply), re-planning from the last state
    /// checkpoint, which is also what an attempt that took over does.
    async fn plan_and_apply(&self) -> Result<Finish, RunError> {
        let log = self.log.clone();
        let (plan, report) = self
            .engine
            .plan_and_apply(
                &self.plan_options(),
                &self.apply_options(),
                |plan| {
                    log.status(
                        RunStatus::Applying,
                        json!({"summary": render::json(plan)["summary"].clone()}),
                    );
                    true
                },
                Some(self.log.progress_sink()),
            )
            .await
            .map_err(engine)?;
        Ok(match report {
            None => Finish {
                status: RunStatus::PlannedAndFinished,
                result: Some(json!({"plan": render::json(&plan)})),
                error: None,
                saved_plan: None,
            },
            Some(report) => self.applied(&plan, &report),
        })
    }

    /// Applies the plan someone confirmed, exactly, if the tenant's state has not
    /// moved on since it was made (else the stale-plan error).
    async fn apply_confirmed(&self, saved: &Value) -> Result<Finish, RunError> {
        let plan: Plan = serde_json::from_value(saved.clone())
            .map_err(|e| RunError::Invalid(format!("the stored plan cannot be read: {e}")))?;
        let report = self
            .engine
            .apply_plan(&plan, &self.apply_options(), Some(self.log.progress_sink()))
            .await
            .map_err(engine)?;
        Ok(self.applied(&plan, &report))
    }

    fn applied(&self, plan: &Plan, report: &ApplyReport) -> Finish {
        for t in report
            .tenants
            .iter()
            .filter(|t| t.outcome == TenantOutcome::RolledBack)
        {
            self.log.event(
                EventKind::RolledBack,
                None,
                json!({"tenant": t.tenant, "error": t.first_error()}),
            );
        }
        let first_error = report.tenants.iter().find_map(|t| t.first_error());
        let status = if report.succeeded() {
            RunStatus::Applied
        } else if report.interrupted && self.cancel.is_cancelled() {
            RunStatus::Canceled
        } else if report
            .tenants
            .iter()
            .any(|t| t.outcome == TenantOutcome::RolledBack)
        {
            RunStatus::RolledBack
        } else {
            RunStatus::Errored
        };
        Finish {
            status,
            result: Some(json!({"plan": render::json(plan), "report": report})),
            error: match status {
                RunStatus::Applied => None,
                RunStatus::Canceled => Some(format!(
                    "canceled by {}: the steps in flight finished and state is saved",
                    self.run.cancel_requested_by.as_deref().unwrap_or("request")
                )),
                _ => Some(first_error.unwrap_or_else(|| "the apply was interrupted".into())),
            },
            saved_plan: None,
        }
    }

    /// Reads everything back and stores the drift report. Changes nothing.
    async fn drift(&self) -> Result<Finish, RunError> {
        let report = self
            .engine
            .drift(std::slice::from_ref(&self.tenant))
            .await
            .map_err(engine)?;
        Ok(Finish {
            status: RunStatus::PlannedAndFinished,
            result: Some(json!({"drift": crate::drift::render::json(&report)})),
            error: None,
            saved_plan: None,
        })
    }

    /// Records drift in state (the refresh-only apply).
    async fn refresh(&self) -> Result<Finish, RunError> {
        let log = self.log.clone();
        let (report, written) = self
            .engine
            .refresh_state(std::slice::from_ref(&self.tenant), |_| {
                log.status(RunStatus::Applying, json!({}));
                true
            })
            .await
            .map_err(engine)?;
        Ok(Finish {
            status: if written {
                RunStatus::Applied
            } else {
                RunStatus::PlannedAndFinished
            },
            result: Some(json!({"drift": crate::drift::render::json(&report), "written": written})),
            error: None,
            saved_plan: None,
        })
    }

    /// The lifecycle of an approved request: [`Workflow::provision`], which resumes a
    /// request that an earlier attempt left `provisioning` or `validating`.
    async fn provision(&self) -> Result<Finish, RunError> {
        let request_id = self.run.request_id.as_deref().unwrap_or(&self.run.tenant);
        let mut wf = Workflow::open(self.engine).await.map_err(workflow)?;
        wf.set_progress(self.log.progress_sink());
        if let Some(url) = self.metrics_url {
            wf.set_metrics_url(url);
        }
        let outcome = wf
            .provision(request_id, &self.run.requested_by)
            .await
            .map_err(workflow)?;
        let request = outcome.request;
        let (status, error) = match request.status {
            RequestStatus::Active => (RunStatus::Applied, None),
            RequestStatus::RolledBack => (RunStatus::RolledBack, request.failure_reason.clone()),
            other => (
                RunStatus::Errored,
                Some(request.failure_reason.clone().unwrap_or_else(|| {
                    format!(
                        "the request ended {other}; see `tenantform request status {request_id}`"
                    )
                })),
            ),
        };
        let result = ProvisionResult {
            checks: outcome.checks.iter().map(CheckRecord::from).collect(),
            request,
        };
        Ok(Finish {
            status,
            result: Some(serde_json::to_value(&result).expect("a provision result serializes")),
            error,
            saved_plan: None,
        })
    }
}

fn engine(e: crate::Error) -> RunError {
    RunError::Engine(Box::new(e))
}

fn workflow(e: crate::workflow::WorkflowError) -> RunError {
    RunError::Workflow(Box::new(e))
}

/// One record for the event writer.
enum Record {
    Event {
        kind: EventKind,
        address: Option<String>,
        detail: Value,
    },
    Status {
        to: RunStatus,
        detail: Value,
    },
}

/// The ordered log of one attempt: progress callbacks (which are synchronous) push
/// records; one task writes them, in order, under the lease's fence.
#[derive(Clone)]
pub(crate) struct EventLog {
    tx: mpsc::UnboundedSender<Record>,
}

impl EventLog {
    /// Starts the writer of an attempt whose run is in `status`. The writer ends when
    /// every clone of the log is dropped, with the status it reached, or with
    /// [`RunError::Fenced`] as soon as a write was refused.
    pub(crate) fn start(
        lease: Arc<Lease>,
        status: RunStatus,
    ) -> (
        EventLog,
        tokio::task::JoinHandle<Result<RunStatus, RunError>>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
        let writer = tokio::spawn(async move {
            let mut current = status;
            while let Some(record) = rx.recv().await {
                let written = match record {
                    Record::Event {
                        kind,
                        address,
                        detail,
                    } => lease.event(kind, address.as_deref(), &detail).await,
                    // Moves that do not apply from here (applying again, or applying
                    // while rolling back) are not moves.
                    Record::Status { to, detail } => {
                        if to == current || !current.next().contains(&to) {
                            continue;
                        }
                        let moved = lease.set_status(current, to, detail).await;
                        if moved.is_ok() {
                            current = to;
                        }
                        moved
                    }
                };
                match written {
                    Ok(()) => {}
                    Err(e @ RunError::Fenced { .. }) => return Err(e),
                    Err(e) => tracing::warn!(error = %e, "cannot record a run event"),
                }
            }
            Ok(current)
        });
        (EventLog { tx }, writer)
    }

    fn push(&self, record: Record) {
        // The writer only stops after a refused write; the run ends then anyway.
        let _ = self.tx.send(record);
    }

    pub(crate) fn status(&self, to: RunStatus, detail: Value) {
        self.push(Record::Status { to, detail });
    }

    pub(crate) fn event(&self, kind: EventKind, address: Option<String>, detail: Value) {
        self.push(Record::Event {
            kind,
            address,
            detail,
        });
    }

    /// The engine's progress as run events: the first step moves the run to
    /// `applying`, a rollback to `rolling_back`.
    pub(crate) fn progress_sink(&self) -> ProgressSink {
        let log = self.clone();
        Arc::new(move |p: &Progress| match p {
            Progress::Started { address, kind } => {
                log.status(RunStatus::Applying, json!({}));
                log.event(
                    EventKind::Started,
                    Some(address.to_string()),
                    json!({"step": step_name(*kind)}),
                );
            }
            Progress::Finished {
                address,
                kind,
                elapsed,
            } => log.event(
                EventKind::Finished,
                Some(address.to_string()),
                json!({"step": step_name(*kind), "elapsed_ms": elapsed.as_millis() as u64}),
            ),
            Progress::Failed {
                address,
                kind,
                error,
            } => log.event(
                EventKind::Failed,
                Some(address.to_string()),
                json!({"step": step_name(*kind), "error": error}),
            ),
            Progress::RollbackStarted { tenant, resources } => {
                log.status(RunStatus::RollingBack, json!({}));
                log.event(
                    EventKind::RollingBack,
                    None,
                    json!({"tenant": tenant, "resources": resources}),
                );
            }
        })
    }
}
