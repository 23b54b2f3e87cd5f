//! Server-Sent Events: a run's steps (`GET /v1/runs/{id}/events`) and a tenant request's
//! lifecycle (`GET /v1/requests/{id}/events`), as they are written.
//!
//! What it promises:
//! - Every event comes from PostgreSQL (a run's `tenantform.run_events`, a request's
//!   audit trail `tenantform.audit`), so any server, and a client that reconnects to
//!   another one, sees the same events with the same ids.
//! - Each event carries its id (`id:`), which only grows within a stream; a client that
//!   reconnects with `Last-Event-ID: N` gets exactly the events after N: none lost, none
//!   repeated: the writers of one stream draw ids and commit in one order (a run's
//!   events have one writer, its attempt's event log, and human actions lock the run's
//!   row; every writer of a request's trail locks the request's row).
//! - The stream ends once the run is final (`applied`, `errored`, `canceled`, ...) or
//!   the request settled (`active`, `rejected`, `failed`, `rolled_back`, `destroyed`),
//!   after its last event. A failure to read mid-stream ends it with an `error` event.
//! - Followers wake on LISTEN/NOTIFY and poll every second besides, so a lost
//!   notification delays an event by a second at most.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::openapi::ErrorBody;
use super::v1::{may_see, read_requests, read_runs, request_id};
use crate::connect::postgres::Listener;
use crate::runs::{RunQueue, RunStatus, follow_after};
use crate::workflow::WorkflowError;
use crate::workflow::registry::{AuditEntry, REQUEST_EVENTS_CHANNEL, Registry};
use crate::workflow::status::RequestStatus;

/// The event id a reconnecting client sends: the last one it got (0 without one).
fn last_event_id(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                "the Last-Event-ID header is not an event id: send the `id` of the last event received (a whole number), or no header to start from the first",
            )
        })
}

/// The SSE response over the events a follower task sends; the task stops when the
/// client goes away (the receiver is dropped).
fn sse(rx: mpsc::UnboundedReceiver<Event>) -> Response {
    let mut rx = rx;
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The SSE response over the events `follow` sends on the channel it is given, in a
/// task of its own that ends with `follow` or when the client goes away; a failure to
/// read on ends the stream with an `error` event (and a warning naming `what`).
fn stream<F, E>(
    what: String,
    follow: impl FnOnce(mpsc::UnboundedSender<Event>) -> F + Send + 'static,
) -> Response
where
    F: Future<Output = Result<(), E>> + Send,
    E: Into<ApiError> + std::fmt::Display,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let followed = follow(tx.clone());
        tokio::select! {
            ended = followed => if let Err(e) = ended {
                tracing::warn!(stream = %what, error = %e, "an event stream stopped");
                let _ = tx.send(error_event(e.into()));
            },
            () = tx.closed() => {}
        }
    });
    sse(rx)
}

/// The last event of a stream that could not be read on.
fn error_event(e: ApiError) -> Event {
    Event::default().event("error").data(e.body().to_string())
}

#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs", params(("id" = String, Path, description = "Run id"), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "Server-Sent Events: the run's steps until it is final", content_type = "text/event-stream", body = String), (status = 400, description = "A Last-Event-ID that is not an event id", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 404, description = "No such run", body = ErrorBody), (status = 422, description = "A run id prefix that several runs start with: give more of it", body = ErrorBody)))]
pub(super) async fn run_events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let opened = async {
        read_runs(&caller)?;
        let after = last_event_id(&headers)?;
        let queue = RunQueue::open(&state.pg).await?;
        let run = queue.find(&id).await?;
        Ok::<_, ApiError>((queue, run.id, after))
    };
    let (queue, id, after) = match opened.await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    stream(format!("run {id}"), move |tx| async move {
        follow_after(&queue, id, after, RunStatus::is_final, |e| {
            let event = Event::default()
                .id(e.id.to_string())
                .event(e.kind.as_str())
                .json_data(e)
                .expect("a run event serializes");
            // A closed channel is the client gone: `stream` then ends the task.
            let _ = tx.send(event);
        })
        .await
        .map(|_| ())
    })
}

/// Whether a request's stream ends at `status`: settled, and not waiting for a decision
/// (a follower of a new request wants to see it approved and provisioned).
pub(super) fn request_stream_ends(status: RequestStatus) -> bool {
    status.is_settled() && status != RequestStatus::PendingApproval
}

/// The audit entries of request `id` after `after`, each given to `on_entry`, until the
/// request settles ([`request_stream_ends`]).
async fn follow_request(
    state: &ApiState,
    registry: &Registry,
    id: &str,
    mut after: i64,
    mut on_entry: impl FnMut(&AuditEntry),
) -> Result<(), WorkflowError> {
    let mut listener = Listener::open(&state.pg, &[REQUEST_EVENTS_CHANNEL]).await;
    let prefix = format!("{id} ");
    loop {
        for e in registry.audit_after(id, after).await? {
            after = e.seq;
            on_entry(&e);
        }
        if request_stream_ends(registry.require(id).await?.status) {
            // The entry of its last move was written with the status: read it too.
            for e in registry.audit_after(id, after).await? {
                on_entry(&e);
            }
            return Ok(());
        }
        listener.wait_for(&prefix, Duration::from_secs(1)).await;
    }
}

#[utoipa::path(get, path = "/v1/requests/{id}/events", tag = "requests", params(("id" = String, Path, description = "Request (tenant) id"), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "Server-Sent Events: the request's lifecycle until it settles", content_type = "text/event-stream", body = String), (status = 400, description = "A Last-Event-ID that is not an event id", body = ErrorBody), (status = 401, description = "No valid token", body = ErrorBody), (status = 403, description = "The token lacks the scope or role", body = ErrorBody), (status = 404, description = "No such request of the caller's", body = ErrorBody)))]
pub(super) async fn request_events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let opened = async {
        read_requests(&caller)?;
        let after = last_event_id(&headers)?;
        request_id(&id)?;
        let registry = Registry::open_existing(&state.pg)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no request {id}")))?;
        let request = registry.require(&id).await?;
        if !may_see(&caller, &request) {
            return Err(ApiError::not_found(format!(
                "no request {id} of yours; a requester sees only their own requests"
            )));
        }
        Ok::<_, ApiError>((registry, after))
    };
    let (registry, after) = match opened.await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    stream(format!("request {id}"), move |tx| async move {
        follow_request(&state, &registry, &id, after, |e| {
            let event = Event::default()
                .id(e.seq.to_string())
                .event(e.action.as_str())
                .json_data(json!({
                    "id": e.seq, "request_id": id, "at": e.at, "actor": e.actor,
                    "action": e.action, "from_status": e.from_status,
                    "to_status": e.to_status, "detail": e.detail,
                }))
                .expect("an audit entry serializes");
            let _ = tx.send(event);
        })
        .await
    })
}
