//! The one shape of every API error: `{"error": {"code", "message", "details"}}`, with
//! its HTTP status, and how the library's errors map onto it.
//!
//! Messages are the library's own texts (the CLI prints the same), which never hold a
//! secret; a failure of the server itself (5xx) is logged with its message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Error as EngineError;
use crate::runs::RunError;
use crate::spec::SpecErrors;
use crate::workflow::WorkflowError;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, for programs: `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `validation_failed`, `bad_request`, `unavailable`, `internal`, ...
    pub code: &'static str,
    /// For people: what is wrong and what to do.
    pub message: String,
    pub details: Value,
}

impl ApiError {
    /// An error with HTTP `status`, the stable `code` clients match on, and `message`; no
    /// details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// The same error, with `details` in its JSON body.
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    /// A 401 (`unauthorized`): no valid token.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A 403 (`forbidden`): the token lacks the scope or role.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A 404 (`not_found`).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A 409 (`conflict`): the request clashes with the current state of things.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A 400 (`bad_request`): the request cannot be read.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A 422 (`validation_failed`): the request is read, but its content is not valid.
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }

    /// A 503 (`unavailable`): a service the server needs is down; the client may retry.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// A 500 (`internal`).
    pub fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, message = %self.message, "API request failed");
        }
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Spec problems as `[{field, message, fix, line, column}]`, the texts `validate` prints.
fn spec_details(errors: &SpecErrors) -> Value {
    Value::Array(
        errors
            .0
            .iter()
            .map(|d| {
                json!({
                    "field": d.field, "message": d.message, "fix": d.fix,
                    "line": d.line, "column": d.column,
                })
            })
            .collect(),
    )
}

/// A message of the form `field NAME: what; fix` as one detail.
fn field_detail(message: &str) -> Value {
    let (field, rest) = match message
        .strip_prefix("field ")
        .and_then(|m| m.split_once(": "))
    {
        Some((field, rest)) => (Some(field), rest),
        None => (None, message),
    };
    let (what, fix) = match rest.split_once("; ") {
        Some((what, fix)) => (what, Some(fix)),
        None => (rest, None),
    };
    json!([{"field": field, "message": what, "fix": fix}])
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match &e {
            EngineError::UnknownTenant(_) => ApiError::not_found(e.to_string()),
            EngineError::StalePlan { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_plan", e.to_string())
            }
            EngineError::Spec(errors) => {
                ApiError::unprocessable(e.to_string()).with_details(spec_details(errors))
            }
            EngineError::RegisteredSpecs(_) => ApiError::unavailable(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> ApiError {
        match e {
            RunError::UnknownRun(_) => ApiError::not_found(e.to_string()),
            RunError::Conflict(_) | RunError::Transition(_) | RunError::Fenced { .. } => {
                ApiError::conflict(e.to_string())
            }
            RunError::Invalid(_) => ApiError::unprocessable(e.to_string()),
            RunError::Database(_) => ApiError::unavailable(e.to_string()),
            RunError::Engine(e) => (*e).into(),
            RunError::Workflow(e) => (*e).into(),
        }
    }
}

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> ApiError {
        match e {
            WorkflowError::Spec(ref errors) => {
                ApiError::unprocessable(e.to_string()).with_details(spec_details(errors))
            }
            WorkflowError::UnknownRequest(_) => ApiError::not_found(e.to_string()),
            WorkflowError::Conflict(_) | WorkflowError::Transition(_) => {
                ApiError::conflict(e.to_string())
            }
            WorkflowError::Invalid(ref m) => {
                let details = field_detail(m);
                ApiError::unprocessable(e.to_string()).with_details(details)
            }
            WorkflowError::Registry(_) => ApiError::unavailable(e.to_string()),
            WorkflowError::Engine(e) => (*e).into(),
            WorkflowError::Io { .. } => ApiError::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_message_becomes_a_detail_with_its_fix() {
        let d = field_detail("field budget_inr: ₹1 is outside the range; choose another tier");
        assert_eq!(d[0]["field"], "budget_inr");
        assert_eq!(d[0]["message"], "₹1 is outside the range");
        assert_eq!(d[0]["fix"], "choose another tier");
        let d = field_detail("the requester is empty");
        assert!(d[0]["field"].is_null());
        assert!(d[0]["fix"].is_null());
    }
}
