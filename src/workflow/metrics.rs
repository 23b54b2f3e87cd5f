//! Metrics in the Prometheus text format, computed from the registry at every scrape.
//!
//! Provisioning runs in many short-lived processes (a CLI call, the HTTP server), so
//! the metrics are not counters kept in one process's memory: each scrape reads the
//! registry, so every process serves the same, complete figures, and a restart loses
//! nothing.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as MetricsRegistry;

use super::WorkflowError;
use super::registry::{Registry, SCHEMA};
use super::status::RequestStatus;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn duration_histogram() -> Histogram {
    // Seconds: a provisioning takes seconds here, minutes at worst.
    Histogram::new([0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0])
}

fn check_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
}

fn pg(e: tokio_postgres::Error) -> WorkflowError {
    WorkflowError::Registry(e.to_string())
}

/// The metrics text of the whole platform.
pub async fn render(registry: &Registry) -> Result<String, WorkflowError> {
    let db = registry.client();
    let mut out = MetricsRegistry::default();

    let requests = Family::<Labels, Gauge>::default();
    for s in RequestStatus::ALL {
        requests
            .get_or_create(&labels(&[("status", s.as_str())]))
            .set(0);
    }
    for row in db
        .query(
            &format!("SELECT status, count(*) FROM {SCHEMA}.requests GROUP BY status"),
            &[],
        )
        .await
        .map_err(pg)?
    {
        let status: String = row.get(0);
        let n: i64 = row.get(1);
        requests
            .get_or_create(&labels(&[("status", &status)]))
            .set(n);
    }
    out.register("tenantform_requests", "Tenant requests by status", requests);

    // Each provisioning attempt: from its move to `provisioning` to where it ended.
    let durations =
        Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
    let successes = Family::<Labels, Counter>::default();
    let failures = Family::<Labels, Counter>::default();
    let rows = db
        .query(
            &format!(
                "SELECT r.tier, r.region, e.to_status, e.detail->>'failed_step', \
                        extract(epoch FROM e.at - s.at)::float8 \
                 FROM {SCHEMA}.audit e \
                 JOIN {SCHEMA}.requests r ON r.id = e.request_id \
                 JOIN LATERAL (SELECT at FROM {SCHEMA}.audit s WHERE s.request_id = e.request_id \
                               AND s.to_status = 'provisioning' AND s.seq < e.seq ORDER BY s.seq DESC LIMIT 1) s ON true \
                 WHERE e.action = 'status' AND e.to_status IN ('active', 'rolled_back', 'failed')"
            ),
            &[],
        )
        .await
        .map_err(pg)?;
    for row in rows {
        let (tier, region, to): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let step: Option<String> = row.get(3);
        let seconds: f64 = row.get(4);
        durations
            .get_or_create(&labels(&[
                ("tier", &tier),
                ("region", &region),
                ("outcome", &to),
            ]))
            .observe(seconds);
        if to == "active" {
            successes.get_or_create(&labels(&[("tier", &tier)])).inc();
        } else {
            let step = step.unwrap_or_else(|| "unknown".into());
            failures
                .get_or_create(&labels(&[("tier", &tier), ("step", &step)]))
                .inc();
        }
    }
    out.register(
        "tenantform_provisioning_duration_seconds",
        "Time from the start of provisioning to activation or failure",
        durations,
    );
    out.register(
        "tenantform_provisioning_successes",
        "Provisionings that ended with an active tenant",
        successes,
    );
    out.register(
        "tenantform_provisioning_failures",
        "Provisionings that failed, by tier and the step that failed",
        failures,
    );

    let checks =
        Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(check_histogram);
    for row in db
        .query(
            &format!("SELECT name, duration_ms FROM {SCHEMA}.validation_checks"),
            &[],
        )
        .await
        .map_err(pg)?
    {
        let name: String = row.get(0);
        let ms: i64 = row.get(1);
        checks
            .get_or_create(&labels(&[("check", &name)]))
            .observe(ms as f64 / 1000.0);
    }
    out.register(
        "tenantform_validation_check_duration_seconds",
        "Duration of validation checks",
        checks,
    );

    // One series per tenant, so that a tenant's presence can be checked and joined.
    let info = Family::<Labels, Gauge>::default();
    let passed = Family::<Labels, Gauge>::default();
    for row in db
        .query(
            &format!("SELECT id, tier, region, status FROM {SCHEMA}.requests"),
            &[],
        )
        .await
        .map_err(pg)?
    {
        let (id, tier, region, status): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        info.get_or_create(&labels(&[
            ("tenant", &id),
            ("tier", &tier),
            ("region", &region),
            ("status", &status),
        ]))
        .set(1);
    }
    for row in db
        .query(
            &format!(
                "SELECT DISTINCT ON (request_id, name) request_id, name, passed \
                 FROM {SCHEMA}.validation_checks ORDER BY request_id, name, checked_at DESC"
            ),
            &[],
        )
        .await
        .map_err(pg)?
    {
        let (id, name, ok): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        passed
            .get_or_create(&labels(&[("tenant", &id), ("check", &name)]))
            .set(i64::from(ok));
    }
    out.register(
        "tenantform_tenant_info",
        "One series per tenant request",
        info,
    );
    out.register(
        "tenantform_tenant_validation_check_passed",
        "Latest result of each validation check per tenant (1 passed, 0 failed)",
        passed,
    );

    let mut text = String::new();
    encode(&mut text, &out)
        .map_err(|e| WorkflowError::Invalid(format!("metrics encoding: {e}")))?;
    Ok(text)
}
