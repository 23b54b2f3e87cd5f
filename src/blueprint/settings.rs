//! The tenant's settings from the tier catalog: feature flags, rate limits, the LLM
//! and its token budget, SLA. The platform's services read them from one registry
//! table; a tier change is an in-place update of this one resource (plus whatever
//! else the tier sizes).

use serde_json::json;

use crate::resource::{Resource, ResourceAddress, ResourceType};
use crate::spec::{TenantSpec, Tier};

/// The tenant's row of settings, from its tier.
pub fn resources(tenant: &TenantSpec, tier: &Tier) -> Vec<Resource> {
    let settings = Resource::new(ResourceAddress::new(
        &tenant.id,
        ResourceType::TenantSettings,
        "main",
    ))
    .attr("tenant", tenant.id.as_str())
    .attr("tier", tenant.tier.clone())
    .attr("sla_latency_ms", tier.sla_latency_ms)
    .attr(
        "features",
        json!({
            "advanced_search": tier.features.advanced_search,
            "realtime_indexing": tier.features.realtime_indexing,
            "custom_models": tier.features.custom_models,
        }),
    )
    .attr("queries_per_minute", tier.rate_limits.queries_per_minute)
    .attr("documents_per_month", tier.rate_limits.documents_per_month)
    .attr("llm_model", tier.llm.model.clone())
    .attr("llm_max_tokens", tier.llm.max_tokens)
    .attr("demo_documents", tier.demo_documents)
    .attr("vector_replicas", tier.vector_replicas)
    .attr("dedicated_cache", tier.dedicated_cache);
    vec![settings]
}
