//! Vector namespaces: where a tenant's embeddings live.
//!
//! A `vector_namespace` resource says *what* a tenant gets (a namespace of vectors of
//! one dimension, searched by one distance, usable by the tenant's role only); the
//! platform's `[vector] backend` says *which* provider serves it. Each backend is one
//! provider behind the common [`Provider`] trait; the engine registers the one the
//! platform names for the vector family. A collection per tenant in Qdrant, or a namespace in
//! Pinecone, would be another provider here (talking HTTP through `reqwest`), with the
//! same attributes; `backend` is part of the resource, so switching backends plans a
//! replacement rather than silently pointing at an empty store.
//!
//! [`PgvectorProvider`]: a table in the tenant's schema with a `vector(N)` column and
//! an HNSW index, with no privileges for PUBLIC. The blueprint grants it to the
//! tenant's role with a `postgres_table_grant` of its own; other tenants' roles have
//! no USAGE on the schema. The `vector` extension is created once per database,
//! idempotently, before the first table.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::OnceCell;

use super::postgres::PostgresProvider;
use super::{
    CreateMode, Provider, ProviderError, ReadOptions, ReadRequest, ReadResult, failed_batch,
};
use crate::connect::postgres::ident;
use crate::resource::{Attributes, Resource, ResourceAddress, required_int, required_str};

/// pgvector's operator class for a distance.
fn opclass(distance: &str) -> Result<&'static str, ProviderError> {
    match distance {
        "cosine" => Ok("vector_cosine_ops"),
        "l2" => Ok("vector_l2_ops"),
        "inner_product" => Ok("vector_ip_ops"),
        other => Err(ProviderError::Config(format!(
            "unknown vector distance {other:?}; use cosine, l2 or inner_product"
        ))),
    }
}

fn distance_of(opclass: &str) -> &'static str {
    match opclass {
        "vector_cosine_ops" => "cosine",
        "vector_l2_ops" => "l2",
        "vector_ip_ops" => "inner_product",
        _ => "unknown",
    }
}

/// Vector namespaces as pgvector tables in the tenants' PostgreSQL schemas.
pub struct PgvectorProvider {
    pg: Arc<PostgresProvider>,
    extension: OnceCell<()>,
}

impl PgvectorProvider {
    /// The [`VectorBackend`](crate::spec::VectorBackend) name this provider serves.
    pub const BACKEND: &'static str = "pgvector";

    /// A provider working through `pg`'s connections; the extension is checked on first use.
    pub fn new(pg: Arc<PostgresProvider>) -> Self {
        PgvectorProvider {
            pg,
            extension: OnceCell::new(),
        }
    }

    /// `CREATE EXTENSION IF NOT EXISTS vector`, once per engine. Two engines doing it
    /// at once may collide on the catalog's unique index; the loser finds it there.
    async fn ensure_extension(&self) -> Result<(), ProviderError> {
        self.extension
            .get_or_try_init(|| async {
                match self.pg.batch("CREATE EXTENSION IF NOT EXISTS vector;").await {
                    Err(ProviderError::Api { code, .. }) if code == "23505" => Ok(()),
                    Err(ProviderError::Api { code, message, .. }) if code == "0A000" || message.contains("extension \"vector\" is not available") => {
                        Err(ProviderError::Config(format!(
                            "PostgreSQL has no pgvector extension ({message}); install pgvector on the server (scripts/stack does it for the local stack)"
                        )))
                    }
                    other => other,
                }
            })
            .await
            .map(|_| ())
    }

    fn check_backend(attrs: &Attributes) -> Result<(), ProviderError> {
        match required_str(attrs, "backend")? {
            Self::BACKEND => Ok(()),
            other => Err(ProviderError::Config(format!(
                "the vector namespace is for backend {other:?}, but this engine serves it with {}; set [vector] backend in platform.toml to match",
                Self::BACKEND
            ))),
        }
    }

    fn names(attrs: &Attributes) -> Result<(String, String), ProviderError> {
        let schema = required_str(attrs, "schema")?;
        let table = required_str(attrs, "table")?;
        Ok((
            format!("{}.{}", ident(schema), ident(table)),
            format!("{table}_embedding_hnsw"),
        ))
    }

    fn index_sql(attrs: &Attributes, if_not_exists: bool) -> Result<String, ProviderError> {
        let (table, index) = Self::names(attrs)?;
        Ok(format!(
            "CREATE INDEX {}{} ON {table} USING hnsw (embedding {}) WITH (m = {}, ef_construction = {});",
            if if_not_exists { "IF NOT EXISTS " } else { "" },
            ident(&index),
            opclass(required_str(attrs, "distance")?)?,
            required_int(attrs, "hnsw_m")?,
            required_int(attrs, "hnsw_ef_construction")?,
        ))
    }

    fn create_sql(attrs: &Attributes, if_not_exists: bool) -> Result<String, ProviderError> {
        let (table, _) = Self::names(attrs)?;
        let dimension = required_int(attrs, "dimension")?;
        let ine = if if_not_exists { "IF NOT EXISTS " } else { "" };
        Ok(format!(
            "CREATE TABLE {ine}{table} (\
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
               document_id bigint, \
               chunk text NOT NULL DEFAULT '', \
               embedding vector({dimension}) NOT NULL, \
               metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb, \
               created_at timestamptz NOT NULL DEFAULT now()); \
             REVOKE ALL ON {table} FROM PUBLIC; {}",
            Self::index_sql(attrs, if_not_exists)?
        ))
    }

    async fn rebuild_index(&self, attrs: &Attributes) -> Result<(), ProviderError> {
        let (_, index) = Self::names(attrs)?;
        let schema = required_str(attrs, "schema")?;
        self.pg
            .batch(&format!(
                "DROP INDEX IF EXISTS {}.{}; {}",
                ident(schema),
                ident(&index),
                Self::index_sql(attrs, false)?
            ))
            .await
    }
}

impl PgvectorProvider {
    async fn read_all(&self, reads: &[ReadRequest<'_>]) -> Result<Vec<ReadResult>, ProviderError> {
        let mut schemas = BTreeSet::new();
        for (_, current) in reads {
            schemas.insert(required_str(current, "schema")?.to_owned());
        }
        let schemas: Vec<String> = schemas.into_iter().collect();
        let (columns, indexes) = tokio::try_join!(
            self.pg.query_in(
                "SELECT n.nspname::text, c.relname::text, a.atttypmod \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE n.nspname::text = ANY($1) AND a.attname = 'embedding' \
                 AND NOT a.attisdropped AND t.typname = 'vector'",
                &schemas,
            ),
            self.pg.query_in(
                "SELECT n.nspname::text, tc.relname::text, ic.relname::text, \
                        am.amname::text, opc.opcname::text, coalesce(ic.reloptions, '{}'::text[]) \
                 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
                 JOIN pg_am am ON am.oid = ic.relam JOIN pg_opclass opc ON opc.oid = i.indclass[0] \
                 JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace n ON n.oid = tc.relnamespace \
                 WHERE n.nspname::text = ANY($1)",
                &schemas,
            ),
        )?;
        let key = |r: &tokio_postgres::Row, n: usize| -> Vec<String> {
            (0..n).map(|i| r.get::<_, String>(i)).collect()
        };
        let dimensions: HashMap<Vec<String>, i32> =
            columns.iter().map(|r| (key(r, 2), r.get(2))).collect();
        let indexes: HashMap<Vec<String>, &tokio_postgres::Row> =
            indexes.iter().map(|r| (key(r, 3), r)).collect();
        reads
            .iter()
            .map(|(_, current)| {
                let schema = required_str(current, "schema")?;
                let table = required_str(current, "table")?;
                let (_, index) = Self::names(current)?;
                let Some(&dimension) = dimensions.get(&vec![schema.to_owned(), table.to_owned()])
                else {
                    return Ok(Ok(None));
                };
                let index = indexes
                    .get(&vec![schema.to_owned(), table.to_owned(), index])
                    .copied();
                Ok(Ok(Some(namespace_attributes(
                    schema, table, dimension, index, 3,
                ))))
            })
            .collect()
    }
}

/// A namespace's attributes from its column's dimension and its index, from a row
/// whose columns start at `first`: `amname, opcname, reloptions`.
fn namespace_attributes(
    schema: &str,
    table: &str,
    dimension: i32,
    index: Option<&tokio_postgres::Row>,
    first: usize,
) -> Attributes {
    // A missing or foreign index reads as distance "none", which plans an update
    // that builds it again.
    let (mut distance, mut m, mut ef) = ("none".to_owned(), 0i64, 0i64);
    if let Some(row) = index
        && row.get::<_, String>(first) == "hnsw"
    {
        distance = distance_of(&row.get::<_, String>(first + 1)).to_owned();
        // pgvector's defaults apply to options the index was built without.
        m = 16;
        ef = 64;
        for opt in row.get::<_, Vec<String>>(first + 2) {
            match opt.split_once('=') {
                Some(("m", v)) => m = v.parse().unwrap_or(0),
                Some(("ef_construction", v)) => ef = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    Attributes::from([
        ("backend".into(), json!(PgvectorProvider::BACKEND)),
        ("schema".into(), json!(schema)),
        ("table".into(), json!(table)),
        ("dimension".into(), json!(dimension)),
        ("distance".into(), json!(distance)),
        ("hnsw_m".into(), json!(m)),
        ("hnsw_ef_construction".into(), json!(ef)),
    ])
}

#[async_trait]
impl Provider for PgvectorProvider {
    async fn read(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let schema = required_str(current, "schema")?;
        let table = required_str(current, "table")?;
        let (_, index) = Self::names(current)?;
        let column = self
            .pg
            .query(
                "SELECT a.atttypmod FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = 'embedding' \
                 AND NOT a.attisdropped AND t.typname = 'vector'",
                &[schema, table],
            )
            .await?;
        let Some(column) = column.first() else {
            return Ok(None);
        };
        let dimension: i32 = column.get(0);
        let index = self
            .pg
            .query(
                "SELECT am.amname::text, opc.opcname::text, coalesce(ic.reloptions, '{}'::text[]) \
                 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
                 JOIN pg_am am ON am.oid = ic.relam JOIN pg_opclass opc ON opc.oid = i.indclass[0] \
                 JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace n ON n.oid = tc.relnamespace \
                 WHERE n.nspname = $1 AND tc.relname = $2 AND ic.relname = $3",
                &[schema, table, &index],
            )
            .await?;
        Ok(Some(namespace_attributes(
            schema,
            table,
            dimension,
            index.first(),
            0,
        )))
    }

    /// In bulk: the vector columns and the indexes of every schema of the batch, in
    /// two queries.
    async fn read_many(&self, reads: &[ReadRequest<'_>], _: ReadOptions) -> Vec<ReadResult> {
        match self.read_all(reads).await {
            Ok(answers) => answers,
            Err(e) => failed_batch(reads, &e),
        }
    }

    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        Self::check_backend(a)?;
        self.ensure_extension().await?;
        let resume = mode.is_resume();
        match self.pg.batch_once(&Self::create_sql(a, resume)?).await {
            Err(ProviderError::Api { code, .. }) if code == "42P07" && !resume => {
                return Err(ProviderError::AlreadyExists {
                    what: format!(
                        "PostgreSQL table \"{}.{}\"",
                        required_str(a, "schema")?,
                        required_str(a, "table")?
                    ),
                });
            }
            other => other?,
        }
        if resume {
            // The index of an interrupted run may have other parameters.
            self.rebuild_index(a).await?;
        }
        Ok(Attributes::new())
    }

    async fn update(
        &self,
        resource: &Resource,
        _current: &Attributes,
        changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        Self::check_backend(a)?;
        if changed
            .iter()
            .any(|c| matches!(c.as_str(), "distance" | "hnsw_m" | "hnsw_ef_construction"))
        {
            self.rebuild_index(a).await?;
        }
        Ok(Attributes::new())
    }

    async fn delete(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        let (table, _) = Self::names(current)?;
        // The extension stays: it is the platform's, shared by every tenant.
        self.pg
            .batch(&format!("DROP TABLE IF EXISTS {table};"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Attributes {
        Attributes::from([
            ("schema".into(), json!("tenant_a")),
            ("table".into(), json!("embeddings")),
            ("dimension".into(), json!(3)),
            ("distance".into(), json!("cosine")),
            ("hnsw_m".into(), json!(16)),
            ("hnsw_ef_construction".into(), json!(64)),
        ])
    }

    #[test]
    fn create_sql_builds_table_and_hnsw_index() {
        let sql = PgvectorProvider::create_sql(&attrs(), false).unwrap();
        assert!(
            sql.contains("CREATE TABLE \"tenant_a\".\"embeddings\" ("),
            "{sql}"
        );
        assert!(sql.contains("embedding vector(3) NOT NULL"), "{sql}");
        assert!(sql.contains(
            "CREATE INDEX \"embeddings_embedding_hnsw\" ON \"tenant_a\".\"embeddings\" USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);"
        ), "{sql}");
        assert!(
            PgvectorProvider::create_sql(&attrs(), true)
                .unwrap()
                .contains("IF NOT EXISTS")
        );
    }

    #[test]
    fn distances_map_to_operator_classes_and_back() {
        for d in ["cosine", "l2", "inner_product"] {
            assert_eq!(distance_of(opclass(d).unwrap()), d);
        }
        assert!(opclass("hamming").is_err());
    }
}
