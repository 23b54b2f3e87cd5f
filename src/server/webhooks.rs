//! Outgoing webhooks: run and request events POSTed, signed, to the URLs of
//! `[[webhooks]]` in platform.toml.
//!
//! What it promises:
//! - Every event is recorded in the transaction that makes it true: triggers on
//!   `tenantform.runs` and `tenantform.requests` write `tenantform.webhook_outbox`
//!   (`run.created`, `run.needs_approval`, `run.applied`, `run.errored`,
//!   `run.rolled_back`, `run.drift_detected`, `request.created`,
//!   `request.needs_approval`, `request.active`, `request.rejected`, `request.failed`,
//!   `request.rolled_back`), whichever process moved the run or request. An event older
//!   than [`STALE_AFTER`] when a dispatcher first sees it is not sent (the platform ran
//!   without webhooks, or without a server, for a while).
//! - Each event becomes one delivery per webhook whose `events` filter takes it
//!   (`tenantform.webhook_deliveries`, unique per event and URL), sent by one
//!   dispatcher at a time (claimed `FOR UPDATE SKIP LOCKED`, so any number of `serve`
//!   processes share the work), retried with exponential backoff ([`backoff`]) until a
//!   2xx answer or [`MAX_ATTEMPTS`] attempts; every attempt is recorded
//!   (`tenantform.webhook_attempts`: attempt, status code or error, time).
//! - Each POST carries `X-Tenantform-Signature: t=<unix seconds>,v1=<hex>`, the
//!   HMAC-SHA256 of `<t>.<body>` under the webhook's secret (the variable `secret_env`
//!   names), `X-Tenantform-Event` and `X-Tenantform-Delivery`. The secret is never
//!   logged; an error names the URL's host only.

use std::time::Duration;

use aws_lc_rs::hmac;
use chrono::Utc;
use serde_json::{Value, json};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::connect::postgres::{PostgresConfig, db_error, migrate};
use crate::spec::WebhookSettings;
use crate::workflow::registry::SCHEMA;

/// Attempts of one delivery before it is given up (`failed`).
pub const MAX_ATTEMPTS: i32 = 6;
/// Events this old when first seen are recorded as not sent.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);
/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a dispatcher looks for new events and due retries.
const TICK: Duration = Duration::from_millis(500);

/// Migrations of the webhook tables and triggers, tracked in
/// `tenantform.webhook_migrations`. They need the runs and registry tables: open a
/// `RunQueue` and a `Registry` first. Never edit one that shipped: add another.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE tenantform.webhook_outbox (
    id bigserial PRIMARY KEY,
    event text NOT NULL,
    payload jsonb NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Set once the event became its deliveries (or was found stale).
    fanned_out_at timestamptz
);
CREATE INDEX webhook_outbox_waiting ON tenantform.webhook_outbox (id) WHERE fanned_out_at IS NULL;

CREATE TABLE tenantform.webhook_deliveries (
    id bigserial PRIMARY KEY,
    outbox_id bigint NOT NULL REFERENCES tenantform.webhook_outbox (id),
    url text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (outbox_id, url)
);
CREATE INDEX webhook_deliveries_due ON tenantform.webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE tenantform.webhook_attempts (
    delivery_id bigint NOT NULL REFERENCES tenantform.webhook_deliveries (id),
    attempt integer NOT NULL,
    -- The answer's status, or NULL with `error` when there was none.
    status_code integer,
    error text,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (delivery_id, attempt)
);

CREATE FUNCTION tenantform.webhook_runs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE kind text;
BEGIN
    IF TG_OP = 'INSERT' THEN kind := 'run.created';
    ELSIF NEW.status = OLD.status THEN RETURN NULL;
    ELSIF NEW.status = 'planned' AND NOT NEW.auto_apply THEN kind := 'run.needs_approval';
    ELSIF NEW.status = 'applied' THEN kind := 'run.applied';
    ELSIF NEW.status = 'errored' THEN kind := 'run.errored';
    ELSIF NEW.status = 'rolled_back' THEN kind := 'run.rolled_back';
    ELSIF NEW.status = 'planned_and_finished' AND NEW.operation = 'drift'
        AND NEW.result -> 'drift' ->> 'has_drift' = 'true' THEN kind := 'run.drift_detected';
    ELSE RETURN NULL;
    END IF;
    INSERT INTO tenantform.webhook_outbox (event, payload) VALUES (kind, jsonb_build_object(
        'run', jsonb_build_object('id', NEW.id, 'tenant', NEW.tenant, 'operation', NEW.operation,
            'status', NEW.status, 'requested_by', NEW.requested_by, 'request_id', NEW.request_id,
            'error', NEW.error)));
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_runs AFTER INSERT OR UPDATE OF status ON tenantform.runs
    FOR EACH ROW EXECUTE FUNCTION tenantform.webhook_runs();

CREATE FUNCTION tenantform.webhook_requests() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE kinds text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        kinds := ARRAY['request.created'];
        IF jsonb_array_length(NEW.required_approvals) > 0 THEN
            kinds := kinds || 'request.needs_approval';
        END IF;
    ELSIF NEW.status = OLD.status THEN RETURN NULL;
    ELSIF NEW.status IN ('active', 'rejected', 'failed', 'rolled_back') THEN
        kinds := ARRAY['request.' || NEW.status];
    ELSE RETURN NULL;
    END IF;
    INSERT INTO tenantform.webhook_outbox (event, payload)
    SELECT k, jsonb_build_object('request', jsonb_build_object('id', NEW.id, 'name', NEW.name,
            'tier', NEW.tier, 'region', NEW.region, 'status', NEW.status,
            'requester', NEW.requester, 'failure_step', NEW.failure_step,
            'required_approvals', NEW.required_approvals))
    FROM unnest(kinds) AS k;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_requests AFTER INSERT OR UPDATE OF status ON tenantform.requests
    FOR EACH ROW EXECUTE FUNCTION tenantform.webhook_requests();
"#,
)];

/// A webhook could not be set up or its tables used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A webhook's `secret_env` variable is unset or empty; the server was not started.
    #[error(
        "webhook {index} of platform.toml ([[webhooks]] url {host}): the variable {var} named by secret_env is not set or empty; set it to the webhook's shared secret"
    )]
    MissingSecret {
        index: usize,
        host: String,
        var: String,
    },
    /// The webhook tables cannot be read or written.
    #[error("the webhook tables cannot be used: {0}")]
    Database(String),
    /// Webhook delivery cannot be started.
    #[error("webhooks cannot be started: {0}")]
    Setup(String),
}

/// A webhook ready to send: its settings and its secret.
#[derive(Clone)]
pub struct Webhook {
    settings: WebhookSettings,
    key: hmac::Key,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &host_of(&self.settings.url))
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// The webhooks of `settings`, each with the secret its `secret_env` holds in
    /// `environment`.
    pub fn from_settings(
        settings: &[WebhookSettings],
        environment: &crate::Environment,
    ) -> Result<Vec<Webhook>, WebhookError> {
        settings
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let Some(secret) = environment.get(&s.secret_env) else {
                    return Err(WebhookError::MissingSecret {
                        index,
                        host: host_of(&s.url),
                        var: s.secret_env.clone(),
                    });
                };
                Ok(Webhook {
                    settings: s.clone(),
                    key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
                })
            })
            .collect()
    }

    fn wants(&self, event: &str) -> bool {
        self.settings.events.is_empty() || self.settings.events.iter().any(|e| e == event)
    }
}

/// The `X-Tenantform-Signature` value of `body` sent at `timestamp` (unix seconds) under
/// `secret`: `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`. A receiver
/// recomputes it with its copy of the secret and compares in constant time.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), timestamp, body)
}

fn sign(key: &hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Whether `header` (an `X-Tenantform-Signature`) signs `body` under `secret`.
pub fn verify_signature(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Some(tag) = (0..v1.len())
        .step_by(2)
        .map(|i| {
            v1.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut signed = t.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), &signed, &tag).is_ok()
}

/// The wait before attempt `attempt + 1` after `attempt` failed: 1 s, 2 s, 4 s, ...,
/// at most 5 minutes.
pub fn backoff(attempt: i32) -> Duration {
    Duration::from_secs(1u64 << attempt.clamp(1, 9).saturating_sub(1)).min(Duration::from_secs(300))
}

/// The host of `url`, for messages: never the path or query, where tokens hide.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "(not a URL)".to_owned())
}

fn pg(e: tokio_postgres::Error) -> WebhookError {
    WebhookError::Database(db_error(&e).to_string())
}

/// Creates or migrates the webhook tables and triggers (the runs and registry tables
/// must exist).
pub async fn migrate_tables(client: &mut Client) -> Result<(), WebhookError> {
    migrate(client, SCHEMA, "webhook_migrations", MIGRATIONS)
        .await
        .map_err(|e| WebhookError::Database(e.to_string()))
}

/// Starts sending the events of the platform `config` serves to its `[[webhooks]]` in
/// the background (nothing when it has none): checks every secret is set, creates the
/// tables and triggers, and returns the dispatcher (cancel `stop` to end it).
pub async fn start(
    config: &super::ApiConfig,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, WebhookError> {
    let specs = crate::spec::Specs::load(&config.specs_dir)
        .map_err(|e| WebhookError::Setup(e.to_string()))?;
    if specs.platform.webhooks.is_empty() {
        return Ok(None);
    }
    let hooks = Webhook::from_settings(&specs.platform.webhooks, &config.runs.environment)?;
    // The triggers go on the runs and registry tables: those first.
    crate::runs::RunQueue::open(&config.pg)
        .await
        .map_err(|e| WebhookError::Setup(e.to_string()))?;
    crate::workflow::registry::Registry::open(&config.pg)
        .await
        .map_err(|e| WebhookError::Setup(e.to_string()))?;
    let mut client = config
        .pg
        .connect_as("tenantform webhooks")
        .await
        .map_err(|e| WebhookError::Database(e.to_string()))?;
    migrate_tables(&mut client).await?;
    tracing::info!(webhooks = hooks.len(), "sending webhooks");
    Ok(Some(tokio::spawn(dispatch(config.pg.clone(), hooks, stop))))
}

/// Sends the platform's events to `hooks` until `stop` is cancelled.
pub async fn dispatch(pg: PostgresConfig, hooks: Vec<Webhook>, stop: CancellationToken) {
    let http = match reqwest::Client::builder().timeout(POST_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; no webhook is sent");
            return;
        }
    };
    let mut client: Option<Client> = None;
    while !stop.is_cancelled() {
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match pg.connect_as("tenantform webhooks").await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: the platform database does not answer; retrying");
                    None
                }
            };
        }
        if let Some(c) = client.as_mut() {
            let round = async {
                fan_out(c, &hooks).await?;
                while deliver_due(c, &hooks, &http).await? > 0 {}
                Ok::<_, WebhookError>(())
            };
            if let Err(e) = round.await {
                tracing::warn!(error = %e, "webhooks: a dispatch round failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = stop.cancelled() => {}
        }
    }
}

/// Turns new outbox events into deliveries, one per webhook that wants the event.
async fn fan_out(client: &mut Client, hooks: &[Webhook]) -> Result<(), WebhookError> {
    let tx = client.transaction().await.map_err(pg)?;
    let rows = tx
        .query(
            &format!(
                "SELECT id, event, at < clock_timestamp() - make_interval(secs => $1) AS stale \
                 FROM {SCHEMA}.webhook_outbox WHERE fanned_out_at IS NULL \
                 ORDER BY id LIMIT 200 FOR UPDATE SKIP LOCKED"
            ),
            &[&(STALE_AFTER.as_secs() as f64)],
        )
        .await
        .map_err(pg)?;
    for row in &rows {
        let (id, event, stale): (i64, String, bool) = (row.get(0), row.get(1), row.get(2));
        for hook in hooks.iter().filter(|h| !stale && h.wants(&event)) {
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA}.webhook_deliveries (outbox_id, url) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING"
                ),
                &[&id, &hook.settings.url],
            )
            .await
            .map_err(pg)?;
        }
        tx.execute(
            &format!(
                "UPDATE {SCHEMA}.webhook_outbox SET fanned_out_at = clock_timestamp() WHERE id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)
}

/// Sends the deliveries that are due (at most a batch); returns how many were sent.
async fn deliver_due(
    client: &mut Client,
    hooks: &[Webhook],
    http: &reqwest::Client,
) -> Result<usize, WebhookError> {
    // Claimed for the time a POST may take: another dispatcher takes it after that.
    let claimed = client
        .query(
            &format!(
                "UPDATE {SCHEMA}.webhook_deliveries d SET attempts = d.attempts + 1, \
                   next_attempt_at = clock_timestamp() + make_interval(secs => $1) \
                 FROM {SCHEMA}.webhook_outbox o \
                 WHERE o.id = d.outbox_id AND d.id IN ( \
                   SELECT id FROM {SCHEMA}.webhook_deliveries \
                   WHERE status = 'pending' AND next_attempt_at <= clock_timestamp() \
                   ORDER BY next_attempt_at, id LIMIT 20 FOR UPDATE SKIP LOCKED) \
                 RETURNING d.id, d.url, d.attempts, o.id, o.event, o.payload, o.at"
            ),
            &[&(POST_TIMEOUT.as_secs() as f64 * 3.0)],
        )
        .await
        .map_err(pg)?;
    for row in &claimed {
        let (id, url, attempt): (i64, String, i32) = (row.get(0), row.get(1), row.get(2));
        let (event_id, event, payload, at): (i64, String, Value, chrono::DateTime<Utc>) =
            (row.get(3), row.get(4), row.get(5), row.get(6));
        let Some(hook) = hooks.iter().find(|h| h.settings.url == url) else {
            // A webhook removed from platform.toml since: nothing to send it with.
            record(
                client,
                id,
                attempt,
                None,
                Some("the webhook is no longer configured"),
                "failed",
                None,
            )
            .await?;
            continue;
        };
        let body =
            json!({"id": event_id, "type": event, "created_at": at, "data": payload}).to_string();
        let timestamp = Utc::now().timestamp();
        let sent = http
            .post(&url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("tenantform/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-tenantform-event", &event)
            .header("x-tenantform-delivery", id.to_string())
            .header(
                "x-tenantform-signature",
                sign(&hook.key, timestamp, body.as_bytes()),
            )
            .body(body)
            .send()
            .await;
        let (code, error) = match sent {
            Ok(r) => (Some(i32::from(r.status().as_u16())), None),
            Err(e) => (None, Some(e.without_url().to_string())),
        };
        let delivered = code.is_some_and(|c| (200..300).contains(&c));
        let (status, retry_in) = if delivered {
            ("delivered", None)
        } else if attempt >= MAX_ATTEMPTS {
            ("failed", None)
        } else {
            ("pending", Some(backoff(attempt)))
        };
        tracing::info!(delivery = id, event = %event, host = %host_of(&url), attempt, code, status, "webhook attempt");
        record(
            client,
            id,
            attempt,
            code,
            error.as_deref(),
            status,
            retry_in,
        )
        .await?;
    }
    Ok(claimed.len())
}

/// Records one attempt and where the delivery stands after it.
async fn record(
    client: &mut Client,
    id: i64,
    attempt: i32,
    code: Option<i32>,
    error: Option<&str>,
    status: &str,
    retry_in: Option<Duration>,
) -> Result<(), WebhookError> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute(
        &format!(
            "INSERT INTO {SCHEMA}.webhook_attempts (delivery_id, attempt, status_code, error) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
        ),
        &[&id, &attempt, &code, &error],
    )
    .await
    .map_err(pg)?;
    tx.execute(
        &format!(
            "UPDATE {SCHEMA}.webhook_deliveries SET status = $2, \
               next_attempt_at = clock_timestamp() + make_interval(secs => $3) WHERE id = $1"
        ),
        &[&id, &status, &retry_in.unwrap_or_default().as_secs_f64()],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_under_its_secret_only() {
        let body = br#"{"type":"run.applied"}"#;
        let header = signature(b"s3cret", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="), "{header}");
        assert!(verify_signature(b"s3cret", &header, body));
        assert!(!verify_signature(b"another", &header, body));
        assert!(!verify_signature(b"s3cret", &header, b"{}"));
        assert!(!verify_signature(b"s3cret", "t=1,v1=zz", body));
        assert!(!verify_signature(b"s3cret", "", body));
    }

    #[test]
    fn the_backoff_doubles_and_is_bounded() {
        let waits: Vec<u64> = (1..=10).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256]);
        assert!(backoff(i32::MAX) <= Duration::from_secs(300));
    }
}
