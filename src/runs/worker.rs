//! The worker loop: claim, supervise (lease heartbeat, cancel, takeover), drain.
//!
//! A worker claims runs while it has free slots (`concurrency`), executes each in its
//! own task next to a heartbeat that renews the run's lease, and sleeps until a
//! notification on [`RUNS_CHANNEL`] (a run queued, a tenant freed) or the poll interval
//! wakes it. The same loop, restricted to one run, is the embedded executor: the
//! command that queued a run executes it itself.
//!
//! Shutdown ([`Shutdown`]): `drain` (SIGTERM) claims nothing new, lets the runs in flight
//! finish (each releases its lease as it ends) and returns; `stop` (a second signal)
//! stops the runs in flight at once and releases their leases, so that another worker
//! takes them over without waiting for the leases to expire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::RunError;
use super::execute::{RunContext, execute};
use super::queue::{
    Claim, EVENTS_CHANNEL, EventKind, Lease, RUNS_CHANNEL, Renewal, Run, RunEvent, RunQueue,
    WorkerRecord,
};
use super::status::{Operation, RunStatus};
use crate::connect::postgres::{Listener, PostgresConfig};
use crate::spec::RunExecutor;
use crate::state::{LockInfo, StateStore, host_name};

/// How a worker is asked to stop.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Claim nothing new; return when the runs in flight have ended.
    pub drain: CancellationToken,
    /// Stop the runs in flight now and release their leases for an immediate takeover.
    pub stop: CancellationToken,
}

/// A worker: one process's loop over the queue.
pub struct Worker {
    cx: Arc<RunContext>,
    queue: Arc<RunQueue>,
    id: String,
    concurrency: usize,
    /// The embedded executor: only this run, and return once it is settled.
    only: Option<Uuid>,
}

impl Worker {
    /// A worker executing up to `concurrency` runs at once.
    pub async fn new(
        cx: RunContext,
        pg: &PostgresConfig,
        concurrency: usize,
    ) -> Result<Worker, RunError> {
        let id = format!(
            "{}:{}:{}",
            host_name(),
            std::process::id(),
            &Uuid::new_v4().to_string()[..8]
        );
        Self::open(cx, pg, id, concurrency.max(1), None).await
    }

    /// The embedded executor of one run: it claims that run as soon as the run may
    /// start (executing first the runs of its tenant that must go before it), executes
    /// it here, and returns once the run is settled, whoever executed it (a worker may
    /// have been faster).
    pub async fn embedded(
        cx: RunContext,
        pg: &PostgresConfig,
        run: Uuid,
    ) -> Result<Worker, RunError> {
        let id = format!("embedded:{}:{}", host_name(), std::process::id());
        Self::open(cx, pg, id, 1, Some(run)).await
    }

    async fn open(
        cx: RunContext,
        pg: &PostgresConfig,
        id: String,
        concurrency: usize,
        only: Option<Uuid>,
    ) -> Result<Worker, RunError> {
        Ok(Worker {
            queue: Arc::new(RunQueue::open(pg).await?),
            id,
            cx: Arc::new(cx),
            concurrency,
            only,
        })
    }

    /// How leases and runs name this worker (`host:pid:id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs the loop until `shutdown` (or, embedded, until the run is settled).
    pub async fn run(self, shutdown: Shutdown) -> Result<(), RunError> {
        let settings = &self.cx.settings;
        let lease = Duration::from_secs(settings.lease_secs);
        let heartbeat = Duration::from_secs(settings.heartbeat_secs);
        let poll = Duration::from_secs(settings.poll_secs);
        let registered = self.only.is_none();
        if registered {
            self.queue
                .register_worker(&WorkerRecord {
                    id: self.id.clone(),
                    host: host_name(),
                    pid: std::process::id() as i32,
                    concurrency: self.concurrency as i32,
                    version: env!("CARGO_PKG_VERSION").into(),
                    started_at: chrono::Utc::now(),
                    heartbeat_at: chrono::Utc::now(),
                })
                .await?;
            tracing::info!(worker = %self.id, concurrency = self.concurrency, "worker started");
        }
        let mut wake = Listener::open(self.queue.database(), &[RUNS_CHANNEL]).await;
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut alive = tokio::time::interval(heartbeat);
        let mut draining = false;
        loop {
            while !draining && tasks.len() < self.concurrency {
                let claim = match self.queue.claim(&self.id, lease, self.only).await {
                    Ok(Some(claim)) => claim,
                    Ok(None) => break,
                    // A passing fault: try again at the next wake-up. A connection gone
                    // for good ends the worker (its runs' leases expire, others take
                    // them over).
                    Err(e) if !self.queue.is_closed() => {
                        tracing::warn!(worker = %self.id, error = %e, "cannot claim a run; trying again");
                        break;
                    }
                    Err(e) => return Err(e),
                };
                tracing::info!(
                    worker = %self.id, run = %claim.run.id, tenant = %claim.run.tenant,
                    operation = %claim.run.operation, attempt = claim.run.attempt,
                    takeover = claim.takeover_from.is_some(), "claimed a run"
                );
                let (cx, queue, stop) =
                    (self.cx.clone(), self.queue.clone(), shutdown.stop.clone());
                // A thread of its own drives the run: the compiler cannot prove every
                // engine future `Send` (its refresh stream borrows state across an
                // await), so the run is not spawned as a task but driven by `block_on`
                // on the blocking pool; what it spawns still runs on the runtime.
                let runtime = tokio::runtime::Handle::current();
                tasks.spawn_blocking(move || runtime.block_on(supervise(cx, queue, claim, stop)));
            }
            if draining && tasks.is_empty() {
                break;
            }
            if let Some(id) = self.only
                && tasks.is_empty()
                && self.queue.require(id).await?.status.is_settled()
            {
                break;
            }
            tokio::select! {
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = wake.next() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = alive.tick(), if registered => {
                    if let Err(e) = self.queue.worker_heartbeat(&self.id).await {
                        tracing::warn!(worker = %self.id, error = %e, "cannot record the worker's heartbeat");
                    }
                }
                _ = shutdown.drain.cancelled(), if !draining => {
                    draining = true;
                    tracing::info!(worker = %self.id, in_flight = tasks.len(), "draining: finishing the runs in flight, claiming no new one");
                }
            }
        }
        if registered {
            self.queue.worker_stopped(&self.id).await?;
            tracing::info!(worker = %self.id, "worker stopped");
        }
        Ok(())
    }
}

/// Executes one claimed run next to its lease's heartbeat. Returns when the run
/// ended, when the lease was lost (the execution is dropped where it stands, as a
/// crash would: state is checkpointed after every step, and the attempt that took over
/// re-plans), or when `stop` asks to give the run up.
async fn supervise(
    cx: Arc<RunContext>,
    queue: Arc<RunQueue>,
    claim: Claim,
    stop: CancellationToken,
) {
    let run = claim.run;
    let lease_for = Duration::from_secs(cx.settings.lease_secs);
    let lease = Arc::new(Lease::new(queue.clone(), &run, lease_for));
    if let Some(previous) = &claim.takeover_from {
        let message = format!(
            "attempt {} took over from {previous}, whose lease expired: it refreshes from the last state checkpoint and plans again",
            run.attempt
        );
        if let Err(e) = lease
            .event(EventKind::Message, None, &json!({"message": message}))
            .await
        {
            tracing::warn!(run = %run.id, error = %e, "cannot record the takeover");
        }
    }
    let saved_plan = if run.applies_confirmed_plan() {
        match queue.saved_plan(run.id).await {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(run = %run.id, error = %e, "cannot read the stored plan; the run is left for another attempt");
                return;
            }
        }
    } else {
        None
    };
    let cancel = CancellationToken::new();
    let heartbeat = Duration::from_secs(cx.settings.heartbeat_secs);
    tokio::select! {
        biased;
        ended = Box::pin(execute(&cx, lease.clone(), &run, saved_plan, cancel.clone())) => match ended {
            Ok(r) => tracing::info!(run = %r.id, status = %r.status, "run finished"),
            Err(e @ RunError::Fenced { .. }) => tracing::warn!(run = %run.id, error = %e, "run fenced"),
            // The run stays active; its lease expires and another attempt takes over.
            Err(e) => tracing::error!(run = %run.id, error = %e, "run failed before it could record its end"),
        },
        () = keep_lease(&lease, heartbeat, lease_for, &cancel) => {
            tracing::warn!(run = %run.id, attempt = run.attempt, "lost the lease: another worker took the run over; this attempt stopped");
        }
        () = stop.cancelled() => {
            match lease.release().await {
                Ok(()) => tracing::info!(run = %run.id, "stopped; the run is released for another worker to take over"),
                Err(e) => tracing::warn!(run = %run.id, error = %e, "stopped; the lease could not be released and expires by itself"),
            }
        }
    }
}

/// Renews the lease every `every` until it is lost, cancelling `cancel` when someone
/// asks to cancel the run. A lease that could not be renewed for a whole lease period
/// counts as lost: another worker may take the run over from then on.
async fn keep_lease(
    lease: &Lease,
    every: Duration,
    lease_for: Duration,
    cancel: &CancellationToken,
) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match lease.renew().await {
            Ok(Renewal::Held { cancel_requested }) => {
                renewed = Instant::now();
                if cancel_requested && !cancel.is_cancelled() {
                    tracing::info!(run = %lease.run().id, "cancel requested: no new step starts");
                    cancel.cancel();
                }
            }
            Ok(Renewal::Lost) => return,
            Err(e) => {
                tracing::warn!(run = %lease.run().id, error = %e, "cannot renew the lease");
                if renewed.elapsed() >= lease_for {
                    return;
                }
            }
        }
    }
}

/// Follows a run until it is settled (final, or planned and waiting for `runs
/// apply`), calling `on_event` for every event in order, from the first.
pub async fn follow(
    queue: &RunQueue,
    id: Uuid,
    on_event: impl FnMut(&RunEvent),
) -> Result<Run, RunError> {
    follow_after(queue, id, 0, RunStatus::is_settled, on_event).await
}

/// [`follow`] from the event after `after` (an event id; 0 for the start) until the
/// run's status is one `until` accepts: what a follower that reconnects gets, each
/// event once, none missed.
pub async fn follow_after(
    queue: &RunQueue,
    id: Uuid,
    mut after: i64,
    until: impl Fn(RunStatus) -> bool,
    mut on_event: impl FnMut(&RunEvent),
) -> Result<Run, RunError> {
    let mut listener = Listener::open(queue.database(), &[EVENTS_CHANNEL, RUNS_CHANNEL]).await;
    let prefix = id.to_string();
    loop {
        for e in queue.events(id, after).await? {
            after = e.id;
            on_event(&e);
        }
        let run = queue.require(id).await?;
        if until(run.status) {
            // Its final status event was written with the status: read it too.
            for e in queue.events(id, after).await? {
                on_event(&e);
            }
            return Ok(run);
        }
        listener.wait_for(&prefix, Duration::from_secs(1)).await;
    }
}

/// Settles a run that was just queued, as `[runs] executor` says: embedded, it is
/// executed here (with the runs of its tenant that must go before it) while `on_event`
/// gets its events as they are written; with workers, `wait` follows it to its end,
/// else it is returned as it stands. `None`: `shutdown.stop` interrupted the embedded
/// execution, and the run was released for `runs resume` or a worker.
pub async fn settle(
    cx: &RunContext,
    pg: &PostgresConfig,
    queue: &RunQueue,
    id: Uuid,
    wait: bool,
    shutdown: Shutdown,
    on_event: impl FnMut(&RunEvent),
) -> Result<Option<Run>, RunError> {
    match cx.settings.executor {
        RunExecutor::Embedded => {
            let worker = Worker::embedded(cx.clone(), pg, id).await?;
            let stopped = shutdown.stop.clone();
            let followed = async {
                tokio::select! {
                    run = follow(queue, id, on_event) => run.map(Some),
                    () = stopped.cancelled() => Ok(None),
                }
            };
            let (_, run) = tokio::try_join!(worker.run(shutdown.clone()), followed)?;
            Ok(run.filter(|_| !shutdown.stop.is_cancelled()))
        }
        RunExecutor::Workers if wait => Ok(Some(follow(queue, id, on_event).await?)),
        RunExecutor::Workers => Ok(Some(queue.require(id).await?)),
    }
}

/// A run with where it stands in the queue, and what it waits for.
#[derive(Clone, Debug, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: Run,
    /// A waiting run's place in the queue, across tenants (1 = next).
    pub queue_position: Option<i64>,
    pub blocked_by: Option<BlockedBy>,
}

/// What a run waits for.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlockedBy {
    /// Another run of the same tenant: the active one, or one queued ahead.
    Run {
        id: Uuid,
        operation: Operation,
        status: RunStatus,
        lease_owner: Option<String>,
    },
    /// The tenant's state lock, held by someone else: a CLI `apply`, or an attempt
    /// of this run that was taken over and has not let go yet.
    Lock { holder: LockInfo },
}

/// `run` with its queue position and what blocks it (from the table, and the state
/// lock's holder).
pub async fn view(queue: &RunQueue, store: &StateStore, run: Run) -> Result<RunView, RunError> {
    let queue_position = queue.queue_position(&run).await?;
    let mut blocked_by = queue.blocking_run(&run).await?.map(|b| BlockedBy::Run {
        id: b.id,
        operation: b.operation,
        status: b.status,
        lease_owner: b.lease_owner,
    });
    if blocked_by.is_none()
        && (run.status.is_waiting() || run.status.is_active())
        && let Ok(tenant) = run.tenant.parse()
        && let Ok(Some(holder)) = store.lock_holder(&tenant).await
        && holder.run.map(|r| r.id) != Some(run.id)
    {
        blocked_by = Some(BlockedBy::Lock { holder });
    }
    Ok(RunView {
        run,
        queue_position,
        blocked_by,
    })
}

/// Whether a planned run's stored plan still matches its tenant's state, checked
/// before it is confirmed so that the person confirming learns at once that the plan is
/// stale ([`crate::check_plan_fresh`]; the apply checks again under the tenant's lock,
/// which is what guarantees it).
pub async fn check_saved_plan(
    queue: &RunQueue,
    store: &StateStore,
    run: &Run,
) -> Result<(), RunError> {
    let Some(saved) = queue.saved_plan(run.id).await? else {
        return Ok(());
    };
    let plan: crate::Plan = serde_json::from_value(saved).map_err(|e| {
        RunError::Invalid(format!(
            "the stored plan of run {} cannot be read: {e}",
            run.id
        ))
    })?;
    for t in &plan.tenants {
        let current = store
            .load(&t.tenant)
            .await
            .map_err(|e| RunError::Engine(Box::new(e.into())))?;
        crate::check_plan_fresh(t, current.as_ref()).map_err(|e| RunError::Engine(Box::new(e)))?;
    }
    Ok(())
}
