//! The tenant's vector namespace: where its embeddings live, readable by its role only.
//! The platform's `[vector]` section says which backend serves it and the shape of
//! the vectors; the resource stays the same whichever backend serves it.

use serde_json::json;

use crate::resource::{Resource, ResourceAddress, ResourceType};
use crate::spec::{TenantSpec, VectorBackend, VectorSettings};

/// What the tenant's role may do with its embeddings.
pub const EMBEDDING_PRIVILEGES: &[&str] = &["DELETE", "INSERT", "SELECT", "UPDATE"];

/// `schema`, `role` and `schema_grant` are the tenant's PostgreSQL schema, login role
/// and its USAGE on the schema: pgvector keeps the namespace in the schema and grants
/// it to the role.
///
/// The grant is a resource of its own, as for the documents table: replacing the role
/// (a new password, say) then re-grants the table instead of replacing it, which
/// would drop every stored embedding.
pub fn resources(
    tenant: &TenantSpec,
    settings: &VectorSettings,
    schema: &Resource,
    role: &Resource,
    schema_grant: &Resource,
) -> Vec<Resource> {
    let name_of = |r: &Resource| r.attributes.get("name").cloned().unwrap_or(json!(null));
    let namespace = Resource::new(ResourceAddress::new(
        &tenant.id,
        ResourceType::VectorNamespace,
        "embeddings",
    ))
    .attr("backend", settings.backend.as_str())
    .attr("schema", name_of(schema))
    .attr("table", settings.table.clone())
    .attr("dimension", settings.dimension)
    .attr("distance", settings.distance.as_str())
    .attr("hnsw_m", settings.hnsw_m)
    .attr("hnsw_ef_construction", settings.hnsw_ef_construction)
    .depends_on(schema);
    match settings.backend {
        VectorBackend::Pgvector => {
            let grant = Resource::new(ResourceAddress::new(
                &tenant.id,
                ResourceType::PostgresTableGrant,
                "embeddings",
            ))
            .attr("schema", name_of(schema))
            .attr("table", settings.table.clone())
            .attr("role", name_of(role))
            .attr("privileges", json!(EMBEDDING_PRIVILEGES))
            .depends_on(&namespace)
            .depends_on(schema_grant);
            vec![namespace, grant]
        }
    }
}
