//! Runs: the queue of state-changing work, executed by workers on any number of
//! machines against one PostgreSQL, serialized per tenant.
//!
//! A run is a long-lived entity, not a job: it has a status a person follows (HCP
//! Terraform's names: `pending`, `planning`, `planned`, `applying`, `applied`,
//! `errored`, ...), it may stop half-way for a human (`planned` waits for `runs apply`
//! or `runs discard`), it keeps its plan, report and event log after it ends, and it is
//! what "blocked by" points at. So runs live in their own table, `tenantform.runs`,
//! next to the registry, with `tenantform.run_events` (the step log, resumable by id)
//! and `tenantform.workers` (who is alive).
//!
//! # The rules (HCP Terraform's, with the tenant as the unit of state)
//!
//! - Runs of one tenant are serialized; runs of different tenants go in parallel on
//!   whatever workers are free. At most one run per tenant is *active* (`planning`,
//!   `applying`, `rolling_back`): a partial unique index enforces it, whatever process
//!   writes the table.
//! - A waiting run starts when it is the first waiting run of its tenant and no run of
//!   its tenant is active. Its queue position and what blocks it (the tenant's active
//!   run, a run queued ahead, or the state lock's holder) are computed from the tables
//!   ([`view`]).
//!
//! # Queue, leases and the fence
//!
//! A worker claims a run with one statement (`FOR UPDATE SKIP LOCKED`, so claiming
//! workers never wait on each other), which sets the lease (owner, expiry) and adds one
//! to the run's `attempt`. While it executes the run, a heartbeat renews the lease. The
//! attempt is the fencing token: every write to the run (status, events, the end) is
//! `WHERE id = $1 AND attempt = $2`. A worker that dies stops renewing; once the lease
//! expired, another worker claims the run (attempt + 1), refreshes from the last state
//! checkpoint and plans again: steps are never replayed blindly, the engine's
//! checkpoint-and-adopt contract makes the re-plan converge. A worker that was only
//! paused past its lease finds, at its next write or heartbeat, that it was fenced, and
//! drops the execution where it stands. The engine of an attempt names the run and the
//! attempt in every state lock it takes ([`crate::EngineConfig::run`]), where the state
//! backend fences state writes the same way.
//!
//! # Who executes a run
//!
//! `[runs] executor` in platform.toml: `embedded` (the default) has the command that
//! queued a run execute it itself, with the same worker code restricted to that run, so
//! that one person on one machine needs no service; `workers` leaves runs to `tenantform
//! worker` processes, and the command returns at once (or follows the run with
//! `--wait`). Either way a running worker may take any run: the executor setting only
//! says whether the queuing command also executes it.
//!
//! # Why not a job-queue library
//!
//! `graphile_worker` (with its `driver-tokio-postgres` feature) was weighed against
//! this table. It has what a job queue needs (named queues that run in series, job
//! keys, `SKIP LOCKED` claims, retries with backoff, opt-in recovery of jobs of dead
//! workers) but a run is not a job: a job is deleted when it succeeds and has no status
//! between "queued" and "done", so the run's statuses, human actions (apply after plan,
//! discard, cancel), plan, report and events would need this table anyway, kept in
//! step with a second one. Its recovery returns a dead worker's job to the queue after
//! a sweep threshold of minutes, as a retry that starts the task over; it has no
//! per-run lease renewed by the run's own heartbeat, and no attempt number that fences
//! the old worker's writes, which is what keeps a paused worker from writing after a
//! takeover. Per-tenant serialization through named queues is not a database
//! invariant over active runs, and "blocked by" is not visible. And it would bring its
//! own schema (migrations, SQL functions), a pool crate and a dozen crates for what is
//! here one table, three indexes and a few statements.

pub mod execute;
pub mod queue;
pub mod render;
pub mod status;
pub mod worker;

pub use execute::{ProvisionResult, RunContext};
pub use queue::{
    Claim, EVENTS_CHANNEL, EventKind, Finish, Lease, NewRun, RUNS_CHANNEL, Renewal, Run, RunEvent,
    RunFilter, RunQueue, WorkerRecord,
};
pub use status::{IllegalRunTransition, Operation, RunStatus, check_run_transition};
pub use worker::{
    BlockedBy, RunView, Shutdown, Worker, check_saved_plan, follow, follow_after, settle, view,
};

use uuid::Uuid;

use crate::workflow::WorkflowError;

/// A failure of the runs machinery (a run that fails is a status, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The runs tables cannot be read or written.
    #[error("the runs tables cannot be used: {0}")]
    Database(String),
    /// No run has this id.
    #[error("no run {0}; `tenantform runs list` shows the runs")]
    UnknownRun(String),
    /// The operation conflicts with the run's current state; the message says how.
    #[error("{0}")]
    Conflict(String),
    /// The input is not acceptable; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The run's status does not allow the move asked for.
    #[error(transparent)]
    Transition(#[from] IllegalRunTransition),
    /// Another worker took the run over; this attempt wrote nothing more.
    #[error(
        "run {run} was taken over by another worker (this was attempt {attempt}); this attempt stopped and wrote nothing more"
    )]
    Fenced { run: Uuid, attempt: i32 },
    /// The engine failed while running the operation.
    #[error(transparent)]
    Engine(Box<crate::Error>),
    /// The request workflow failed while running a provisioning.
    #[error(transparent)]
    Workflow(Box<WorkflowError>),
}
