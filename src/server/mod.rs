//! The HTTP side: the authenticated JSON API under `/v1` (tenants, runs, requests and
//! approvals; `v1`), the web portal at `/` over the same calls (`portal`),
//! Prometheus metrics, and health probes.
//!
//! Routes without a token: `GET /metrics` (Prometheus text format), `GET /healthz`
//! (the process is alive), `GET /readyz` (the platform database answers; 503 if not).
//! Every `/v1` route needs a Bearer JWT ([`auth`]); every error is
//! `{"error": {"code", "message", "details"}}` ([`error`]); every POST honours
//! `Idempotency-Key` ([`idempotency`]). Every request opens its own connections, so
//! the server holds no state of its own and any number of them can serve one platform.

pub mod auth;
pub mod error;
mod events;
pub mod idempotency;
pub mod openapi;
mod portal;
mod v1;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::connect::postgres::PostgresConfig;
use crate::runs::RunContext;
use crate::workflow::registry::Registry;
use crate::workflow::{Workflow, metrics};
use crate::{Engine, EngineConfig};

use auth::{HasVerifier, TokenVerifier};
use error::ApiError;

/// What the API server works on.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub specs_dir: PathBuf,
    pub state_dir: PathBuf,
    /// The platform database (registry, runs, idempotency keys).
    pub pg: PostgresConfig,
    /// How the runs the API queues are executed (`[runs]` of the platform file).
    pub runs: RunContext,
    pub verifier: TokenVerifier,
}

/// How many requests may use the database at once; the rest wait their turn. Each
/// holds a few connections (registry, runs, state) while it runs, so that 200 clients
/// polling at once queue here instead of exhausting PostgreSQL's `max_connections`
/// (100 by default) and failing with "too many clients".
pub const DATABASE_SLOTS: usize = 16;

/// The state every handler shares: configuration, one engine for the requests (its
/// state store's connections and registry connection shared, specs read fresh on
/// each call), and the database slots.
#[derive(Clone)]
pub struct ApiState {
    pg: PostgresConfig,
    specs_dir: PathBuf,
    state_dir: PathBuf,
    runs: RunContext,
    verifier: TokenVerifier,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("pg", &self.pg)
            .field("specs_dir", &self.specs_dir)
            .field("state_dir", &self.state_dir)
            .field("runs", &self.runs)
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl HasVerifier for ApiState {
    fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}

impl ApiState {
    fn new(config: ApiConfig) -> Self {
        // Reads only, waits for no lock: runs that change anything go to the workers.
        let engine = Engine::new(EngineConfig {
            specs_dir: config.specs_dir.clone(),
            state_dir: config.state_dir.clone(),
            parallelism: config.runs.parallelism,
            lock_timeout: Duration::ZERO,
            policy_dir: None,
            run: None,
            environment: config.runs.environment.clone(),
            bulk_read: crate::engine::BulkRead::Auto,
        })
        .with_registry(config.pg.clone());
        ApiState {
            pg: config.pg,
            specs_dir: config.specs_dir,
            state_dir: config.state_dir,
            runs: config.runs,
            verifier: config.verifier,
            engine: Arc::new(engine),
        }
    }

    /// The engine the requests share.
    fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// The lifecycle, queuing provisionings as runs, as `request` commands open it.
    async fn workflow<'a>(&self, engine: &'a Engine) -> Result<Workflow<'a>, ApiError> {
        let mut wf = Workflow::open(engine).await?;
        wf.set_provisioning(std::sync::Arc::new(
            crate::runs::RunQueue::open(&self.pg).await?,
        ));
        if let Some(url) = &self.runs.metrics_url {
            wf.set_metrics_url(url);
        }
        Ok(wf)
    }
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
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Ready when the platform database answers.
async fn ready_handler(State(pg): State<PostgresConfig>) -> Response {
    let check = async {
        let client = pg.connect_as("tenantform readyz").await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| crate::connect::postgres::db_error(&e))?;
        Ok::<_, crate::connect::ServiceError>(())
    };
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Ok(())) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Ok(Err(e)) => ApiError::unavailable(format!("the platform database does not answer: {e}"))
            .into_response(),
        Err(_) => {
            ApiError::unavailable("the platform database did not answer within 5 s").into_response()
        }
    }
}

/// The routes without a token: metrics and probes, over the platform database at `pg`.
pub fn probes(pg: PostgresConfig) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(pg)
}

/// Every route: the probes and the `/v1` API.
pub fn router(config: ApiConfig) -> Router {
    let pg = config.pg.clone();
    let state = ApiState::new(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(DATABASE_SLOTS));
    let limited = |router: Router| {
        router.layer(axum::middleware::from_fn_with_state(
            slots.clone(),
            take_a_database_slot,
        ))
    };
    probes(pg)
        .route("/openapi.json", get(openapi::serve_document))
        .nest("/v1", limited(v1::routes().with_state(state.clone())))
        .merge(limited(portal::routes().with_state(state)))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; the API is under /v1 (see the README's API section)",
            )
        })
}

/// Runs the request once a database slot is free, and frees it when the handler has
/// answered (an event stream's body goes on without it: it polls on a connection of
/// its own).
async fn take_a_database_slot(
    State(slots): State<Arc<tokio::sync::Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match slots.acquire().await {
        Ok(_slot) => next.run(request).await,
        // Closed only if the server is going away.
        Err(_) => ApiError::unavailable("the server is shutting down").into_response(),
    }
}

/// Serves the API until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, config: ApiConfig) -> std::io::Result<()> {
    axum::serve(listener, router(config)).await
}

/// Serves the metrics and probes on a free loopback port in the background, for a
/// workflow's metrics check when the platform names no metrics endpoint of its own (the
/// caller passes the URL to `Workflow::set_metrics_url`); returns the address and the
/// task (abort it to stop; dropping it leaves the server running).
pub async fn serve_metrics_on_loopback(
    pg: PostgresConfig,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, probes(pg)).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok((addr, handle))
}
