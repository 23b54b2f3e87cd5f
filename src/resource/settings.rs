//! Tenant settings: the tier's features, rate limits, LLM and SLA as one row of the
//! platform's registry table.

use super::{AttributeSchema as A, ResourceType, Schema};

/// The tenant's row of settings (`tenant_settings`).
pub static TENANT_SETTINGS: Schema = Schema {
    resource_type: ResourceType::TenantSettings,
    attributes: &[
        A::force_new("tenant"),
        A::updatable("tier"),
        A::updatable("sla_latency_ms"),
        A::updatable("features"),
        A::updatable("queries_per_minute"),
        A::updatable("documents_per_month"),
        A::updatable("llm_model"),
        A::updatable("llm_max_tokens"),
        A::updatable("demo_documents"),
        A::updatable("vector_replicas"),
        A::updatable("dedicated_cache"),
    ],
    replace_note: "the settings belong to one tenant",
};
