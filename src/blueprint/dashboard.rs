//! The tenant's monitoring dashboard: a Grafana dashboard whose panels all filter on
//! the tenant's label. The provider renders the dashboard JSON from these attributes.

use serde_json::json;

use crate::resource::{Resource, ResourceAddress, ResourceType};
use crate::spec::{DashboardSettings, TenantSpec, Tier};

/// The panels every tenant dashboard has, in order.
pub const PANELS: &[&str] = &[
    "Query latency p95",
    "Query rate",
    "Error rate",
    "Document count",
];

/// The tenant's Grafana dashboard, with the [`PANELS`].
pub fn resources(tenant: &TenantSpec, tier: &Tier, settings: &DashboardSettings) -> Vec<Resource> {
    let id = &tenant.id;
    let uid = format!("tenant-{id}");
    let file = settings.resolved_dir.join(format!("{uid}.json"));
    let dashboard = Resource::new(ResourceAddress::new(
        id,
        ResourceType::GrafanaDashboard,
        "main",
    ))
    .attr("uid", uid)
    .attr("file", file.to_string_lossy().into_owned())
    .attr("grafana_url", json!(settings.grafana_url))
    .attr("title", format!("Tenant {} ({id})", tenant.name))
    .attr("tenant", id.as_str())
    .attr(
        "tags",
        json!([
            "tenantform",
            format!("tenant:{id}"),
            format!("tier:{}", tenant.tier)
        ]),
    )
    .attr("datasource_uid", settings.datasource_uid.clone())
    .attr("sla_latency_ms", tier.sla_latency_ms)
    .attr("panels", json!(PANELS));
    vec![dashboard]
}
