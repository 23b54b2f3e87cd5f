//! The PostgreSQL catalog of many tenants read at once: what
//! [`super::postgres::PostgresProvider`] answers for a batch of schemas, roles,
//! grants, tables and row-level security, in eight queries whatever the number of
//! tenants, instead of one to three queries per resource.
//!
//! Each query is the one the per-resource read makes, asked of every schema (or
//! role) of the batch at once with `= ANY($1)`, and sorted the same way; the answer
//! for a resource is built by the same functions as the per-resource read's, so the
//! two ways give the same attributes.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::postgres::{
    PostgresProvider, column_of, grant_attributes, role_attributes, row_security_attributes,
    schema_attributes, table_attributes,
};
use super::{ProviderError, ReadRequest, ReadResult};
use crate::resource::{Attributes, ResourceType, required_str};

type Pair = (String, String);
type Triple = (String, String, String);

/// What the catalog holds for the schemas and roles of one batch.
#[derive(Default)]
pub(crate) struct Catalog {
    /// Schema -> comment.
    schemas: HashMap<String, String>,
    /// Role -> its `pg_roles` row.
    roles: HashMap<String, tokio_postgres::Row>,
    /// (schema, role) -> privileges on the schema, sorted.
    schema_privileges: HashMap<Pair, Vec<String>>,
    /// (schema, relation, role) -> privileges on the relation, sorted.
    table_privileges: HashMap<Triple, Vec<String>>,
    /// (schema, relation) -> (is a table, RLS enabled, RLS forced), every relation.
    relations: HashMap<Pair, (bool, bool, bool)>,
    /// (schema, table) -> its columns in order.
    columns: HashMap<Pair, Vec<Value>>,
    /// (schema, table) -> its primary key's columns in key order.
    primary_keys: HashMap<Pair, Vec<String>>,
    /// (schema, table, policy) -> its `pg_policies` row.
    policies: HashMap<Triple, tokio_postgres::Row>,
}

fn text(row: &tokio_postgres::Row, i: usize) -> String {
    row.get(i)
}

impl Catalog {
    /// Reads what `reads` need from the catalog: every schema and role they name.
    pub(crate) async fn read(
        pg: &PostgresProvider,
        reads: &[ReadRequest<'_>],
    ) -> Result<Catalog, ProviderError> {
        let mut schemas = BTreeSet::new();
        let mut roles = BTreeSet::new();
        for (address, current) in reads {
            match address.resource_type {
                ResourceType::PostgresSchema => {
                    schemas.insert(required_str(current, "name")?.to_owned());
                }
                ResourceType::PostgresRole => {
                    roles.insert(required_str(current, "name")?.to_owned());
                }
                _ => {
                    schemas.insert(required_str(current, "schema")?.to_owned());
                }
            }
        }
        let schemas: Vec<String> = schemas.into_iter().collect();
        let roles: Vec<String> = roles.into_iter().collect();
        let (namespaces, role_rows, schema_acl, table_acl, relations, columns, keys, policies) = tokio::try_join!(
            pg.query_in(
                "SELECT n.nspname::text, coalesce(obj_description(n.oid, 'pg_namespace'), '') \
                 FROM pg_namespace n WHERE n.nspname::text = ANY($1)",
                &schemas,
            ),
            pg.query_in(
                "SELECT rolname::text, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, \
                        rolinherit, rolconnlimit \
                 FROM pg_roles WHERE rolname::text = ANY($1)",
                &roles,
            ),
            pg.query_in(
                "SELECT n.nspname::text, r.rolname::text, a.privilege_type \
                 FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a \
                 JOIN pg_roles r ON r.oid = a.grantee \
                 WHERE n.nspname::text = ANY($1) ORDER BY 1, 2, 3",
                &schemas,
            ),
            pg.query_in(
                "SELECT n.nspname::text, c.relname::text, r.rolname::text, a.privilege_type \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee \
                 WHERE n.nspname::text = ANY($1) ORDER BY 1, 2, 3, 4",
                &schemas,
            ),
            pg.query_in(
                "SELECT n.nspname::text, c.relname::text, c.relkind IN ('r', 'p'), \
                        c.relrowsecurity, c.relforcerowsecurity \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname::text = ANY($1)",
                &schemas,
            ),
            pg.query_in(
                "SELECT n.nspname::text, c.relname::text, \
                        a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                        pg_get_expr(d.adbin, d.adrelid), a.attidentity::text \
                 FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE n.nspname::text = ANY($1) AND c.relkind IN ('r', 'p') \
                   AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY 1, 2, a.attnum",
                &schemas,
            ),
            pg.query_in(
                "SELECT n.nspname::text, c.relname::text, a.attname::text FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
                 WHERE n.nspname::text = ANY($1) AND i.indisprimary \
                 ORDER BY 1, 2, array_position(i.indkey::int2[], a.attnum)",
                &schemas,
            ),
            pg.query_in(
                "SELECT schemaname::text, tablename::text, policyname::text, \
                        cmd, roles::text[], coalesce(qual, ''), coalesce(with_check, '') \
                 FROM pg_policies WHERE schemaname::text = ANY($1)",
                &schemas,
            ),
        )?;
        let mut c = Catalog::default();
        for r in namespaces {
            c.schemas.insert(text(&r, 0), text(&r, 1));
        }
        for r in role_rows {
            c.roles.insert(text(&r, 0), r);
        }
        for r in schema_acl {
            c.schema_privileges
                .entry((text(&r, 0), text(&r, 1)))
                .or_default()
                .push(text(&r, 2));
        }
        for r in table_acl {
            c.table_privileges
                .entry((text(&r, 0), text(&r, 1), text(&r, 2)))
                .or_default()
                .push(text(&r, 3));
        }
        for r in relations {
            c.relations
                .insert((text(&r, 0), text(&r, 1)), (r.get(2), r.get(3), r.get(4)));
        }
        for r in columns {
            c.columns
                .entry((text(&r, 0), text(&r, 1)))
                .or_default()
                .push(column_of(&r, 2));
        }
        for r in keys {
            c.primary_keys
                .entry((text(&r, 0), text(&r, 1)))
                .or_default()
                .push(text(&r, 2));
        }
        for r in policies {
            c.policies
                .insert((text(&r, 0), text(&r, 1), text(&r, 2)), r);
        }
        Ok(c)
    }

    /// What a read of `t` with `current` answers, from the catalog.
    pub(crate) fn answer(&self, t: ResourceType, current: &Attributes) -> ReadResult {
        let s = |k: &str| required_str(current, k).map(str::to_owned);
        Ok(match t {
            ResourceType::PostgresSchema => {
                let name = s("name")?;
                self.schemas
                    .get(&name)
                    .map(|comment| schema_attributes(&name, comment.clone()))
            }
            ResourceType::PostgresRole => {
                let name = s("name")?;
                self.roles.get(&name).map(|r| role_attributes(&name, r, 1))
            }
            ResourceType::PostgresSchemaGrant => {
                let key = (s("schema")?, s("role")?);
                let present = self.schema_privileges.get(&key).cloned();
                grant_attributes(current, present.unwrap_or_default())
            }
            ResourceType::PostgresTableGrant => {
                let key = (s("schema")?, s("table")?, s("role")?);
                let present = self.table_privileges.get(&key).cloned();
                grant_attributes(current, present.unwrap_or_default())
            }
            ResourceType::PostgresTable => {
                let key = (s("schema")?, s("name")?);
                match self.relations.get(&key) {
                    Some((true, _, _)) => Some(table_attributes(
                        &key.0,
                        &key.1,
                        self.columns.get(&key).cloned().unwrap_or_default(),
                        self.primary_keys.get(&key).cloned().unwrap_or_default(),
                    )),
                    _ => None,
                }
            }
            ResourceType::PostgresRowSecurity => {
                let (schema, table) = (s("schema")?, s("table")?);
                let policy = s("policy")?;
                let flags = self.relations.get(&(schema.clone(), table.clone()));
                let row = self.policies.get(&(schema, table, policy));
                match (flags, row) {
                    (Some((_, enabled, forced)), Some(row)) => Some(row_security_attributes(
                        current,
                        (*enabled, *forced),
                        row,
                        3,
                    )),
                    _ => None,
                }
            }
            other => {
                return Err(ProviderError::Config(format!(
                    "the PostgreSQL provider does not manage {other} resources"
                )));
            }
        })
    }
}
