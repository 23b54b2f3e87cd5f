//! Grafana dashboards: one per tenant, as a file for Grafana's file provisioning and,
//! with a `grafana_url`, through Grafana's HTTP API.

use super::{AttributeSchema as A, ResourceType, Schema};

/// A tenant's Grafana dashboard (`grafana_dashboard`).
pub static GRAFANA_DASHBOARD: Schema = Schema {
    resource_type: ResourceType::GrafanaDashboard,
    attributes: &[
        A::force_new("uid"),
        A::force_new("file"),
        A::updatable("grafana_url"),
        A::updatable("title"),
        A::updatable("tenant"),
        A::updatable("tags").as_set(),
        A::updatable("datasource_uid"),
        A::updatable("sla_latency_ms"),
        A::updatable("panels"),
    ],
    replace_note: "a dashboard's uid and file are its identity",
};
