//! The tenant's PostgreSQL part: a schema, a login role, grants on that schema only,
//! a `documents` table with row-level security enabled and forced.

use serde_json::json;

use crate::resource::postgres::column_json;
use crate::resource::{Resource, ResourceAddress, ResourceType};
use crate::spec::{Naming, TenantSpec, Tier, render_name};

/// The documents table's columns, written as PostgreSQL reads them back
/// (`format_type` names, deparsed defaults), so that a clean apply shows no diff.
fn document_columns(tenant: &TenantSpec) -> serde_json::Value {
    json!([
        column_json("id", "bigint", true, None, Some("always")),
        column_json(
            "tenant_id",
            "text",
            true,
            Some(&format!("'{}'::text", tenant.id)),
            None
        ),
        column_json("title", "text", false, None, None),
        column_json("content", "text", true, None, None),
        column_json("metadata", "jsonb", true, Some("'{}'::jsonb"), None),
        column_json(
            "created_at",
            "timestamp with time zone",
            true,
            Some("now()"),
            None
        ),
    ])
}

/// The privileges the tenant's role gets on its documents table.
pub const DOCUMENT_PRIVILEGES: &[&str] = &["DELETE", "INSERT", "SELECT", "UPDATE"];

/// The tenant's schema, login role, documents table, grants and row-level security.
pub fn resources(tenant: &TenantSpec, tier: &Tier, naming: &Naming) -> Vec<Resource> {
    let id = &tenant.id;
    let schema_name = render_name(&naming.postgres_schema, id);
    let role_name = render_name(&naming.postgres_role, id);
    let addr = |t, n: &str| ResourceAddress::new(id, t, n);

    let schema = Resource::new(addr(ResourceType::PostgresSchema, "main"))
        .attr("name", schema_name.clone())
        .attr(
            "comment",
            format!("tenant {id} ({}), managed by tenantform", tenant.name),
        );

    let role = Resource::new(addr(ResourceType::PostgresRole, "app"))
        .attr("name", role_name.clone())
        .attr("login", true)
        .attr("superuser", false)
        .attr("create_db", false)
        .attr("create_role", false)
        .attr("bypass_rls", false)
        .attr("inherit", false)
        .attr("connection_limit", tier.postgres_connection_limit);

    let schema_grant = Resource::new(addr(ResourceType::PostgresSchemaGrant, "app"))
        .attr("schema", schema_name.clone())
        .attr("role", role_name.clone())
        .attr("privileges", json!(["USAGE"]))
        .depends_on(&schema)
        .depends_on(&role);

    let table = Resource::new(addr(ResourceType::PostgresTable, "documents"))
        .attr("schema", schema_name.clone())
        .attr("name", "documents")
        .attr("columns", document_columns(tenant))
        .attr("primary_key", json!(["id"]))
        .depends_on(&schema);

    // PostgreSQL deparses a policy expression into this exact form; the blueprint
    // states it the same way so that a read-back compares equal.
    let tenant_filter = format!("(tenant_id = '{id}'::text)");
    let row_security = Resource::new(addr(ResourceType::PostgresRowSecurity, "documents"))
        .attr("schema", schema_name.clone())
        .attr("table", "documents")
        .attr("policy", "tenant_isolation")
        .attr("command", "ALL")
        .attr("enabled", true)
        .attr("forced", true)
        .attr("roles", json!([role_name.clone()]))
        .attr("using", tenant_filter.clone())
        .attr("with_check", tenant_filter)
        .depends_on(&table)
        .depends_on(&role);

    // The table is granted only once row-level security is on, so that there is no
    // moment in which the role could read rows unfiltered. It also keeps the two
    // catalog updates of the same table apart (concurrent ones fail in PostgreSQL).
    let table_grant = Resource::new(addr(ResourceType::PostgresTableGrant, "documents"))
        .attr("schema", schema_name)
        .attr("table", "documents")
        .attr("role", role_name)
        .attr("privileges", json!(DOCUMENT_PRIVILEGES))
        .depends_on(&row_security)
        .depends_on(&schema_grant);

    vec![schema, role, schema_grant, table, row_security, table_grant]
}
