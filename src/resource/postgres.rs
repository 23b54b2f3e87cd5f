//! PostgreSQL resources: the tenant's schema, login role, grants on the schema and
//! its tables, tables, and row-level security, and the shape of a table column in the
//! `columns` attribute.

use serde_json::{Value, json};

use super::{AttributeSchema as A, ResourceType, Schema};

/// The tenant's schema (`postgres_schema`).
pub static SCHEMA: Schema = Schema {
    resource_type: ResourceType::PostgresSchema,
    attributes: &[A::force_new("name"), A::updatable("comment")],
    replace_note: "a schema's name is its identity",
};

/// The tenant's login role (`postgres_role`); its password is generated and sensitive.
pub static ROLE: Schema = Schema {
    resource_type: ResourceType::PostgresRole,
    attributes: &[
        A::force_new("name"),
        A::updatable("login"),
        A::updatable("superuser"),
        A::updatable("create_db"),
        A::updatable("create_role"),
        A::updatable("bypass_rls"),
        A::updatable("inherit"),
        A::updatable("connection_limit"),
        A::computed("password").sensitive().unreadable().ephemeral(),
        A::computed("password_version").unreadable(),
    ],
    replace_note: "a role's name is its identity",
};

/// A role's privileges on a schema (`postgres_schema_grant`).
pub static SCHEMA_GRANT: Schema = Schema {
    resource_type: ResourceType::PostgresSchemaGrant,
    attributes: &[
        A::force_new("schema"),
        A::force_new("role"),
        A::updatable("privileges").as_set(),
    ],
    replace_note: "a grant belongs to one schema and one role",
};

/// A table in the tenant's schema (`postgres_table`).
pub static TABLE: Schema = Schema {
    resource_type: ResourceType::PostgresTable,
    attributes: &[
        A::force_new("schema"),
        A::force_new("name"),
        A::updatable("columns").as_set(),
        A::updatable("primary_key"),
    ],
    replace_note: "a table cannot move to another schema or name in place",
};

/// A row-level security policy on a table (`postgres_row_security`).
pub static ROW_SECURITY: Schema = Schema {
    resource_type: ResourceType::PostgresRowSecurity,
    attributes: &[
        A::force_new("schema"),
        A::force_new("table"),
        A::force_new("policy"),
        A::force_new("command"),
        A::updatable("enabled"),
        A::updatable("forced"),
        A::updatable("roles").as_set(),
        A::updatable("using"),
        A::updatable("with_check"),
    ],
    replace_note: "a policy's table, name and command cannot change in place",
};

/// A role's privileges on a table (`postgres_table_grant`).
pub static TABLE_GRANT: Schema = Schema {
    resource_type: ResourceType::PostgresTableGrant,
    attributes: &[
        A::force_new("schema"),
        A::force_new("table"),
        A::force_new("role"),
        A::updatable("privileges").as_set(),
    ],
    replace_note: "a grant belongs to one table and one role",
};

/// A column as the `columns` attribute holds it: PostgreSQL's own type name
/// (`format_type`), its deparsed default, and `identity` as `always` or `by default`.
pub fn column_json(
    name: &str,
    data_type: &str,
    not_null: bool,
    default: Option<&str>,
    identity: Option<&str>,
) -> Value {
    json!({
        "name": name,
        "type": data_type,
        "not_null": not_null,
        "default": default,
        "identity": identity,
    })
}
