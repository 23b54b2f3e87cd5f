//! The `/v1` routes: tenants, runs and requests, each a thin call of the library
//! function the CLI's command calls (`RunQueue::enqueue|confirm|discard|cancel`,
//! `runs::view`, `Workflow::submit_source|decide|view|list`, `Engine::tenants_view`), with
//! the caller's token deciding what is allowed ([`Scope`], roles) and the caller's
//! subject recorded as who did it.
//!
//! With `[runs] executor = "embedded"`, the server executes the runs it queues itself
//! (in the background, as `runs start` does in the foreground); with `workers`, a
//! `tenantform worker` takes them.

use std::path::Path as FilePath;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::{Caller, Scope};
use super::error::ApiError;
use super::idempotency::{Claimed, IdempotencyStore, check_key, request_hash};
use super::openapi::ErrorBody;
use crate::TenantId;
use crate::runs::{
    NewRun, Operation, Run, RunQueue, RunStatus, Shutdown, check_saved_plan, settle, view,
};
use crate::spec::RunExecutor;
use crate::workflow::Workflow;
use crate::workflow::registry::Request;

pub(super) type Answer = Result<(StatusCode, Value), ApiError>;

/// The v1 API's routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/tenants", get(list_tenants))
        .route("/tenants/{id}", get(get_tenant))
        .route("/tenants/{id}/runs", post(start_run))
        .route("/runs/{id}", get(get_run))
        .route("/runs/{id}/plan", get(get_plan))
        .route("/runs/{id}/events", get(super::events::run_events))
        .route("/runs/{id}/actions/{action}", post(act_on_run))
        .route("/requests", get(list_requests).post(submit_request))
        .route("/requests/{id}", get(get_request))
        .route("/requests/{id}/approvals", post(decide_request))
        .route("/requests/{id}/events", get(super::events::request_events))
}

fn respond(answer: Answer) -> Response {
    match answer {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Answers a POST once per `Idempotency-Key` (when the client sends one): a repeat
/// gets the first answer, with `Idempotent-Replayed: true`.
async fn idempotent(
    state: &ApiState,
    caller: &Caller,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
    answer: impl Future<Output = Answer>,
) -> Response {
    let Some(key) = headers.get("idempotency-key") else {
        return respond(answer.await);
    };
    let claimed = async {
        let key = key
            .to_str()
            .map_err(|_| ApiError::bad_request("the Idempotency-Key header is not text"))?;
        check_key(key)?;
        let store = IdempotencyStore::open(&state.pg).await?;
        let hash = request_hash("POST", uri.path(), body);
        let claimed = store.claim(&caller.subject, key, &hash).await?;
        Ok::<_, ApiError>((store, key.to_owned(), claimed))
    };
    let (store, key, claimed) = match claimed.await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match claimed {
        Claimed::Answered(status, body) => {
            let mut response = (status, Json(body)).into_response();
            response.headers_mut().insert(
                "idempotent-replayed",
                "true".parse().expect("a header value"),
            );
            response
        }
        Claimed::First => {
            let (status, body) = match answer.await {
                Ok(a) => a,
                Err(e) => (e.status, e.body()),
            };
            // A refusal of this token is not the request's answer: a retry with
            // another token of the same caller may be allowed, so the key is freed.
            let refused = status == StatusCode::FORBIDDEN;
            if let Err(e) = store
                .answer(&caller.subject, &key, status, !refused, &body)
                .await
            {
                tracing::warn!(error = %e.message, "cannot keep the answer of an idempotent request");
            }
            (status, Json(body)).into_response()
        }
    }
}

/// The JSON body of a POST, or a 400 saying what is wrong with it.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the request body is not the JSON expected: {e}"))
    })
}

/// A request is named by its tenant's id: a path that is not one names no request, and
/// is never sent to the database (which refuses a NUL byte with an error of its own).
pub(super) fn request_id(id: &str) -> Result<(), ApiError> {
    match TenantId::problem(id) {
        None => Ok(()),
        Some(_) => Err(ApiError::not_found(format!(
            "no request {id:?}: not a tenant id"
        ))),
    }
}

fn tenant_id(id: &str) -> Result<TenantId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no tenant {id:?}: not a tenant id")))
}

// ---- tenants ----------------------------------------------------------------------

/// One tenant: its spec (file or registry), its request, its state and its outputs
/// (sensitive values redacted).
pub(super) async fn tenant_json(
    state: &ApiState,
    ids: Option<&TenantId>,
) -> Result<Vec<Value>, ApiError> {
    let engine = state.engine();
    let specs = engine.specs().await?;
    let only: Vec<TenantId> = ids.into_iter().cloned().collect();
    let store = engine.state_store().await?;
    let mut all: Vec<TenantId> = engine.select_tenants(&specs, &only).await?;
    all.dedup();
    let requests = all_requests(&engine).await?;
    let mut out = Vec::with_capacity(all.len());
    for id in all {
        let request = requests.iter().find(|r| r.id == id.as_str());
        let stored = store.load(&id).await.map_err(crate::Error::from)?;
        let view = match &stored {
            Some(_) => engine
                .tenants_view(std::slice::from_ref(&id), false)
                .await?
                .tenants
                .pop(),
            None => None,
        };
        let status = match (request, &view) {
            (Some(r), _) => r.status.to_string(),
            (None, Some(_)) => "applied".to_owned(),
            (None, None) => "not_applied".to_owned(),
        };
        out.push(json!({
            "id": id,
            "spec": specs.tenants.get(&id),
            "status": status,
            "request": request.map(|r| json!({"id": r.id, "status": r.status, "requester": r.requester})),
            "state": view.as_ref().map(|v| json!({
                "serial": v.serial, "lineage": v.lineage, "protected": v.protected,
                "resources": v.resources,
            })),
            "outputs": view.as_ref().map(|v| json!(v.outputs)).unwrap_or(json!({})),
        }));
    }
    Ok(out)
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, description = "Every tenant: spec, status, request, state, outputs (secrets redacted)", body = Object), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody)))]
pub(super) async fn list_tenants(State(state): State<ApiState>, caller: Caller) -> Response {
    respond(
        async {
            caller.require(Scope::TenantsRead)?;
            let tenants = tenant_json(&state, None).await?;
            Ok((StatusCode::OK, json!({"tenants": tenants})))
        }
        .await,
    )
}

#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant", body = Object), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 404, description = "No such tenant", body = ErrorBody)))]
pub(super) async fn get_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            caller.require(Scope::TenantsRead)?;
            let id = tenant_id(&id)?;
            let mut tenants = tenant_json(&state, Some(&id)).await?;
            let tenant = tenants
                .pop()
                .ok_or_else(|| ApiError::not_found(format!("no tenant {id}")))?;
            Ok((StatusCode::OK, tenant))
        }
        .await,
    )
}

// ---- runs -------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StartRun {
    operation: String,
    #[serde(default)]
    auto_apply: bool,
    /// Set the tenant's generated passwords anew (plan and apply runs), as
    /// `tenantform apply --rotate` does.
    #[serde(default)]
    rotate: bool,
    #[serde(default)]
    message: Option<String>,
}

/// The scope a run of `operation` needs: changing infrastructure needs `runs:apply`.
fn run_scope(operation: Operation, auto_apply: bool) -> Scope {
    match operation {
        Operation::Apply | Operation::Destroy | Operation::Provision => Scope::RunsApply,
        _ if auto_apply => Scope::RunsApply,
        _ => Scope::RunsPlan,
    }
}

/// What the caller may do with `run` now: what the run admits, and their token allows.
fn allowed_actions(run: &Run, caller: &Caller) -> Vec<&'static str> {
    let mut actions = Vec::new();
    if run.status == RunStatus::Planned && run.has_saved_plan && caller.has_scope(Scope::RunsApply)
    {
        actions.push("apply");
    }
    let changes = caller.has_scope(Scope::RunsPlan) || caller.has_scope(Scope::RunsApply);
    if run.status == RunStatus::Planned && changes {
        actions.push("discard");
    }
    let cancelable = run.status.is_waiting() || run.status.is_active();
    if cancelable && changes && run.operation != Operation::Provision {
        actions.push("cancel");
    }
    actions
}

/// A run as the API shows it: `runs show --json` plus the actions allowed.
async fn run_json(
    state: &ApiState,
    queue: &RunQueue,
    run: Run,
    caller: &Caller,
) -> Result<Value, ApiError> {
    let actions = allowed_actions(&run, caller);
    let store = state.engine().state_store().await?.clone();
    let mut v = serde_json::to_value(view(queue, &store, run).await?)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    v["allowed_actions"] = json!(actions);
    Ok(v)
}

#[utoipa::path(post, path = "/v1/tenants/{id}/runs", tag = "runs", params(("id" = String, Path, description = "Tenant id"), ("Idempotency-Key" = Option<String>, Header, description = "Answers a retry with the first answer")),
    request_body(content = StartRun, content_type = "application/json"),
    responses((status = 202, description = "The run, queued", body = Object), (status = 400, description = "Unreadable body or header", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 404, description = "No such tenant", body = ErrorBody), (status = 409, description = "A conflict", body = ErrorBody), (status = 422, description = "An invalid field", body = ErrorBody)))]
pub(super) async fn start_run(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let answer = async {
        let req: StartRun = parse(&body)?;
        let operation: Operation = req
            .operation
            .parse()
            .map_err(|e: String| ApiError::unprocessable(format!("field operation: {e}")))?;
        caller.require(run_scope(operation, req.auto_apply))?;
        let tenant = tenant_id(&id)?;
        // Refuse a tenant that has neither a spec nor state now, as `runs start` does.
        let engine = state.engine();
        engine
            .select_tenants(&engine.specs().await?, std::slice::from_ref(&tenant))
            .await?;
        let queue = RunQueue::open(&state.pg).await?;
        let run = queue
            .enqueue(&NewRun {
                tenant,
                operation,
                requested_by: caller.subject.clone(),
                message: req.message,
                auto_apply: req.auto_apply,
                rotate: req.rotate,
            })
            .await?;
        tracing::info!(run = %run.id, tenant = %run.tenant, operation = %operation, by = %caller.subject, "run queued through the API");
        state.execute_in_background(run.id);
        Ok((
            StatusCode::ACCEPTED,
            run_json(&state, &queue, run, &caller).await?,
        ))
    };
    idempotent(&state, &caller, &headers, &uri, &body, answer).await
}

pub(super) fn read_runs(caller: &Caller) -> Result<(), ApiError> {
    caller.require_any(&[Scope::TenantsRead, Scope::RunsPlan, Scope::RunsApply])
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = String, Path, description = "Run id, or a unique prefix of it")),
    responses((status = 200, description = "The run: status, timestamps, queue position, blocked by, allowed actions", body = Object), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 404, description = "No such run", body = ErrorBody), (status = 422, description = "A run id prefix that several runs start with: give more of it", body = ErrorBody)))]
pub(super) async fn get_run(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            read_runs(&caller)?;
            let queue = RunQueue::open(&state.pg).await?;
            let run = queue.find(&id).await?;
            Ok((
                StatusCode::OK,
                run_json(&state, &queue, run, &caller).await?,
            ))
        }
        .await,
    )
}

#[utoipa::path(get, path = "/v1/runs/{id}/plan", tag = "runs", params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run's plan, as `plan --json`", body = Object), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 404, description = "No such run, or no plan yet", body = ErrorBody), (status = 422, description = "A run id prefix that several runs start with: give more of it", body = ErrorBody)))]
pub(super) async fn get_plan(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            read_runs(&caller)?;
            let queue = RunQueue::open(&state.pg).await?;
            let run = queue.find(&id).await?;
            let plan = run
                .result
                .as_ref()
                .and_then(|r| r.get("plan"))
                .cloned()
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "run {} has no plan (it is {}); a plan appears once the run is planned",
                        run.id, run.status
                    ))
                })?;
            Ok((StatusCode::OK, plan))
        }
        .await,
    )
}

#[utoipa::path(post, path = "/v1/runs/{id}/actions/{action}", tag = "runs", params(("id" = String, Path, description = "Run id"), ("action" = String, Path, description = "apply, discard or cancel"), ("Idempotency-Key" = Option<String>, Header, description = "Answers a retry with the first answer")),
    responses((status = 200, description = "The run, discarded or canceled", body = Object), (status = 202, description = "The run, confirmed for apply", body = Object), (status = 400, description = "Unreadable header", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 404, description = "No such run or action", body = ErrorBody), (status = 409, description = "The run cannot take the action now, or its plan is stale", body = ErrorBody), (status = 422, description = "A run id prefix that several runs start with: give more of it", body = ErrorBody)))]
pub(super) async fn act_on_run(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let answer = async {
        let queue = RunQueue::open(&state.pg).await?;
        let (status, run) = match action.as_str() {
            "apply" => {
                caller.require(Scope::RunsApply)?;
                let run = queue.find(&id).await?;
                if run.status != RunStatus::Planned {
                    return Err(ApiError::conflict(format!(
                        "run {} is {}; only a planned run can be applied",
                        run.id, run.status
                    )));
                }
                let store = state.engine().state_store().await?.clone();
                check_saved_plan(&queue, &store, &run).await?;
                let run = queue.confirm(&run, &caller.subject).await?;
                state.execute_in_background(run.id);
                (StatusCode::ACCEPTED, run)
            }
            "discard" | "cancel" => {
                caller.require_any(&[Scope::RunsPlan, Scope::RunsApply])?;
                let run = queue.find(&id).await?;
                let run = if action == "discard" {
                    queue.discard(&run, &caller.subject).await?
                } else {
                    queue.cancel(&run, &caller.subject).await?
                };
                (StatusCode::OK, run)
            }
            other => {
                return Err(ApiError::not_found(format!(
                    "no action {other:?}; a run's actions are apply, discard and cancel"
                )));
            }
        };
        tracing::info!(run = %run.id, action = %action, by = %caller.subject, "run action through the API");
        Ok((status, run_json(&state, &queue, run, &caller).await?))
    };
    idempotent(&state, &caller, &headers, &uri, &body, answer).await
}

// ---- requests ---------------------------------------------------------------------

/// Every request, without creating the registry when nothing was ever requested.
async fn all_requests(engine: &crate::Engine) -> Result<Vec<Request>, ApiError> {
    Ok(match Workflow::open_existing(engine).await? {
        Some(wf) => wf.list().await?,
        None => Vec::new(),
    })
}

/// Whether the caller may see `request`: approvers and the platform team see all, a
/// requester their own.
pub(super) fn may_see(caller: &Caller, request: &Request) -> bool {
    caller.sees_all_requests() || request.requester == caller.subject
}

pub(super) fn read_requests(caller: &Caller) -> Result<(), ApiError> {
    caller.require_any(&[
        Scope::RequestsSubmit,
        Scope::ApprovalsDecide,
        Scope::TenantsRead,
    ])
}

/// The request and its provisioning run (queued when it was approved).
async fn request_answer(
    state: &ApiState,
    wf: &Workflow<'_>,
    id: &str,
    created: Option<bool>,
    execute: bool,
) -> Result<Value, ApiError> {
    let queue = RunQueue::open(&state.pg).await?;
    let open = queue.open_provision(id).await?;
    if let Some(run) = open.as_ref().filter(|_| execute) {
        state.execute_in_background(run.id);
    }
    let run = match open {
        Some(run) => Some(run),
        None => queue.latest_provision(id).await?,
    };
    let mut v =
        serde_json::to_value(wf.view(id).await?).map_err(|e| ApiError::internal(e.to_string()))?;
    v["run"] = json!(run);
    if let Some(created) = created {
        v["created"] = json!(created);
    }
    Ok(v)
}

#[utoipa::path(post, path = "/v1/requests", tag = "requests", params(("Idempotency-Key" = Option<String>, Header, description = "Answers a retry with the first answer")),
    request_body(content = Object, description = "The request file's fields (id, name, tier, region, budget_inr, owner_email, cost_center, data_classification, protected), plus notes", content_type = "application/json"),
    responses((status = 201, description = "The request, recorded", body = Object), (status = 200, description = "The same request, already recorded", body = Object), (status = 400, description = "Unreadable body", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 409, description = "A conflicting request", body = ErrorBody), (status = 422, description = "Invalid fields, each with its fix", body = ErrorBody)))]
pub(super) async fn submit_request(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let answer = async {
        caller.require(Scope::RequestsSubmit)?;
        submit(&state, &caller, parse(&body)?).await
    };
    idempotent(&state, &caller, &headers, &uri, &body, answer).await
}

/// Submits the request whose fields (the request file's, plus `notes`) are `fields`,
/// as `caller`: what `POST /v1/requests` and the portal's form do.
pub(super) async fn submit(
    state: &ApiState,
    caller: &Caller,
    mut fields: serde_json::Map<String, Value>,
) -> Answer {
    {
        caller.require(Scope::RequestsSubmit)?;
        let notes = match fields.remove("notes") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                return Err(ApiError::unprocessable("field notes: must be a string")
                    .with_details(json!([{"field": "notes", "message": "must be a string", "fix": "give the notes as text"}])));
            }
        };
        if let Some((k, _)) = fields.iter().find(|(_, v)| v.is_null()) {
            return Err(ApiError::unprocessable(format!("field {k}: null is not a value"))
                .with_details(json!([{"field": k, "message": "null is not a value", "fix": "leave the field out or give it a value"}])));
        }
        // The request file's format: the same parser and messages as `request submit`.
        let source = toml::to_string(&Value::Object(fields)).map_err(|e| {
            ApiError::bad_request(format!("the request body cannot be read as a request: {e}"))
        })?;
        let engine = state.engine();
        let mut wf = state.workflow(&engine).await?;
        let outcome = Box::pin(wf.submit_source(
            FilePath::new("<request body>"),
            &source,
            &caller.subject,
            notes.as_deref(),
        ))
        .await?;
        let id = outcome.request.id.clone();
        if !may_see(caller, &outcome.request) {
            return Err(ApiError::conflict(format!(
                "tenant {id} was already requested by someone else; nothing was recorded: choose another id"
            )));
        }
        tracing::info!(request = %id, by = %caller.subject, created = outcome.created, "request submitted through the API");
        let status = if outcome.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((
            status,
            request_answer(state, &wf, &id, Some(outcome.created), true).await?,
        ))
    }
}

/// The requests `caller` may see.
pub(super) async fn visible_requests(
    state: &ApiState,
    caller: &Caller,
) -> Result<Vec<Request>, ApiError> {
    read_requests(caller)?;
    let engine = state.engine();
    let list = all_requests(&engine).await?;
    Ok(list.into_iter().filter(|r| may_see(caller, r)).collect())
}

#[utoipa::path(get, path = "/v1/requests", tag = "requests",
    responses((status = 200, description = "The requests the caller may see", body = Object), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody)))]
pub(super) async fn list_requests(State(state): State<ApiState>, caller: Caller) -> Response {
    respond(
        async {
            let visible = visible_requests(&state, &caller).await?;
            Ok((StatusCode::OK, json!({"requests": visible})))
        }
        .await,
    )
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests", params(("id" = String, Path, description = "Request (tenant) id")),
    responses((status = 200, description = "The request, its approvals and its provisioning run", body = Object), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 404, description = "No such request of the caller's", body = ErrorBody)))]
pub(super) async fn get_request(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    respond(async { Ok((StatusCode::OK, request_of(&state, &caller, &id).await?)) }.await)
}

/// Request `id` with its decisions, checks, audit trail and provisioning run, if
/// `caller` may see it.
pub(super) async fn request_of(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<Value, ApiError> {
    read_requests(caller)?;
    request_id(id)?;
    let engine = state.engine();
    let wf = state.workflow(&engine).await?;
    let request = wf.registry().require(id).await?;
    if !may_see(caller, &request) {
        // Not a 403: whether someone else's request exists is theirs to know.
        return Err(ApiError::not_found(format!(
            "no request {id} of yours; a requester sees only their own requests"
        )));
    }
    request_answer(state, &wf, id, None, false).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionBody {
    pub decision: String,
    #[serde(default)]
    pub note: Option<String>,
    /// Which of the caller's roles decides, when the token has several the request
    /// needs.
    #[serde(default)]
    pub role: Option<String>,
}

#[utoipa::path(post, path = "/v1/requests/{id}/approvals", tag = "requests", params(("id" = String, Path, description = "Request (tenant) id"), ("Idempotency-Key" = Option<String>, Header, description = "Answers a retry with the first answer")),
    request_body(content = DecisionBody, content_type = "application/json"),
    responses((status = 200, description = "The request after the decision", body = Object), (status = 400, description = "Unreadable body", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 404, description = "No such request", body = ErrorBody), (status = 409, description = "Not waiting for this decision", body = ErrorBody), (status = 422, description = "An invalid field", body = ErrorBody)))]
pub(super) async fn decide_request(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let answer = async {
        caller.require(Scope::ApprovalsDecide)?;
        decide(&state, &caller, &id, parse(&body)?).await
    };
    idempotent(&state, &caller, &headers, &uri, &body, answer).await
}

/// Records `caller`'s decision `d` on request `id`: what `POST
/// /v1/requests/{id}/approvals` and the portal's inbox do.
pub(super) async fn decide(state: &ApiState, caller: &Caller, id: &str, d: DecisionBody) -> Answer {
    {
        caller.require(Scope::ApprovalsDecide)?;
        let approve = match d.decision.as_str() {
            "approve" => true,
            "reject" => false,
            other => {
                return Err(ApiError::unprocessable(format!(
                    "field decision: {other:?} is not a decision; use approve or reject"
                ))
                .with_details(json!([{"field": "decision", "message": format!("{other:?} is not a decision"), "fix": "use approve or reject"}])));
            }
        };
        request_id(id)?;
        let engine = state.engine();
        let mut wf = state.workflow(&engine).await?;
        let request = wf.registry().require(id).await?;
        if request.requester == caller.subject {
            return Err(ApiError::forbidden(format!(
                "{} requested {id} and cannot decide on it; another person of the role decides",
                caller.subject
            )));
        }
        let needed: Vec<&str> = request
            .required_approvals
            .iter()
            .map(|a| a.role.as_str())
            .filter(|r| caller.has_role(r))
            .collect();
        let role = match (&d.role, needed.as_slice()) {
            (Some(role), _) if caller.has_role(role) => role.clone(),
            (Some(role), _) => {
                return Err(ApiError::forbidden(format!(
                    "the token of {} does not carry the role {role}; an approval counts for the token's roles only",
                    caller.subject
                )));
            }
            (None, [one]) => (*one).to_owned(),
            (None, []) => {
                return Err(ApiError::forbidden(format!(
                    "request {id} needs the approval of {}; the token of {} carries none of these roles",
                    request
                        .required_approvals
                        .iter()
                        .map(|a| a.role.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    caller.subject
                )));
            }
            (None, several) => {
                return Err(ApiError::unprocessable(format!(
                    "field role: the token carries several roles this request needs ({}); say which one decides",
                    several.join(", ")
                )));
            }
        };
        let outcome =
            Box::pin(wf.decide(id, &role, approve, &caller.subject, d.note.as_deref())).await?;
        tracing::info!(request = %id, role = %role, approve, by = %caller.subject, status = %outcome.request.status, "decision through the API");
        let v = request_answer(state, &wf, id, None, true).await?;
        Ok((StatusCode::OK, v))
    }
}

impl ApiState {
    /// Executes run `id` in this process when the platform's runs are embedded (a
    /// worker takes it otherwise), as the CLI does when it queues one.
    pub(super) fn execute_in_background(&self, id: uuid::Uuid) {
        if self.runs.settings.executor != RunExecutor::Embedded {
            return;
        }
        let (cx, pg) = (self.runs.clone(), self.pg.clone());
        tokio::spawn(async move {
            let settled = async {
                let queue = RunQueue::open(&pg).await?;
                settle(&cx, &pg, &queue, id, false, Shutdown::default(), |_| {}).await
            };
            match Box::pin(settled).await {
                Ok(Some(run)) => tracing::info!(run = %id, status = %run.status, "run settled"),
                Ok(None) => tracing::warn!(run = %id, "run released"),
                Err(e) => tracing::warn!(run = %id, error = %e, "run could not be executed"),
            }
        });
    }
}
