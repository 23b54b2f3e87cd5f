//! The registry: tenant requests, approvals, configuration, validation results and an
//! append-only audit trail, in the platform's PostgreSQL (schema `tenantform`, created
//! and migrated here; the engine keeps each tenant's tier settings there too).
//!
//! Every status change goes through [`Registry::transition`], which checks it with
//! [`check_transition`] and writes the new status and its audit entry in one
//! transaction, conditional on the status it moves from, so two processes can never
//! both move a request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_postgres::{Client, Row, Transaction};

use super::approval::RequiredApproval;
use super::status::{RequestStatus, check_transition};
use super::{FailedStep, WorkflowError};
use crate::connect::postgres::{PostgresConfig, db_error, migrate};
use crate::spec::{RegisteredSpec, TenantSpec};

/// The schema the registry lives in.
pub const SCHEMA: &str = "tenantform";

/// Migrations, applied in order, each once. Never edit one that shipped: add another.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE tenantform.requests (
    id text PRIMARY KEY,
    name text NOT NULL,
    tier text NOT NULL,
    region text NOT NULL,
    budget_inr bigint NOT NULL,
    data_classification text NOT NULL,
    owner_email text NOT NULL,
    cost_center text NOT NULL,
    protected boolean NOT NULL DEFAULT false,
    requester text NOT NULL,
    status text NOT NULL,
    required_approvals jsonb NOT NULL,
    notes text,
    failure_step text,
    failure_reason text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    provisioning_started_at timestamptz,
    activated_at timestamptz
);
CREATE UNIQUE INDEX requests_name_unique ON tenantform.requests (lower(name));

CREATE TABLE tenantform.approvals (
    request_id text NOT NULL REFERENCES tenantform.requests (id),
    role text NOT NULL,
    decision text NOT NULL CHECK (decision IN ('approved', 'rejected')),
    decided_by text NOT NULL,
    note text,
    decided_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (request_id, role)
);

CREATE TABLE tenantform.audit (
    seq bigserial PRIMARY KEY,
    request_id text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor text NOT NULL,
    action text NOT NULL,
    from_status text,
    to_status text,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_request ON tenantform.audit (request_id, seq);
CREATE FUNCTION tenantform.audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % is not allowed', TG_OP;
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON tenantform.audit
    FOR EACH ROW EXECUTE FUNCTION tenantform.audit_is_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON tenantform.audit
    FOR EACH STATEMENT EXECUTE FUNCTION tenantform.audit_is_append_only();

CREATE TABLE tenantform.validation_checks (
    request_id text NOT NULL,
    run_id uuid NOT NULL,
    position int NOT NULL,
    name text NOT NULL,
    category text NOT NULL,
    passed boolean NOT NULL,
    message text NOT NULL,
    duration_ms bigint NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, position)
);
CREATE INDEX checks_by_request ON tenantform.validation_checks (request_id, checked_at);
"#,
    ),
    (
        2,
        r#"
-- The specs of requested tenants: where every worker and every plan reads them (the
-- TOML a tenant file would hold). A row exists while the tenant is provisioned from its
-- request, as the spec file did before; `request export` writes it to a file.
CREATE TABLE tenantform.tenant_specs (
    tenant text PRIMARY KEY,
    request_id text NOT NULL REFERENCES tenantform.requests (id),
    source text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    exported_at timestamptz,
    exported_by text
);
"#,
    ),
    // A destroyed tenant's name is free again: another request may take it.
    (
        3,
        r#"
DROP INDEX tenantform.requests_name_unique;
CREATE UNIQUE INDEX requests_name_unique ON tenantform.requests (lower(name))
    WHERE status <> 'destroyed';
"#,
    ),
    // The audit trail is a request's event log, followed live (the API's
    // /v1/requests/{id}/events): every entry wakes the followers.
    (
        4,
        r#"
CREATE FUNCTION tenantform.audit_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantform_request_events', NEW.request_id || ' ' || NEW.seq::text);
    RETURN NULL;
END $$;
CREATE TRIGGER audit_notify AFTER INSERT ON tenantform.audit
    FOR EACH ROW EXECUTE FUNCTION tenantform.audit_notify();
"#,
    ),
];

/// Notified on every audit entry: `<request id> <seq>`.
pub const REQUEST_EVENTS_CHANNEL: &str = "tenantform_request_events";

/// A tenant request as the registry holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub name: String,
    pub tier: String,
    pub region: String,
    pub budget_inr: i64,
    pub data_classification: String,
    pub owner_email: String,
    pub cost_center: String,
    pub protected: bool,
    pub requester: String,
    pub status: RequestStatus,
    pub required_approvals: Vec<RequiredApproval>,
    pub notes: Option<String>,
    pub failure_step: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub provisioning_started_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
}

impl Request {
    /// The tenant spec this request asks for.
    pub fn spec(&self) -> Result<TenantSpec, WorkflowError> {
        Ok(TenantSpec {
            id: self.id.parse().map_err(WorkflowError::Invalid)?,
            name: self.name.clone(),
            tier: self.tier.clone(),
            region: self.region.clone(),
            budget_inr: self.budget_inr,
            owner_email: self.owner_email.clone(),
            cost_center: self.cost_center.clone(),
            data_classification: self.data_classification.clone(),
            protected: self.protected,
        })
    }

    /// Whether `spec` asks for the same tenant as this request.
    fn same_tenant(&self, spec: &TenantSpec) -> bool {
        self.spec().is_ok_and(|s| &s == spec)
    }

    fn from_row(row: &Row) -> Result<Request, WorkflowError> {
        let status: String = row.get("status");
        let approvals: Value = row.get("required_approvals");
        Ok(Request {
            id: row.get("id"),
            name: row.get("name"),
            tier: row.get("tier"),
            region: row.get("region"),
            budget_inr: row.get("budget_inr"),
            data_classification: row.get("data_classification"),
            owner_email: row.get("owner_email"),
            cost_center: row.get("cost_center"),
            protected: row.get("protected"),
            requester: row.get("requester"),
            status: status.parse().map_err(WorkflowError::Invalid)?,
            required_approvals: serde_json::from_value(approvals)
                .map_err(|e| WorkflowError::Invalid(format!("stored approvals: {e}")))?,
            notes: row.get("notes"),
            failure_step: row.get("failure_step"),
            failure_reason: row.get("failure_reason"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            provisioning_started_at: row.get("provisioning_started_at"),
            activated_at: row.get("activated_at"),
        })
    }
}

/// One approver's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub role: String,
    pub decision: String,
    pub decided_by: String,
    pub note: Option<String>,
    pub decided_at: DateTime<Utc>,
}

/// One line of the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub detail: Value,
}

/// The result of one validation check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub name: String,
    pub category: String,
    pub passed: bool,
    pub message: String,
    pub duration_ms: i64,
}

impl From<&super::checks::CheckResult> for CheckRecord {
    fn from(r: &super::checks::CheckResult) -> Self {
        CheckRecord {
            name: r.name.clone(),
            category: r.category.as_str().into(),
            passed: r.passed,
            message: r.message.clone(),
            duration_ms: r.duration_ms as i64,
        }
    }
}

/// A failed step and why it failed, recorded with a request's transition.
#[derive(Clone, Debug)]
pub struct Failure {
    pub step: FailedStep,
    pub reason: String,
}

/// A connection to the registry.
pub struct Registry {
    client: Client,
}

fn pg(e: tokio_postgres::Error) -> WorkflowError {
    WorkflowError::Registry(db_error(&e).to_string())
}

impl Registry {
    /// Connects as the platform admin and brings the registry schema up to date.
    pub async fn open(config: &PostgresConfig) -> Result<Registry, WorkflowError> {
        let mut registry = Registry::connect(config).await?;
        registry.migrate().await?;
        Ok(registry)
    }

    /// Like [`Registry::open`], but `None` when the database has no registry yet: for
    /// callers that only update requests that exist (a destroy), so that they never
    /// create the registry's tables as a side effect.
    pub async fn open_existing(config: &PostgresConfig) -> Result<Option<Registry>, WorkflowError> {
        let mut registry = Registry::connect(config).await?;
        let exists: bool = registry
            .client
            .query_one(
                &format!("SELECT to_regclass('{SCHEMA}.requests') IS NOT NULL"),
                &[],
            )
            .await
            .map_err(pg)?
            .get(0);
        if !exists {
            return Ok(None);
        }
        registry.migrate().await?;
        Ok(Some(registry))
    }

    async fn connect(config: &PostgresConfig) -> Result<Registry, WorkflowError> {
        let client = config
            .connect(None)
            .await
            .map_err(|e| WorkflowError::Registry(e.to_string()))?;
        Ok(Registry { client })
    }

    /// A transaction that holds the advisory lock named `name` until it ends: one such
    /// transaction at a time across every process on the database.
    async fn exclusive_transaction(
        &mut self,
        name: &str,
    ) -> Result<Transaction<'_>, WorkflowError> {
        let tx = self.client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&name])
            .await
            .map_err(pg)?;
        Ok(tx)
    }

    async fn migrate(&mut self) -> Result<(), WorkflowError> {
        migrate(&mut self.client, SCHEMA, "registry_migrations", MIGRATIONS)
            .await
            .map_err(|e| WorkflowError::Registry(e.to_string()))
    }

    /// Records a new request, or returns the existing one for the same tenant (same id
    /// and the same values): submitting twice never makes two requests. Returns the
    /// request and whether it is new. A request for the id of a destroyed tenant is
    /// new: it takes the destroyed request's record (its values, status, approvals and
    /// times start over; the audit trail keeps the whole history).
    pub async fn submit(
        &mut self,
        spec: &TenantSpec,
        requester: &str,
        notes: Option<&str>,
        approvals: &[RequiredApproval],
    ) -> Result<(Request, bool), WorkflowError> {
        let tx = self.exclusive_transaction("tenantform.submit").await?;
        let previous = get_in(&tx, spec.id.as_str()).await?;
        if let Some(existing) = &previous
            && existing.status != RequestStatus::Destroyed
        {
            if existing.same_tenant(spec) {
                return Ok((existing.clone(), false));
            }
            return Err(WorkflowError::Conflict(format!(
                "a request for tenant {} already exists ({}, status {}) with other values; \
                 change it through the spec once it is active, or choose another id",
                spec.id, existing.name, existing.status
            )));
        }
        if let Some(row) = tx
            .query_opt(
                &format!(
                    "SELECT id FROM {SCHEMA}.requests \
                     WHERE lower(name) = lower($1) AND id <> $2 AND status <> 'destroyed'"
                ),
                &[&spec.name, &spec.id.as_str()],
            )
            .await
            .map_err(pg)?
        {
            let other: String = row.get(0);
            return Err(WorkflowError::Conflict(format!(
                "the name {:?} is already used by the request for tenant {other}; tenant names are unique",
                spec.name
            )));
        }
        let approvals_json = serde_json::to_value(approvals).expect("approvals serialize");
        let from = previous.map(|p| p.status);
        if let Some(from) = from {
            check_transition(spec.id.as_str(), from, RequestStatus::PendingApproval)?;
            // The destroyed request's decisions are in the audit trail; the new request
            // needs its own.
            tx.execute(
                &format!("DELETE FROM {SCHEMA}.approvals WHERE request_id = $1"),
                &[&spec.id.as_str()],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                &format!("DELETE FROM {SCHEMA}.requests WHERE id = $1"),
                &[&spec.id.as_str()],
            )
            .await
            .map_err(pg)?;
        }
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.requests (id, name, tier, region, budget_inr, data_classification, \
                 owner_email, cost_center, protected, requester, status, required_approvals, notes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ),
            &[
                &spec.id.as_str(),
                &spec.name,
                &spec.tier,
                &spec.region,
                &spec.budget_inr,
                &spec.data_classification,
                &spec.owner_email,
                &spec.cost_center,
                &spec.protected,
                &requester,
                &RequestStatus::PendingApproval.as_str(),
                &approvals_json,
                &notes,
            ],
        )
        .await
        .map_err(pg)?;
        audit(
            &tx,
            spec.id.as_str(),
            requester,
            "submitted",
            from,
            Some(RequestStatus::PendingApproval),
            json!({
                "tier": spec.tier, "region": spec.region, "budget_inr": spec.budget_inr,
                "data_classification": spec.data_classification,
                "required_approvals": approvals.iter().map(|a| &a.role).collect::<Vec<_>>(),
            }),
        )
        .await?;
        let request = get_in(&tx, spec.id.as_str()).await?.expect("just inserted");
        tx.commit().await.map_err(pg)?;
        Ok((request, true))
    }

    /// The request `id`, or `None` if there is none.
    pub async fn get(&self, id: &str) -> Result<Option<Request>, WorkflowError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT * FROM {SCHEMA}.requests WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(pg)?;
        row.as_ref().map(Request::from_row).transpose()
    }

    /// The request `id`.
    ///
    /// # Errors
    /// [`WorkflowError::UnknownRequest`] if there is none.
    pub async fn require(&self, id: &str) -> Result<Request, WorkflowError> {
        self.get(id)
            .await?
            .ok_or_else(|| WorkflowError::UnknownRequest(id.to_owned()))
    }

    /// Every request, oldest first.
    pub async fn list(&self) -> Result<Vec<Request>, WorkflowError> {
        let rows = self
            .client
            .query(
                &format!("SELECT * FROM {SCHEMA}.requests ORDER BY created_at, id"),
                &[],
            )
            .await
            .map_err(pg)?;
        rows.iter().map(Request::from_row).collect()
    }

    /// Records one approver's decision. The role must be one the request needs and
    /// must not have decided yet; the request must be waiting for approval.
    pub async fn decide(
        &mut self,
        id: &str,
        role: &str,
        approve: bool,
        actor: &str,
        note: Option<&str>,
    ) -> Result<Request, WorkflowError> {
        let tx = self.client.transaction().await.map_err(pg)?;
        let request = get_for_update(&tx, id).await?;
        if request.status != RequestStatus::PendingApproval {
            return Err(WorkflowError::Conflict(format!(
                "request {id} is {}, not waiting for approval; no decision was recorded",
                request.status
            )));
        }
        if !request.required_approvals.iter().any(|a| a.role == role) {
            let needed: Vec<&str> = request
                .required_approvals
                .iter()
                .map(|a| a.role.as_str())
                .collect();
            return Err(WorkflowError::Invalid(format!(
                "request {id} does not need the approval of {role:?}; it needs: {}",
                if needed.is_empty() {
                    "nobody".to_owned()
                } else {
                    needed.join(", ")
                }
            )));
        }
        let decision = if approve { "approved" } else { "rejected" };
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO {SCHEMA}.approvals (request_id, role, decision, decided_by, note) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                ),
                &[&id, &role, &decision, &actor, &note],
            )
            .await
            .map_err(pg)?;
        if inserted == 0 {
            return Err(WorkflowError::Conflict(format!(
                "{role} has already decided on request {id}; a decision is final"
            )));
        }
        audit(
            &tx,
            id,
            actor,
            if approve { "approval" } else { "rejection" },
            None,
            None,
            json!({"role": role, "note": note}),
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        self.require(id).await
    }

    /// The approvers' decisions on request `id`, oldest first.
    pub async fn decisions(&self, id: &str) -> Result<Vec<Decision>, WorkflowError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT role, decision, decided_by, note, decided_at FROM {SCHEMA}.approvals \
                     WHERE request_id = $1 ORDER BY decided_at, role"
                ),
                &[&id],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| Decision {
                role: r.get(0),
                decision: r.get(1),
                decided_by: r.get(2),
                note: r.get(3),
                decided_at: r.get(4),
            })
            .collect())
    }

    /// Moves a request from `from` to `to` (checked by [`check_transition`]) and
    /// writes the audit entry, atomically. Fails if the request is no longer in `from`.
    pub async fn transition(
        &mut self,
        id: &str,
        from: RequestStatus,
        to: RequestStatus,
        actor: &str,
        failure: Option<&Failure>,
        detail: Value,
    ) -> Result<Request, WorkflowError> {
        check_transition(id, from, to)?;
        let tx = self.client.transaction().await.map_err(pg)?;
        let current = get_for_update(&tx, id).await?;
        if current.status != from {
            // Someone else moved it first; say what is legal from where it is now.
            check_transition(id, current.status, to)?;
            return Err(WorkflowError::Conflict(format!(
                "request {id} moved to {} while this run expected {from}; nothing was changed",
                current.status
            )));
        }
        let (step, reason) = match failure {
            Some(f) => (Some(f.step.to_string()), Some(f.reason.as_str())),
            None => (None, None),
        };
        let clears_failure = matches!(to, RequestStatus::Provisioning | RequestStatus::Active);
        tx.execute(
            &format!(
                "UPDATE {SCHEMA}.requests SET status = $2, updated_at = clock_timestamp(), \
                 failure_step = CASE WHEN $3::text IS NOT NULL THEN $3 WHEN $5 THEN NULL ELSE failure_step END, \
                 failure_reason = CASE WHEN $4::text IS NOT NULL THEN $4 WHEN $5 THEN NULL ELSE failure_reason END, \
                 provisioning_started_at = CASE WHEN $2 = 'provisioning' THEN clock_timestamp() ELSE provisioning_started_at END, \
                 activated_at = CASE WHEN $2 = 'active' AND activated_at IS NULL THEN clock_timestamp() ELSE activated_at END \
                 WHERE id = $1"
            ),
            &[&id, &to.as_str(), &step, &reason, &clears_failure],
        )
        .await
        .map_err(pg)?;
        let mut detail = detail;
        if let (Some(f), Some(obj)) = (failure, detail.as_object_mut()) {
            obj.insert("failed_step".into(), json!(f.step.to_string()));
            obj.insert("error".into(), json!(f.reason));
        }
        audit(&tx, id, actor, "status", Some(from), Some(to), detail).await?;
        tx.commit().await.map_err(pg)?;
        self.require(id).await
    }

    /// Adds an audit entry that is not a status change (a notification sent, a check run).
    ///
    /// The request's row is locked for the insert, as every other writer of its trail
    /// locks it: a follower reads the trail by `seq`, and a `seq` drawn before
    /// another's but committed after it would be skipped by a follower that already
    /// read past it. Locked, a request's entries are numbered and committed in one order.
    pub async fn note(
        &self,
        id: &str,
        actor: &str,
        action: &str,
        detail: Value,
    ) -> Result<(), WorkflowError> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {SCHEMA}.audit (request_id, actor, action, detail) \
                     SELECT id, $2, $3, $4 FROM {SCHEMA}.requests WHERE id = $1 FOR UPDATE"
                ),
                &[&id, &actor, &action, &detail],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// The audit trail of request `id`, from the start, in order.
    pub async fn audit_trail(&self, id: &str) -> Result<Vec<AuditEntry>, WorkflowError> {
        self.audit_after(id, 0).await
    }

    /// The audit entries of request `id` after `seq` `after` (0: from the start), in order.
    pub async fn audit_after(
        &self,
        id: &str,
        after: i64,
    ) -> Result<Vec<AuditEntry>, WorkflowError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT seq, at, actor, action, from_status, to_status, detail FROM {SCHEMA}.audit \
                     WHERE request_id = $1 AND seq > $2 ORDER BY seq"
                ),
                &[&id, &after],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                from_status: r.get(4),
                to_status: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }

    /// Stores one run of the validation suite.
    pub async fn record_checks(
        &mut self,
        id: &str,
        run_id: uuid::Uuid,
        checks: &[CheckRecord],
    ) -> Result<(), WorkflowError> {
        let tx = self.client.transaction().await.map_err(pg)?;
        for (i, c) in checks.iter().enumerate() {
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA}.validation_checks (request_id, run_id, position, name, category, passed, message, duration_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
                &[&id, &run_id, &(i as i32), &c.name, &c.category, &c.passed, &c.message, &c.duration_ms],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    /// The checks of the latest validation run of a request.
    pub async fn latest_checks(&self, id: &str) -> Result<Vec<CheckRecord>, WorkflowError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT name, category, passed, message, duration_ms FROM {SCHEMA}.validation_checks \
                     WHERE run_id = (SELECT run_id FROM {SCHEMA}.validation_checks WHERE request_id = $1 \
                                     ORDER BY checked_at DESC LIMIT 1) \
                     ORDER BY position"
                ),
                &[&id],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| CheckRecord {
                name: r.get(0),
                category: r.get(1),
                passed: r.get(2),
                message: r.get(3),
                duration_ms: r.get(4),
            })
            .collect())
    }

    /// Makes `source` the spec of the request's tenant, where every worker and plan
    /// reads it.
    pub async fn put_tenant_spec(
        &self,
        request_id: &str,
        source: &str,
    ) -> Result<(), WorkflowError> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {SCHEMA}.tenant_specs (tenant, request_id, source) VALUES ($1, $1, $2) \
                     ON CONFLICT (tenant) DO UPDATE SET source = EXCLUDED.source, written_at = clock_timestamp()"
                ),
                &[&request_id, &source],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// Takes the request's tenant out of the desired specs (after a rollback).
    pub async fn remove_tenant_spec(&self, request_id: &str) -> Result<(), WorkflowError> {
        self.client
            .execute(
                &format!("DELETE FROM {SCHEMA}.tenant_specs WHERE tenant = $1"),
                &[&request_id],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    /// The registry's spec of a requested tenant, if it has one.
    pub async fn tenant_spec(
        &self,
        request_id: &str,
    ) -> Result<Option<RegisteredSpec>, WorkflowError> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT tenant, source, exported_at IS NOT NULL FROM {SCHEMA}.tenant_specs WHERE tenant = $1"
                ),
                &[&request_id],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| RegisteredSpec {
            tenant: r.get(0),
            source: r.get(1),
            exported: r.get(2),
        }))
    }

    /// Records that the tenant's spec now lives in a file, with its audit entry.
    pub async fn mark_exported(
        &mut self,
        request_id: &str,
        actor: &str,
        path: &str,
    ) -> Result<(), WorkflowError> {
        let tx = self.client.transaction().await.map_err(pg)?;
        tx.execute(
            &format!(
                "UPDATE {SCHEMA}.tenant_specs SET exported_at = clock_timestamp(), exported_by = $2 WHERE tenant = $1"
            ),
            &[&request_id, &actor],
        )
        .await
        .map_err(pg)?;
        audit(
            &tx,
            request_id,
            actor,
            "exported",
            None,
            None,
            json!({"file": path}),
        )
        .await?;
        tx.commit().await.map_err(pg)
    }

    /// The raw client, for metrics queries.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

async fn get_in(tx: &Transaction<'_>, id: &str) -> Result<Option<Request>, WorkflowError> {
    let row = tx
        .query_opt(
            &format!("SELECT * FROM {SCHEMA}.requests WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg)?;
    row.as_ref().map(Request::from_row).transpose()
}

async fn get_for_update(tx: &Transaction<'_>, id: &str) -> Result<Request, WorkflowError> {
    let row = tx
        .query_opt(
            &format!("SELECT * FROM {SCHEMA}.requests WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .map_err(pg)?
        .ok_or_else(|| WorkflowError::UnknownRequest(id.to_owned()))?;
    Request::from_row(&row)
}

async fn audit(
    tx: &Transaction<'_>,
    id: &str,
    actor: &str,
    action: &str,
    from: Option<RequestStatus>,
    to: Option<RequestStatus>,
    detail: Value,
) -> Result<(), WorkflowError> {
    tx.execute(
        &format!(
            "INSERT INTO {SCHEMA}.audit (request_id, actor, action, from_status, to_status, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        ),
        &[&id, &actor, &action, &from.map(|s| s.as_str()), &to.map(|s| s.as_str()), &detail],
    )
    .await
    .map_err(pg)?;
    Ok(())
}
