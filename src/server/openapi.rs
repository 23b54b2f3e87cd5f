//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /openapi.json` (no token). A copy is kept in
//! `docs/openapi.json`; the API test fails when the two differ (regenerate with
//! `UPDATE_OPENAPI=1 scripts/test -E 'test(openapi)'`).

use axum::Json;
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{events, v1};

/// Every error answer: `{"error": {"code", "message", "details"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorFields,
}

/// The fields of an error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorFields {
    /// Stable, for programs: `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `stale_plan`, `validation_failed`, `bad_request`, `unavailable`, ...
    pub code: String,
    /// For people: what is wrong and what to do.
    pub message: String,
    /// More: for a 422, a list of `{field, message, fix}`.
    pub details: Value,
}

struct BearerJwt;

impl Modify for BearerJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from `tenantform token create` (or the platform's issuer): sub, roles, scopes, exp",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI description of the v1 API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenantform",
        description = "Tenants, runs and requests of the platform: the HTTP API of `tenantform serve`."
    ),
    paths(
        v1::list_tenants,
        v1::get_tenant,
        v1::start_run,
        v1::get_run,
        v1::get_plan,
        v1::act_on_run,
        events::run_events,
        v1::submit_request,
        v1::list_requests,
        v1::get_request,
        v1::decide_request,
        events::request_events,
    ),
    components(schemas(ErrorBody, ErrorFields)),
    modifiers(&BearerJwt),
    security(("bearer" = [])),
    tags(
        (name = "tenants", description = "Tenants: specs, state, outputs"),
        (name = "runs", description = "Runs: plan, apply, destroy, drift, their steps"),
        (name = "requests", description = "Tenant requests and approvals"),
    )
)]
pub struct ApiDoc;

/// The document, as `GET /openapi.json` serves it and `docs/openapi.json` keeps it.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
        + "\n"
}

pub(super) async fn serve_document() -> impl IntoResponse {
    let doc: Value = serde_json::from_str(&document()).expect("the document is JSON");
    Json(doc)
}
