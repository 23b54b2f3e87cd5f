//! The runs table and everything that reads or writes it: enqueue, claim
//! (`FOR UPDATE SKIP LOCKED`), the lease and its fence, events, human actions (cancel,
//! confirm, discard), queue position and "blocked by", and the workers' heartbeats.
//!
//! Two invariants live in the schema rather than in code, so that no process, ours or
//! another, can break them:
//! - `runs_one_active_per_tenant`: a partial unique index over the active statuses; a
//!   second active run of a tenant is a unique violation.
//! - `runs_one_open_provision`: one open `provision` run per tenant request.
//!
//! Every write a worker makes to a run it holds is conditional on
//! `id = $1 AND attempt = $2` ([`Lease`]): once another worker took the run over
//! (attempt + 1), the old attempt's writes change nothing and it learns it was fenced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use super::RunError;
use super::status::{Operation, RunStatus, check_run_transition};
use crate::connect::postgres::{PostgresConfig, db_error, migrate};
use crate::resource::TenantId;
use crate::state::RunRef;
use crate::workflow::registry::SCHEMA;

/// Notified on every new run and status change: `<run id> <tenant> <status>`.
pub const RUNS_CHANNEL: &str = "tenantform_runs";
/// Notified on every run event: `<run id> <event id>`.
pub const EVENTS_CHANNEL: &str = "tenantform_run_events";

/// Migrations of the runs tables, applied in order, each once (track
/// `tenantform.runs_migrations`). Never edit one that shipped: add another.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE SEQUENCE tenantform.run_queue_seq;

CREATE TABLE tenantform.runs (
    id uuid PRIMARY KEY,
    -- Order in the queue: set when the run is queued, and again when its plan is confirmed.
    queue_seq bigint NOT NULL DEFAULT nextval('tenantform.run_queue_seq'),
    tenant text NOT NULL,
    operation text NOT NULL
        CHECK (operation IN ('plan', 'apply', 'destroy', 'drift', 'refresh', 'provision')),
    status text NOT NULL
        CHECK (status IN ('pending', 'planning', 'planned', 'planned_and_finished', 'confirmed',
                          'applying', 'applied', 'rolling_back', 'rolled_back', 'errored',
                          'canceled', 'discarded')),
    requested_by text NOT NULL,
    message text,
    -- The tenant request a provision run carries out.
    request_id text,
    auto_apply boolean NOT NULL DEFAULT false,
    -- The fencing token: +1 on every claim, checked by every write of the worker.
    attempt integer NOT NULL DEFAULT 0,
    lease_owner text,
    lease_expires_at timestamptz,
    cancel_requested_by text,
    -- The saved plan a confirmed run applies (no secrets: sensitive values are redacted).
    plan jsonb,
    -- The plan as JSON, the apply report, the drift report, the provisioning's outcome.
    result jsonb,
    error text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- When the run entered each status: {"pending_at": ..., "planning_at": ...}.
    status_timestamps jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX runs_one_active_per_tenant ON tenantform.runs (tenant)
    WHERE status IN ('planning', 'applying', 'rolling_back');
CREATE UNIQUE INDEX runs_one_open_provision ON tenantform.runs (request_id)
    WHERE operation = 'provision' AND status IN ('pending', 'planning', 'applying', 'rolling_back');
CREATE INDEX runs_waiting ON tenantform.runs (queue_seq) WHERE status IN ('pending', 'confirmed');
CREATE INDEX runs_by_tenant ON tenantform.runs (tenant, queue_seq);
CREATE INDEX runs_by_created ON tenantform.runs (created_at);

-- What happened in a run, in order. `id` is the resume point of a follower (SSE's
-- Last-Event-ID): within one run, ids only grow in the order the events were written,
-- since one writer at a time holds the run.
CREATE TABLE tenantform.run_events (
    id bigserial PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES tenantform.runs (id),
    attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind text NOT NULL
        CHECK (kind IN ('status', 'started', 'finished', 'failed', 'rolling_back', 'rolled_back', 'message')),
    address text,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX run_events_by_run ON tenantform.run_events (run_id, id);

CREATE TABLE tenantform.workers (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    concurrency integer NOT NULL,
    version text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    stopped_at timestamptz
);

CREATE FUNCTION tenantform.runs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantform_runs', NEW.id::text || ' ' || NEW.tenant || ' ' || NEW.status);
    RETURN NULL;
END $$;
CREATE TRIGGER runs_notify AFTER INSERT OR UPDATE OF status ON tenantform.runs
    FOR EACH ROW EXECUTE FUNCTION tenantform.runs_notify();

CREATE FUNCTION tenantform.run_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantform_run_events', NEW.run_id::text || ' ' || NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER run_events_notify AFTER INSERT ON tenantform.run_events
    FOR EACH ROW EXECUTE FUNCTION tenantform.run_events_notify();
"#,
    ),
    (
        2,
        r#"
-- The run sets the tenant's generated passwords anew (`--rotate`): a plan or an apply.
ALTER TABLE tenantform.runs ADD COLUMN rotate boolean NOT NULL DEFAULT false;
"#,
    ),
];

/// A run as the table holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    pub id: Uuid,
    pub tenant: String,
    pub operation: Operation,
    pub status: RunStatus,
    pub requested_by: String,
    pub message: Option<String>,
    /// The tenant request a `provision` run carries out.
    pub request_id: Option<String>,
    pub auto_apply: bool,
    /// The plan sets the tenant's generated passwords anew (`--rotate`).
    pub rotate: bool,
    /// How many times a worker claimed the run: the fencing token.
    pub attempt: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested_by: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the run entered each status (`planning_at`, `applied_at`, ...).
    pub status_timestamps: BTreeMap<String, DateTime<Utc>>,
    /// Whether a plan is stored for `runs apply` (the plan itself is in `result`).
    pub has_saved_plan: bool,
    #[serde(skip)]
    pub(crate) queue_seq: i64,
}

impl Run {
    fn from_row(row: &Row) -> Result<Run, RunError> {
        let invalid = |e: String| RunError::Database(format!("a stored run: {e}"));
        let operation: String = row.get("operation");
        let status: String = row.get("status");
        let timestamps: Value = row.get("status_timestamps");
        let plan: Option<Value> = row.get("plan");
        Ok(Run {
            id: row.get("id"),
            tenant: row.get("tenant"),
            operation: operation.parse().map_err(invalid)?,
            status: status.parse().map_err(invalid)?,
            requested_by: row.get("requested_by"),
            message: row.get("message"),
            request_id: row.get("request_id"),
            auto_apply: row.get("auto_apply"),
            rotate: row.get("rotate"),
            attempt: row.get("attempt"),
            lease_owner: row.get("lease_owner"),
            lease_expires_at: row.get("lease_expires_at"),
            cancel_requested_by: row.get("cancel_requested_by"),
            result: row.get("result"),
            error: row.get("error"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            status_timestamps: serde_json::from_value(timestamps)
                .map_err(|e| invalid(e.to_string()))?,
            has_saved_plan: plan.is_some(),
            queue_seq: row.get("queue_seq"),
        })
    }

    /// The run and attempt, as a state lock records who holds it.
    pub fn run_ref(&self) -> RunRef {
        RunRef {
            id: self.id,
            attempt: self.attempt,
        }
    }

    /// Whether this run applies a plan someone confirmed (rather than planning anew).
    pub fn applies_confirmed_plan(&self) -> bool {
        self.has_saved_plan && self.status_timestamps.contains_key("confirmed_at")
    }

    /// The first 8 characters of the id, as lists show it.
    pub fn short_id(&self) -> String {
        self.id.to_string()[..8].to_owned()
    }
}

/// One thing that happened in a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunEvent {
    /// Increases within a run: the resume point of a follower.
    pub id: i64,
    pub run_id: Uuid,
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub address: Option<String>,
    pub detail: Value,
}

/// What kind of thing happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The run moved to another status (`detail`: from, to, and who or why).
    Status,
    /// A resource step started (`address`, `detail.step`).
    Started,
    /// A resource step finished (`address`, `detail.step`).
    Finished,
    /// A resource step failed (`address`, `detail.error`).
    Failed,
    /// A new tenant's failed provisioning is being undone.
    RollingBack,
    /// A tenant was rolled back completely.
    RolledBack,
    /// Anything else worth telling (a takeover, a stale plan).
    Message,
}

super::status::names!(
    EventKind,
    "event kind",
    [
        Status = "status",
        Started = "started",
        Finished = "finished",
        Failed = "failed",
        RollingBack = "rolling_back",
        RolledBack = "rolled_back",
        Message = "message",
    ]
);

impl RunEvent {
    fn from_row(row: &Row) -> Result<RunEvent, RunError> {
        let kind: String = row.get("kind");
        Ok(RunEvent {
            id: row.get("id"),
            run_id: row.get("run_id"),
            attempt: row.get("attempt"),
            at: row.get("at"),
            kind: kind.parse().map_err(RunError::Database)?,
            address: row.get("address"),
            detail: row.get("detail"),
        })
    }
}

/// A run to queue.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub tenant: TenantId,
    pub operation: Operation,
    pub requested_by: String,
    pub message: Option<String>,
    /// Apply the plan at once instead of stopping at `planned`.
    pub auto_apply: bool,
    /// Set the tenant's generated passwords anew (plan and apply runs only).
    pub rotate: bool,
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub tenant: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: i64,
}

/// A worker process as the table knows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerRecord {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub concurrency: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

fn pg(e: tokio_postgres::Error) -> RunError {
    RunError::Database(db_error(&e).to_string())
}

const ACTIVE_SQL: &str = "('planning', 'applying', 'rolling_back')";
const WAITING_SQL: &str = "('pending', 'confirmed')";

/// A connection to the runs tables.
pub struct RunQueue {
    client: Client,
    pg: PostgresConfig,
}

impl RunQueue {
    /// Connects as the platform admin and brings the runs tables up to date.
    pub async fn open(pg: &PostgresConfig) -> Result<RunQueue, RunError> {
        let mut client = pg
            .connect_as("tenantform runs")
            .await
            .map_err(|e| RunError::Database(e.to_string()))?;
        migrate(&mut client, SCHEMA, "runs_migrations", MIGRATIONS)
            .await
            .map_err(|e| RunError::Database(e.to_string()))?;
        Ok(RunQueue {
            client,
            pg: pg.clone(),
        })
    }

    /// Whether the queue's connection is gone for good (a worker then exits, for its
    /// supervisor to start it again).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The database the queue lives in (for listeners of its notifications).
    pub fn database(&self) -> &PostgresConfig {
        &self.pg
    }

    /// Queues a run; it starts when a worker is free and the tenant's earlier runs
    /// are done.
    pub async fn enqueue(&self, new: &NewRun) -> Result<Run, RunError> {
        if new.operation == Operation::Provision {
            return Err(RunError::Invalid(
                "a provision run is queued by the tenant lifecycle (`tenantform request submit|approve|retry`), not directly".into(),
            ));
        }
        if new.rotate && !matches!(new.operation, Operation::Plan | Operation::Apply) {
            return Err(RunError::Invalid(format!(
                "rotate: a {} run does not rotate credentials; rotate in a plan or apply run",
                new.operation
            )));
        }
        let row = self
            .client
            .query_one(
                &format!(
                    "WITH ins AS ( \
                       INSERT INTO {SCHEMA}.runs (id, tenant, operation, status, requested_by, message, auto_apply, rotate, status_timestamps) \
                       VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, jsonb_build_object('pending_at', clock_timestamp())) \
                       RETURNING *), \
                     ev AS (INSERT INTO {SCHEMA}.run_events (run_id, attempt, kind, detail) \
                       SELECT id, 0, 'status', jsonb_build_object('to', 'pending', 'by', requested_by) FROM ins) \
                     SELECT * FROM ins"
                ),
                &[
                    &Uuid::new_v4(),
                    &new.tenant.as_str(),
                    &new.operation.as_str(),
                    &new.requested_by,
                    &new.message,
                    &new.auto_apply,
                    &new.rotate,
                ],
            )
            .await
            .map_err(pg)?;
        Run::from_row(&row)
    }

    /// Queues the `provision` run of a tenant request, or returns the one already open.
    pub async fn enqueue_provision(&self, request_id: &str, actor: &str) -> Result<Run, RunError> {
        let inserted = self
            .client
            .query_opt(
                &format!(
                    "WITH ins AS ( \
                       INSERT INTO {SCHEMA}.runs (id, tenant, operation, status, requested_by, request_id, auto_apply, message, status_timestamps) \
                       VALUES ($1, $2, 'provision', 'pending', $3, $2, true, 'provisioning of request ' || $2, \
                               jsonb_build_object('pending_at', clock_timestamp())) \
                       ON CONFLICT (request_id) WHERE operation = 'provision' AND status IN ('pending', 'planning', 'applying', 'rolling_back') \
                       DO NOTHING RETURNING *), \
                     ev AS (INSERT INTO {SCHEMA}.run_events (run_id, attempt, kind, detail) \
                       SELECT id, 0, 'status', jsonb_build_object('to', 'pending', 'by', requested_by) FROM ins) \
                     SELECT * FROM ins"
                ),
                &[&Uuid::new_v4(), &request_id, &actor],
            )
            .await
            .map_err(pg)?;
        match inserted {
            Some(row) => Run::from_row(&row),
            None => self
                .open_provision(request_id)
                .await?
                .ok_or_else(|| RunError::Conflict(format!(
                    "the provision run of request {request_id} changed while it was queued; look at `tenantform runs list --tenant {request_id}`"
                ))),
        }
    }

    /// The open (queued or running) `provision` run of a request.
    pub async fn open_provision(&self, request_id: &str) -> Result<Option<Run>, RunError> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT * FROM {SCHEMA}.runs WHERE request_id = $1 AND operation = 'provision' \
                     AND status IN ('pending', 'planning', 'applying', 'rolling_back')"
                ),
                &[&request_id],
            )
            .await
            .map_err(pg)?;
        row.as_ref().map(Run::from_row).transpose()
    }

    /// The latest `provision` run of a request, open or not.
    pub async fn latest_provision(&self, request_id: &str) -> Result<Option<Run>, RunError> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT * FROM {SCHEMA}.runs WHERE request_id = $1 AND operation = 'provision' \
                     ORDER BY queue_seq DESC LIMIT 1"
                ),
                &[&request_id],
            )
            .await
            .map_err(pg)?;
        row.as_ref().map(Run::from_row).transpose()
    }

    /// The run `id`, or `None` if there is none.
    pub async fn get(&self, id: Uuid) -> Result<Option<Run>, RunError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT * FROM {SCHEMA}.runs WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(pg)?;
        row.as_ref().map(Run::from_row).transpose()
    }

    /// The run `id`.
    ///
    /// # Errors
    /// [`RunError::UnknownRun`] if there is none.
    pub async fn require(&self, id: Uuid) -> Result<Run, RunError> {
        self.get(id)
            .await?
            .ok_or_else(|| RunError::UnknownRun(id.to_string()))
    }

    /// The run whose id is `id`, or starts with it (at least 4 characters).
    pub async fn find(&self, id: &str) -> Result<Run, RunError> {
        let id = id.trim().to_ascii_lowercase();
        if let Ok(uuid) = id.parse::<Uuid>() {
            return self.require(uuid).await;
        }
        if id.len() < 4 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(RunError::UnknownRun(id));
        }
        let rows = self
            .client
            .query(
                &format!("SELECT * FROM {SCHEMA}.runs WHERE id::text LIKE $1 || '%' LIMIT 3"),
                &[&id],
            )
            .await
            .map_err(pg)?;
        match rows.len() {
            0 => Err(RunError::UnknownRun(id)),
            1 => Run::from_row(&rows[0]),
            _ => Err(RunError::Invalid(format!(
                "{id} is the start of several run ids; give more of it"
            ))),
        }
    }

    /// The plan a run stored for `runs apply`.
    pub async fn saved_plan(&self, id: Uuid) -> Result<Option<Value>, RunError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT plan FROM {SCHEMA}.runs WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(pg)?;
        Ok(row.and_then(|r| r.get(0)))
    }

    /// The newest runs first.
    pub async fn list(&self, filter: &RunFilter) -> Result<Vec<Run>, RunError> {
        let limit = if filter.limit > 0 { filter.limit } else { 50 };
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT * FROM {SCHEMA}.runs WHERE ($1::text IS NULL OR tenant = $1) \
                     AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC, queue_seq DESC LIMIT $3"
                ),
                &[&filter.tenant, &filter.status.map(|s| s.as_str()), &limit],
            )
            .await
            .map_err(pg)?;
        rows.iter().map(Run::from_row).collect()
    }

    /// A waiting run's place in the queue (1 = next), across tenants.
    pub async fn queue_position(&self, run: &Run) -> Result<Option<i64>, RunError> {
        if !run.status.is_waiting() {
            return Ok(None);
        }
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {SCHEMA}.runs WHERE status IN {WAITING_SQL} AND queue_seq <= $1"
                ),
                &[&run.queue_seq],
            )
            .await
            .map_err(pg)?;
        Ok(Some(row.get(0)))
    }

    /// The run a waiting run waits for: the tenant's active run, or its earlier
    /// waiting one.
    pub async fn blocking_run(&self, run: &Run) -> Result<Option<Run>, RunError> {
        if !run.status.is_waiting() {
            return Ok(None);
        }
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT * FROM {SCHEMA}.runs WHERE tenant = $1 AND id <> $2 \
                     AND (status IN {ACTIVE_SQL} OR (status IN {WAITING_SQL} AND queue_seq < $3)) \
                     ORDER BY (status IN {ACTIVE_SQL}) DESC, queue_seq LIMIT 1"
                ),
                &[&run.tenant, &run.id, &run.queue_seq],
            )
            .await
            .map_err(pg)?;
        row.as_ref().map(Run::from_row).transpose()
    }

    /// The events of a run after `after` (0: from the start), in order.
    pub async fn events(&self, run: Uuid, after: i64) -> Result<Vec<RunEvent>, RunError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT * FROM {SCHEMA}.run_events WHERE run_id = $1 AND id > $2 ORDER BY id"
                ),
                &[&run, &after],
            )
            .await
            .map_err(pg)?;
        rows.iter().map(RunEvent::from_row).collect()
    }

    /// Moves a run by a person's action (`cancel`, `confirm`, `discard`) from `from`
    /// to `to`, with its event; fails if the run is no longer in `from`.
    async fn act(
        &self,
        run: &Run,
        to: RunStatus,
        actor: &str,
        requeue: bool,
    ) -> Result<Run, RunError> {
        check_run_transition(&run.id.to_string(), run.status, to)?;
        let row = self
            .client
            .query_opt(
                &format!(
                    "WITH upd AS ( \
                       UPDATE {SCHEMA}.runs SET status = $3, updated_at = clock_timestamp(), \
                         status_timestamps = status_timestamps || jsonb_build_object($3 || '_at', clock_timestamp()), \
                         queue_seq = CASE WHEN $5 THEN nextval('{SCHEMA}.run_queue_seq') ELSE queue_seq END \
                       WHERE id = $1 AND status = $2 RETURNING *), \
                     ev AS (INSERT INTO {SCHEMA}.run_events (run_id, attempt, kind, detail) \
                       SELECT id, attempt, 'status', jsonb_build_object('from', $2::text, 'to', $3::text, 'by', $4::text) FROM upd) \
                     SELECT * FROM upd"
                ),
                &[&run.id, &run.status.as_str(), &to.as_str(), &actor, &requeue],
            )
            .await
            .map_err(pg)?;
        match row {
            Some(row) => Run::from_row(&row),
            None => {
                let now = self.require(run.id).await?;
                Err(RunError::Conflict(format!(
                    "run {} moved to {} meanwhile; nothing was changed",
                    run.id, now.status
                )))
            }
        }
    }

    /// Cancels a run: a queued one at once, an active one after the steps in flight
    /// (its worker sees the request at its next heartbeat). A planned run is
    /// discarded. A provisioning is the lifecycle's and is not canceled.
    pub async fn cancel(&self, run: &Run, actor: &str) -> Result<Run, RunError> {
        if run.operation == Operation::Provision && !run.status.is_final() {
            return Err(RunError::Conflict(format!(
                "run {} provisions request {}: the lifecycle decides how it ends (active, rolled_back or failed); it cannot be canceled",
                run.id,
                run.request_id.as_deref().unwrap_or(&run.tenant)
            )));
        }
        match run.status {
            s if s.is_waiting() => self.act(run, RunStatus::Canceled, actor, false).await,
            RunStatus::Planned => self.act(run, RunStatus::Discarded, actor, false).await,
            s if s.is_active() => {
                let row = self
                    .client
                    .query_opt(
                        &format!(
                            "WITH upd AS ( \
                               UPDATE {SCHEMA}.runs SET cancel_requested_by = $2, updated_at = clock_timestamp() \
                               WHERE id = $1 AND status IN {ACTIVE_SQL} RETURNING *), \
                             ev AS (INSERT INTO {SCHEMA}.run_events (run_id, attempt, kind, detail) \
                               SELECT id, attempt, 'message', jsonb_build_object('message', 'cancel requested by ' || $2::text) FROM upd) \
                             SELECT * FROM upd"
                        ),
                        &[&run.id, &actor],
                    )
                    .await
                    .map_err(pg)?;
                match row {
                    Some(row) => Run::from_row(&row),
                    None => Err(RunError::Conflict(format!(
                        "run {} finished meanwhile; nothing was canceled",
                        run.id
                    ))),
                }
            }
            s => Err(RunError::Conflict(format!(
                "run {} is already {s}; nothing was canceled",
                run.id
            ))),
        }
    }

    /// Confirms a planned run: it is queued again, to apply exactly its stored plan.
    pub async fn confirm(&self, run: &Run, actor: &str) -> Result<Run, RunError> {
        if run.status == RunStatus::Planned && !run.has_saved_plan {
            return Err(RunError::Conflict(format!(
                "run {} has no stored plan to apply",
                run.id
            )));
        }
        self.act(run, RunStatus::Confirmed, actor, true).await
    }

    /// Discards a planned run: its plan will not be applied.
    pub async fn discard(&self, run: &Run, actor: &str) -> Result<Run, RunError> {
        self.act(run, RunStatus::Discarded, actor, false).await
    }

    /// Claims the next run this worker may take, holding its lease for `lease`:
    ///
    /// - a waiting run (`pending`, or `confirmed` to apply) that is the first waiting
    ///   run of its tenant, while no run of that tenant is active; or
    /// - an active run whose lease expired (its worker died or stalled): taken over
    ///   with attempt + 1, which fences every later write of the old attempt.
    ///
    /// Candidates are locked `FOR UPDATE SKIP LOCKED`, so workers claiming at once
    /// never wait on each other or take the same run; the partial unique index turns
    /// a lost race for a tenant into a unique violation, which is "nothing claimed".
    /// With `only` (an embedded executor), just that run and the runs of its tenant
    /// that must go before it: waiting ones queued ahead, active ones whose executor
    /// died. Without a worker, nobody else would ever execute those.
    pub async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        only: Option<Uuid>,
    ) -> Result<Option<Claim>, RunError> {
        let claimed = self
            .client
            .query_opt(
                &format!(
                    "WITH candidate AS ( \
                       SELECT r.id, r.status AS from_status, r.lease_owner AS previous_owner, \
                         CASE WHEN r.status = 'confirmed' \
                                OR (r.status = 'applying' AND r.plan IS NOT NULL AND r.status_timestamps ? 'confirmed_at') \
                              THEN 'applying' ELSE 'planning' END AS to_status \
                       FROM {SCHEMA}.runs r \
                       WHERE ($3::uuid IS NULL OR r.tenant = (SELECT o.tenant FROM {SCHEMA}.runs o WHERE o.id = $3 \
                                                       AND (r.id = o.id OR r.queue_seq < o.queue_seq OR r.status IN {ACTIVE_SQL}))) AND ( \
                         (r.status IN {WAITING_SQL} \
                          AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.runs a WHERE a.tenant = r.tenant AND a.status IN {ACTIVE_SQL}) \
                          AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.runs e WHERE e.tenant = r.tenant \
                                          AND e.status IN {WAITING_SQL} AND e.queue_seq < r.queue_seq)) \
                         OR (r.status IN {ACTIVE_SQL} AND r.lease_expires_at <= clock_timestamp())) \
                       ORDER BY r.queue_seq LIMIT 1 \
                       FOR UPDATE OF r SKIP LOCKED), \
                     claimed AS ( \
                       UPDATE {SCHEMA}.runs r SET \
                         status = c.to_status, attempt = r.attempt + 1, lease_owner = $1, \
                         lease_expires_at = clock_timestamp() + make_interval(secs => $2), \
                         updated_at = clock_timestamp(), \
                         status_timestamps = CASE WHEN c.to_status = c.from_status THEN r.status_timestamps \
                           ELSE r.status_timestamps || jsonb_build_object(c.to_status || '_at', clock_timestamp()) END \
                       FROM candidate c WHERE r.id = c.id \
                       RETURNING r.*, c.from_status, c.previous_owner), \
                     ev AS (INSERT INTO {SCHEMA}.run_events (run_id, attempt, kind, detail) \
                       SELECT id, attempt, 'status', jsonb_build_object('from', from_status, 'to', status, 'worker', $1::text, \
                         'takeover', from_status IN {ACTIVE_SQL}, 'previous_owner', previous_owner) FROM claimed) \
                     SELECT * FROM claimed"
                ),
                &[&worker, &lease.as_secs_f64(), &only],
            )
            .await;
        let row = match claimed {
            Ok(row) => row,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Ok(None),
            Err(e) => return Err(pg(e)),
        };
        let Some(row) = row else { return Ok(None) };
        let from: String = row.get("from_status");
        let run = Run::from_row(&row)?;
        Ok(Some(Claim {
            takeover_from: from
                .parse::<RunStatus>()
                .ok()
                .filter(|s| s.is_active())
                .map(|_| row.get::<_, Option<String>>("previous_owner"))
                .map(|o| o.unwrap_or_else(|| "an unknown worker".into())),
            run,
        }))
    }

    /// Registers (or re-registers) a worker process.
    pub async fn register_worker(&self, w: &WorkerRecord) -> Result<(), RunError> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {SCHEMA}.workers (id, host, pid, concurrency, version) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = clock_timestamp(), stopped_at = NULL"
                ),
                &[&w.id, &w.host, &w.pid, &w.concurrency, &w.version],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// Records that a worker is alive.
    pub async fn worker_heartbeat(&self, id: &str) -> Result<(), RunError> {
        self.stamp_worker(id, "heartbeat_at").await
    }

    /// Records that a worker stopped.
    pub async fn worker_stopped(&self, id: &str) -> Result<(), RunError> {
        self.stamp_worker(id, "stopped_at").await
    }

    async fn stamp_worker(&self, id: &str, column: &str) -> Result<(), RunError> {
        self.client
            .execute(
                &format!("UPDATE {SCHEMA}.workers SET {column} = clock_timestamp() WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// Workers that said they were alive within `within` and have not stopped.
    pub async fn live_workers(&self, within: Duration) -> Result<Vec<WorkerRecord>, RunError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT id, host, pid, concurrency, version, started_at, heartbeat_at FROM {SCHEMA}.workers \
                     WHERE stopped_at IS NULL AND heartbeat_at > clock_timestamp() - make_interval(secs => $1) \
                     ORDER BY started_at"
                ),
                &[&within.as_secs_f64()],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| WorkerRecord {
                id: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                concurrency: r.get(3),
                version: r.get(4),
                started_at: r.get(5),
                heartbeat_at: r.get(6),
            })
            .collect())
    }
}

/// A run a worker just claimed.
#[derive(Debug)]
pub struct Claim {
    pub run: Run,
    /// The worker whose lease expired, when this claim took the run over.
    pub takeover_from: Option<String>,
}

/// What a lease renewal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Still ours; someone may have asked to cancel.
    Held { cancel_requested: bool },
    /// Another attempt took the run over, or it ended: stop, write nothing more.
    Lost,
}

/// The right to write to one run, for one attempt: every write is fenced by
/// `attempt`, so an attempt that was taken over changes nothing.
pub struct Lease {
    queue: Arc<RunQueue>,
    run: RunRef,
    lease: Duration,
}

impl Lease {
    /// The lease of the current attempt of `run`, renewed for `lease` at a time.
    pub fn new(queue: Arc<RunQueue>, run: &Run, lease: Duration) -> Lease {
        Lease {
            queue,
            run: run.run_ref(),
            lease,
        }
    }

    /// The run and attempt the lease is for.
    pub fn run(&self) -> RunRef {
        self.run
    }

    fn fenced(&self) -> RunError {
        RunError::Fenced {
            run: self.run.id,
            attempt: self.run.attempt,
        }
    }

    /// Renews the lease (the heartbeat). The fence is the attempt, not the clock: a
    /// lease that expired but was not taken over is still ours.
    pub async fn renew(&self) -> Result<Renewal, RunError> {
        let row = self
            .queue
            .client
            .query_opt(
                &format!(
                    "UPDATE {SCHEMA}.runs SET lease_expires_at = clock_timestamp() + make_interval(secs => $3) \
                     WHERE id = $1 AND attempt = $2 AND status IN {ACTIVE_SQL} \
                     RETURNING cancel_requested_by IS NOT NULL"
                ),
                &[&self.run.id, &self.run.attempt, &self.lease.as_secs_f64()],
            )
            .await
            .map_err(pg)?;
        Ok(match row {
            Some(r) => Renewal::Held {
                cancel_requested: r.get(0),
            },
            None => Renewal::Lost,
        })
    }

    /// Appends an event; refused once the run was taken over.
    pub async fn event(
        &self,
        kind: EventKind,
        address: Option<&str>,
        detail: &Value,
    ) -> Result<(), RunError> {
        let n = self
            .queue
            .client
            .execute(
                &format!(
                    "INSERT INTO {SCHEMA}.run_events (run_id, attempt, kind, address, detail) \
                     SELECT id, attempt, $3, $4, $5 FROM {SCHEMA}.runs WHERE id = $1 AND attempt = $2 FOR SHARE"
                ),
                &[
                    &self.run.id,
                    &self.run.attempt,
                    &kind.as_str(),
                    &address,
                    detail,
                ],
            )
            .await
            .map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(self.fenced()) }
    }

    /// Moves the run from `from` to `to` with its event; refused once taken over.
    pub async fn set_status(
        &self,
        from: RunStatus,
        to: RunStatus,
        detail: Value,
    ) -> Result<(), RunError> {
        check_run_transition(&self.run.id.to_string(), from, to)?;
        let n = self
            .queue
            .client
            .execute(
                &format!(
                    "WITH upd AS ( \
                       UPDATE {SCHEMA}.runs SET status = $4, updated_at = clock_timestamp(), \
                         status_timestamps = status_timestamps || jsonb_build_object($4 || '_at', clock_timestamp()) \
                       WHERE id = $1 AND attempt = $2 AND status = $3 RETURNING id, attempt) \
                     INSERT INTO {SCHEMA}.run_events (run_id, attempt, kind, detail) \
                     SELECT id, attempt, 'status', $5 FROM upd"
                ),
                &[
                    &self.run.id,
                    &self.run.attempt,
                    &from.as_str(),
                    &to.as_str(),
                    &with_move(detail, from, to),
                ],
            )
            .await
            .map_err(pg)?;
        if n == 1 { Ok(()) } else { Err(self.fenced()) }
    }

    /// Ends the attempt: the run goes from `from` to `to` with its result, the lease is
    /// released, and (for `planned`) the saved plan is stored. Refused once taken over.
    pub async fn finish(&self, from: RunStatus, end: &Finish) -> Result<Run, RunError> {
        check_run_transition(&self.run.id.to_string(), from, end.status)?;
        let detail = with_move(json!({"error": end.error}), from, end.status);
        let row = self
            .queue
            .client
            .query_opt(
                &format!(
                    "WITH upd AS ( \
                       UPDATE {SCHEMA}.runs SET status = $4, updated_at = clock_timestamp(), \
                         status_timestamps = status_timestamps || jsonb_build_object($4 || '_at', clock_timestamp()), \
                         result = COALESCE($5, result), error = $6, plan = COALESCE($7, plan), \
                         lease_owner = NULL, lease_expires_at = NULL \
                       WHERE id = $1 AND attempt = $2 AND status = $3 RETURNING *), \
                     ev AS (INSERT INTO {SCHEMA}.run_events (run_id, attempt, kind, detail) \
                       SELECT id, attempt, 'status', $8 FROM upd) \
                     SELECT * FROM upd"
                ),
                &[
                    &self.run.id,
                    &self.run.attempt,
                    &from.as_str(),
                    &end.status.as_str(),
                    &end.result,
                    &end.error,
                    &end.saved_plan,
                    &detail,
                ],
            )
            .await
            .map_err(pg)?;
        match row {
            Some(row) => Run::from_row(&row),
            None => Err(self.fenced()),
        }
    }

    /// Gives the run up for another worker to take over at once (a worker stopping
    /// before the run ended): the lease expires now. The status stays active.
    pub async fn release(&self) -> Result<(), RunError> {
        self.queue
            .client
            .execute(
                &format!(
                    "UPDATE {SCHEMA}.runs SET lease_expires_at = clock_timestamp() \
                     WHERE id = $1 AND attempt = $2 AND status IN {ACTIVE_SQL}"
                ),
                &[&self.run.id, &self.run.attempt],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }
}

/// How an attempt ends a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    pub status: RunStatus,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// The plan to store for `runs apply` (a run that ends `planned`).
    pub saved_plan: Option<Value>,
}

impl Finish {
    /// A finish as `errored`, with `error` as the message; no result and no saved plan.
    pub fn errored(error: impl std::fmt::Display) -> Finish {
        Finish {
            status: RunStatus::Errored,
            result: None,
            error: Some(error.to_string()),
            saved_plan: None,
        }
    }
}

fn with_move(mut detail: Value, from: RunStatus, to: RunStatus) -> Value {
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("from".into(), json!(from.as_str()));
        obj.insert("to".into(), json!(to.as_str()));
    }
    detail
}

/// The lifecycle queues an approved request's provisioning here, as a `provision` run.
impl crate::workflow::ProvisionQueue for RunQueue {
    fn enqueue_provision<'a>(
        &'a self,
        id: &'a str,
        actor: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            RunQueue::enqueue_provision(self, id, actor)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }
}
