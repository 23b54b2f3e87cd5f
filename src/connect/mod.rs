//! Connections to the platform's services: PostgreSQL (a pool, and single
//! connections as any role), the shared Redis, and AWS (SDK clients, tenants' assumed
//! roles). Below the providers: providers, the workflow's checks and registry, the HTTP
//! server, outputs and the CLI all reach a service through here.
//!
//! What this module promises:
//! - one way to find each service: the platform file's settings ([`postgres::PostgresEndpoint`],
//!   [`redis::RedisEndpoint`], [`aws::AwsEndpoint`]) completed from the standard
//!   environment variables, resolved into a config that carries its secrets as
//!   [`crate::secret::Secret`]s, so that no `Debug` print shows a password;
//! - one error type for a call to a service, [`ServiceError`], saying whether another
//!   try may succeed, and one retry policy for such calls, [`retry::RetryPolicy`];
//! - the workarounds for the local AWS endpoint (moto) in one place,
//!   [`aws::moto_quirks`];
//! - a bound on the calls in flight to one service, [`limit::CallLimit`].
//!
//! Architecture invariant: `connect` knows nothing of resources, specs, plans, state
//! or providers. Its settings types are plain data; `spec` reads the platform file
//! into them (see `ARCHITECTURE.md`).

pub mod aws;
pub mod limit;
pub mod postgres;
pub mod redis;
pub mod retry;

use std::time::Duration;

/// A failure of one call to a service (PostgreSQL, Redis, an AWS API, Grafana).
/// Providers answer with the same type (`provider::ProviderError`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A create found the name taken by something tenantform does not manage. Only
    /// providers answer this: they know what a create is.
    #[error(
        "{what} already exists and is not managed by tenantform; remove it, or adopt it with `tenantform import`"
    )]
    AlreadyExists { what: String },
    /// The service answered with an error; `retryable` says whether trying again may help.
    #[error("{service} refused the request ({code}): {message}")]
    Api {
        service: &'static str,
        code: String,
        message: String,
        retryable: bool,
    },
    /// The service could not be reached.
    #[error("cannot reach {service}: {detail}")]
    Unreachable {
        service: &'static str,
        detail: String,
    },
    /// The service did not answer in time.
    #[error("{service} did not answer within {}s", timeout.as_secs_f32())]
    Timeout {
        service: &'static str,
        timeout: Duration,
    },
    /// The connection settings cannot be used.
    #[error("{0}")]
    Config(String),
}

impl ServiceError {
    /// Whether trying again may succeed (throttling, a dropped connection, a
    /// serialization conflict), as opposed to a request that is wrong.
    pub fn is_retryable(&self) -> bool {
        match self {
            ServiceError::Api { retryable, .. } => *retryable,
            ServiceError::Unreachable { .. } | ServiceError::Timeout { .. } => true,
            ServiceError::AlreadyExists { .. } | ServiceError::Config(_) => false,
        }
    }

    /// A short machine-readable code: the API's error code, or the kind of failure.
    pub fn code(&self) -> &str {
        match self {
            ServiceError::Api { code, .. } => code,
            ServiceError::AlreadyExists { .. } => "AlreadyExists",
            ServiceError::Unreachable { .. } => "Unreachable",
            ServiceError::Timeout { .. } => "Timeout",
            ServiceError::Config(_) => "Config",
        }
    }

    /// The same error, retryable: for codes that are transient only in one place (a
    /// principal IAM has not propagated yet).
    pub fn into_retryable(self) -> Self {
        match self {
            ServiceError::Api {
                service,
                code,
                message,
                ..
            } => ServiceError::Api {
                service,
                code,
                message,
                retryable: true,
            },
            other => other,
        }
    }
}
