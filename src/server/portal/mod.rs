//! The self-service web portal at `/`: server-rendered pages over the same library
//! calls as the `/v1` API (the request functions of [`super::v1`]), for the people of
//! the tenant-request workflow.
//!
//! - `GET|POST /sign-in`, `POST /sign-out`: a session is the caller's API token in an
//!   HttpOnly, SameSite=Strict cookie, verified on every request as the API verifies a
//!   Bearer token ([`session`]). A page without a session redirects to `/sign-in`.
//! - `GET /requests`, `GET|POST /requests/new`: the caller's requests; the request
//!   form, with the platform file's tier catalog, residency and approval rules, and the
//!   API's `{field, message, fix}` problems next to their fields.
//! - `GET /requests/{id}`: a request, followed live (an `EventSource` on `GET
//!   /requests/{id}/events`, the API's event stream of the request) until it settles.
//! - `GET /inbox`, `POST /requests/{id}/decision`: what waits for the caller's roles,
//!   why each role is asked, and approve/reject with a note.
//! - `GET /tenants/{id}`: status, validation checks, outputs (secrets redacted),
//!   last drift check, audit trail.
//!
//! Every form POST carries the session's CSRF token and is refused (403) without it.
//! The portal decides nothing itself: scopes, roles, visibility and validation are
//! the API's, so the portal and the API cannot disagree.

mod pages;
pub mod session;

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::ApiState;
use super::auth::{HasVerifier, Scope};
use super::error::ApiError;
use super::{events, v1};
use crate::runs::{Operation, RunFilter, RunQueue};
use crate::workflow::status::RequestStatus;
use pages::FieldProblem;
use session::{
    SESSION_COOKIE, SIGN_IN_COOKIE, Session, clear_cookie, cookie, csrf_refusal, same_secret,
    see_other, set_cookie, with_cookie,
};

/// The portal's routes, to merge beside `/v1`.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(|| async { see_other("/requests") }))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/requests", get(list_requests))
        .route("/requests/new", get(new_request).post(submit_request))
        .route("/requests/{id}", get(request_page))
        .route("/requests/{id}/events", get(request_events))
        .route("/requests/{id}/decision", post(decide))
        .route("/inbox", get(inbox))
        .route("/tenants/{id}", get(tenant_page))
        .layer(axum::middleware::map_response(page_headers))
}

/// Pages hold a session's data and forms: not cached, not framed by another site.
async fn page_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

type Fields = Form<Vec<(String, String)>>;

fn form_map(Form(pairs): Fields) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

fn failed(session: &Session, e: ApiError) -> Response {
    pages::error_page(e.status, Some(session), &e.message)
}

// ---- sign in and out ----------------------------------------------------------------

async fn sign_in_page(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if session::session(&headers, state.verifier()).is_some() {
        return see_other("/requests");
    }
    sign_in_answer(StatusCode::OK, None)
}

/// The sign-in form with a fresh double-submit value in its cookie.
fn sign_in_answer(status: StatusCode, problem: Option<&str>) -> Response {
    let nonce = session::sign_in_nonce();
    with_cookie(
        (status, pages::sign_in(&nonce, problem)).into_response(),
        set_cookie(SIGN_IN_COOKIE, &nonce),
    )
}

async fn sign_in(State(state): State<ApiState>, headers: HeaderMap, form: Fields) -> Response {
    let form = form_map(form);
    let expected = cookie(&headers, SIGN_IN_COOKIE);
    let given = form.get("csrf").map(String::as_str);
    match (expected, given) {
        (Some(e), Some(g)) if same_secret(e, g) => {}
        _ => return csrf_refusal(),
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or_default();
    // The API's own check of a Bearer token: the same verifier, the same refusals.
    match state.verifier().verify(token) {
        Ok(caller) => {
            tracing::info!(subject = %caller.subject, "portal sign-in");
            let r = with_cookie(see_other("/requests"), set_cookie(SESSION_COOKIE, token));
            with_cookie(r, clear_cookie(SIGN_IN_COOKIE))
        }
        Err(e) => sign_in_answer(StatusCode::UNAUTHORIZED, Some(&e.message)),
    }
}

async fn sign_out(session: Session, form: Fields) -> Response {
    let form = form_map(form);
    if !session.csrf_ok(form.get("csrf").map(String::as_str)) {
        return csrf_refusal();
    }
    with_cookie(see_other("/sign-in"), clear_cookie(SESSION_COOKIE))
}

// ---- requests -----------------------------------------------------------------------

async fn list_requests(State(state): State<ApiState>, session: Session) -> Response {
    match v1::visible_requests(&state, &session.caller).await {
        Ok(list) => {
            let list: Vec<Value> = list.iter().map(|r| json!(r)).collect();
            pages::requests(&session, &list).into_response()
        }
        Err(e) => failed(&session, e),
    }
}

/// The form of a new request, with `values` and `problems`, with the platform file
/// `validate` and `request submit` read.
fn request_form(
    state: &ApiState,
    session: &Session,
    status: StatusCode,
    values: &BTreeMap<String, String>,
    problems: &[FieldProblem],
) -> Response {
    match crate::spec::load_platform(&state.specs_dir) {
        Ok(platform) => (
            status,
            pages::request_form(session, &platform, values, problems),
        )
            .into_response(),
        Err(e) => failed(session, ApiError::from(crate::Error::Spec(e))),
    }
}

async fn new_request(State(state): State<ApiState>, session: Session) -> Response {
    if let Err(e) = session.caller.require(Scope::RequestsSubmit) {
        return failed(&session, e);
    }
    request_form(&state, &session, StatusCode::OK, &BTreeMap::new(), &[])
}

/// The form's fields as the API's request body: numbers as numbers, the checkbox as a
/// boolean, empty fields left out (so that the request file's parser names them).
fn request_body(form: &BTreeMap<String, String>) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    for (k, v) in form {
        let v = v.trim();
        if k == "csrf" || k == "protected" || v.is_empty() {
            continue;
        }
        let value = match (k.as_str(), v.parse::<i64>()) {
            ("budget_inr", Ok(n)) => json!(n),
            _ => json!(v),
        };
        body.insert(k.clone(), value);
    }
    body.insert(
        "protected".into(),
        json!(form.get("protected").is_some_and(|v| v == "true")),
    );
    body
}

/// An API refusal as the form's problems: its details, or its message.
fn problems(e: &ApiError) -> Vec<FieldProblem> {
    let listed: Vec<FieldProblem> = e
        .details
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| FieldProblem {
                    field: d["field"].as_str().map(str::to_owned),
                    message: d["message"].as_str().unwrap_or_default().to_owned(),
                    fix: d["fix"].as_str().map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        vec![FieldProblem {
            field: None,
            message: e.message.clone(),
            fix: None,
        }]
    } else {
        listed
    }
}

async fn submit_request(State(state): State<ApiState>, session: Session, form: Fields) -> Response {
    let form = form_map(form);
    if !session.csrf_ok(form.get("csrf").map(String::as_str)) {
        return csrf_refusal();
    }
    match v1::submit(&state, &session.caller, request_body(&form)).await {
        Ok((_, v)) => see_other(&format!("/requests/{}", v["id"].as_str().unwrap_or(""))),
        Err(e) if e.status.is_server_error() => failed(&session, e),
        Err(e) => request_form(&state, &session, e.status, &form, &problems(&e)),
    }
}

async fn request_page(
    State(state): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    match v1::request_of(&state, &session.caller, &id).await {
        Ok(v) => {
            let events = format!("/requests/{id}/events");
            pages::request(&session, &v, &events).into_response()
        }
        Err(e) => failed(&session, e),
    }
}

/// The request's lifecycle as Server-Sent Events, for the page's live update: the
/// stream of `GET /v1/requests/{id}/events`, with the session's caller.
async fn request_events(
    State(state): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    events::request_events(State(state), session.caller, Path(id), headers).await
}

// ---- approvals ----------------------------------------------------------------------

async fn inbox(State(state): State<ApiState>, session: Session) -> Response {
    let waiting = async {
        session.caller.require(Scope::ApprovalsDecide)?;
        let mut waiting = Vec::new();
        for r in v1::visible_requests(&state, &session.caller).await? {
            let mine = r
                .required_approvals
                .iter()
                .any(|a| session.caller.has_role(&a.role));
            if r.status != RequestStatus::PendingApproval || !mine {
                continue;
            }
            let v = v1::request_of(&state, &session.caller, &r.id).await?;
            let pending = v["pending_approvals"].as_array().is_some_and(|p| {
                p.iter()
                    .filter_map(Value::as_str)
                    .any(|role| session.caller.has_role(role))
            });
            if pending && r.requester != session.caller.subject {
                waiting.push(v);
            }
        }
        Ok::<_, ApiError>(waiting)
    };
    match waiting.await {
        Ok(w) => pages::inbox(&session, &w).into_response(),
        Err(e) => failed(&session, e),
    }
}

async fn decide(
    State(state): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
    form: Fields,
) -> Response {
    let form = form_map(form);
    if !session.csrf_ok(form.get("csrf").map(String::as_str)) {
        return csrf_refusal();
    }
    let field = |k: &str| {
        form.get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let decision = v1::DecisionBody {
        decision: field("decision").unwrap_or_default(),
        note: field("note"),
        role: field("role"),
    };
    match v1::decide(&state, &session.caller, &id, decision).await {
        Ok(_) => see_other(&format!("/requests/{id}")),
        Err(e) => failed(&session, e),
    }
}

// ---- tenants ------------------------------------------------------------------------

async fn tenant_page(
    State(state): State<ApiState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let page = async {
        session.caller.require(Scope::TenantsRead)?;
        let tenant_id: crate::TenantId = id
            .parse()
            .map_err(|_| ApiError::not_found(format!("no tenant {id:?}: not a tenant id")))?;
        let tenant = v1::tenant_json(&state, Some(&tenant_id))
            .await?
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("no tenant {id}")))?;
        // Checks and audit trail are the request's; a tenant without one (or another
        // requester's, to a requester) has none to show.
        let request = match v1::request_of(&state, &session.caller, &id).await {
            Ok(r) => Some(r),
            Err(e) if e.status == StatusCode::NOT_FOUND => None,
            Err(e) => return Err(e),
        };
        let runs = RunQueue::open(&state.pg)
            .await?
            .list(&RunFilter {
                tenant: Some(id.clone()),
                status: None,
                limit: 200,
            })
            .await?;
        let drift = runs
            .into_iter()
            .find(|r| matches!(r.operation, Operation::Drift | Operation::Refresh))
            .map(|r| json!(r));
        Ok::<_, ApiError>(pages::tenant(
            &session,
            &tenant,
            request.as_ref(),
            drift.as_ref(),
        ))
    };
    match page.await {
        Ok(p) => p.into_response(),
        Err(e) => failed(&session, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_the_request_body_the_api_takes() {
        let form: BTreeMap<String, String> = [
            ("csrf", "x"),
            ("id", "acme"),
            ("budget_inr", "1500000"),
            ("cost_center", " "),
            ("notes", "for the launch"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let body = request_body(&form);
        assert_eq!(body["budget_inr"], json!(1_500_000));
        assert_eq!(body["protected"], json!(false));
        assert_eq!(body["notes"], json!("for the launch"));
        assert!(!body.contains_key("csrf"));
        assert!(!body.contains_key("cost_center"));
        let mut form = form;
        form.insert("budget_inr".into(), "lots".into());
        form.insert("protected".into(), "true".into());
        let body = request_body(&form);
        assert_eq!(body["budget_inr"], json!("lots"));
        assert_eq!(body["protected"], json!(true));
    }
}
