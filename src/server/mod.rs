//! The HTTP side: Prometheus metrics and a read-only view of tenant requests, for
//! dashboards, scrapers and other services.
//!
//! Routes: `GET /metrics` (Prometheus text format), `GET /healthz`,
//! `GET /requests`, `GET /requests/{id}` (JSON, the shape of `request status --json`).
//! Every request opens its own registry connection, so the server holds no state.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::connect::postgres::PostgresConfig;
use crate::workflow::registry::Registry;
use crate::workflow::{WorkflowError, metrics};

fn error_response(e: WorkflowError) -> Response {
    let status = match e {
        WorkflowError::UnknownRequest(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        axum::Json(serde_json::json!({"error": e.to_string()})),
    )
        .into_response()
}

async fn metrics_handler(State(pg): State<PostgresConfig>) -> Response {
    let text = match Registry::open(&pg).await {
        Ok(r) => metrics::render(&r).await,
        Err(e) => Err(e),
    };
    match text {
        Ok(t) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            t,
        )
            .into_response(),
        Err(e) => error_response(e),
    }
}

async fn list_handler(State(pg): State<PostgresConfig>) -> Response {
    match Registry::open(&pg).await {
        Ok(r) => match r.list().await {
            Ok(list) => axum::Json(serde_json::json!({ "requests": list })).into_response(),
            Err(e) => error_response(e),
        },
        Err(e) => error_response(e),
    }
}

async fn get_handler(State(pg): State<PostgresConfig>, Path(id): Path<String>) -> Response {
    let r = match Registry::open(&pg).await {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    let view = async {
        let request = r.require(&id).await?;
        Ok::<_, WorkflowError>(serde_json::json!({
            "request": request,
            "decisions": r.decisions(&id).await?,
            "checks": r.latest_checks(&id).await?,
            "audit": r.audit_trail(&id).await?,
        }))
    };
    match view.await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error_response(e),
    }
}

/// The routes, over the platform database at `pg`.
pub fn router(pg: PostgresConfig) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/requests", get(list_handler))
        .route("/requests/{id}", get(get_handler))
        .with_state(pg)
}

/// Serves until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, pg: PostgresConfig) -> std::io::Result<()> {
    axum::serve(listener, router(pg)).await
}

/// Serves the routes on a free loopback port in the background, for a workflow's
/// metrics check when the platform names no metrics endpoint of its own (the caller
/// passes the URL to `Workflow::set_metrics_url`); returns the address and the task
/// (abort it to stop; dropping it leaves the server running).
pub async fn serve_metrics_on_loopback(
    pg: PostgresConfig,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        if let Err(e) = serve(listener, pg).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok((addr, handle))
}
