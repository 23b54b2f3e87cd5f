//! `Idempotency-Key` on POST: a client that retries a POST with the same key gets the
//! first answer again instead of a second run, request or decision.
//!
//! Keys live in `tenantform.api_idempotency`, per caller (a key of one subject never
//! answers another's request), with the SHA-256 of the request (method, path, body)
//! and, once answered, the status and body of the answer. The first request with a key
//! inserts its row (the primary key decides between concurrent duplicates: exactly one
//! inserts); the others wait for its answer and return it. The same key with another
//! request is a 409. A 5xx answer is not kept: the key is free again for a retry. A row
//! left unanswered (its server died mid-request) is taken over after
//! [`ABANDONED_AFTER`].

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::error::ApiError;
use crate::connect::postgres::{PostgresConfig, db_error, migrate};
use crate::workflow::registry::SCHEMA;

/// Migrations of the API's tables, tracked in `tenantform.api_migrations`. Never edit
/// one that shipped: add another.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE tenantform.api_idempotency (
    subject text NOT NULL,
    key text NOT NULL,
    -- SHA-256 (hex) of the method, path and body of the first request with the key.
    request_hash text NOT NULL,
    -- NULL while the first request is being answered.
    status smallint,
    response jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    answered_at timestamptz,
    PRIMARY KEY (subject, key)
);
CREATE INDEX api_idempotency_by_created ON tenantform.api_idempotency (created_at);
"#,
)];

/// An unanswered key older than this belongs to a request whose server died.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(600);
/// How long a duplicate waits for the first request's answer.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(120);
const MAX_KEY_LEN: usize = 255;

/// Where keys are kept.
pub struct IdempotencyStore {
    client: Client,
}

/// What the store says about a request with a key.
pub enum Claimed {
    /// This request is the first with its key: answer it, then [`IdempotencyStore::answer`].
    First,
    /// The key was answered before: the status and body to return again.
    Answered(StatusCode, Value),
}

/// The hash a key is bound to.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A key must be printable ASCII of 1 to 255 characters.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(format!(
            "the Idempotency-Key header must be 1 to {MAX_KEY_LEN} printable ASCII characters without spaces (a UUID, say)"
        )));
    }
    Ok(())
}

fn db(e: tokio_postgres::Error) -> ApiError {
    ApiError::unavailable(format!(
        "the idempotency keys cannot be used: {}",
        db_error(&e)
    ))
}

impl IdempotencyStore {
    /// Connects and brings the table up to date.
    pub async fn open(pg: &PostgresConfig) -> Result<IdempotencyStore, ApiError> {
        let mut client = pg
            .connect_as("tenantform api")
            .await
            .map_err(|e| ApiError::unavailable(format!("the platform database: {e}")))?;
        migrate(&mut client, SCHEMA, "api_migrations", MIGRATIONS)
            .await
            .map_err(|e| ApiError::unavailable(format!("the platform database: {e}")))?;
        Ok(IdempotencyStore { client })
    }

    /// Claims `key` for this request, or returns the answer of the first request with
    /// it (waiting for it if it is being answered). A 409 if the key was used for
    /// another request.
    pub async fn claim(&self, subject: &str, key: &str, hash: &str) -> Result<Claimed, ApiError> {
        let started = Instant::now();
        loop {
            let inserted = self
                .client
                .execute(
                    &format!(
                        "INSERT INTO {SCHEMA}.api_idempotency (subject, key, request_hash) VALUES ($1, $2, $3) \
                         ON CONFLICT (subject, key) DO UPDATE SET created_at = clock_timestamp() \
                         WHERE api_idempotency.status IS NULL AND api_idempotency.request_hash = EXCLUDED.request_hash \
                           AND api_idempotency.created_at < clock_timestamp() - make_interval(secs => $4)"
                    ),
                    &[&subject, &key, &hash, &(ABANDONED_AFTER.as_secs() as f64)],
                )
                .await
                .map_err(db)?;
            if inserted == 1 {
                return Ok(Claimed::First);
            }
            let row = self
                .client
                .query_opt(
                    &format!(
                        "SELECT request_hash, status, response FROM {SCHEMA}.api_idempotency WHERE subject = $1 AND key = $2"
                    ),
                    &[&subject, &key],
                )
                .await
                .map_err(db)?;
            // Gone: the first request failed and freed the key; claim it again.
            let Some(row) = row else { continue };
            let stored: String = row.get(0);
            if stored != hash {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for another request (another path or body); nothing was done: use a new key for a new request",
                ));
            }
            let status: Option<i16> = row.get(1);
            if let Some(status) = status {
                let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
                return Ok(Claimed::Answered(status, row.get(2)));
            }
            if started.elapsed() > WAIT_FOR_FIRST {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "the first request with this Idempotency-Key is still being answered; retry later with the same key",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Keeps the answer of the request that claimed `key`; a 5xx, or `keep` false,
    /// frees the key instead.
    pub async fn answer(
        &self,
        subject: &str,
        key: &str,
        status: StatusCode,
        keep: bool,
        body: &Value,
    ) -> Result<(), ApiError> {
        if status.is_server_error() || !keep {
            self.client
                .execute(
                    &format!(
                        "DELETE FROM {SCHEMA}.api_idempotency WHERE subject = $1 AND key = $2 AND status IS NULL"
                    ),
                    &[&subject, &key],
                )
                .await
                .map_err(db)?;
            return Ok(());
        }
        self.client
            .execute(
                &format!(
                    "UPDATE {SCHEMA}.api_idempotency SET status = $3, response = $4, answered_at = clock_timestamp() \
                     WHERE subject = $1 AND key = $2"
                ),
                &[&subject, &key, &(status.as_u16() as i16), body],
            )
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_method_path_and_body() {
        let a = request_hash("POST", "/v1/requests", b"{}");
        assert_eq!(a.len(), 64);
        assert_eq!(a, request_hash("POST", "/v1/requests", b"{}"));
        assert_ne!(a, request_hash("POST", "/v1/requests", b"{ }"));
        assert_ne!(a, request_hash("POST", "/v1/runs", b"{}"));
    }

    #[test]
    fn keys_are_short_printable_ascii() {
        assert!(check_key("6c1f2a3b-0000").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("a b").is_err());
        assert!(check_key(&"k".repeat(256)).is_err());
        assert!(check_key("ключ").is_err());
    }
}
