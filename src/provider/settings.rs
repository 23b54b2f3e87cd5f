//! Tenant settings: one row per tenant in the platform's registry table
//! `tenantform.tenant_settings`, which the platform's services (rate limiter, LLM
//! gateway, indexer) read. The table is the platform's and is created on first use,
//! idempotently; tenants' roles get nothing on it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::postgres::PostgresProvider;
use super::{
    CreateMode, Provider, ProviderError, ReadOptions, ReadRequest, ReadResult, failed_batch,
};
use crate::connect::postgres::literal;
use crate::resource::{Attributes, Resource, ResourceAddress, ResourceType, required_str, schema};

/// SQLSTATE of a duplicate key: the tenant already has a row.
const UNIQUE_VIOLATION: &str = "23505";

/// The registry table, schema-qualified.
pub const TABLE: &str = "tenantform.tenant_settings";

/// A settings row's attributes: the tenant and the fields of its document.
fn settings_attributes(tenant: &str, document: &str) -> Attributes {
    let doc: Value = serde_json::from_str(document).unwrap_or(Value::Null);
    let mut attrs = Attributes::from([("tenant".into(), json!(tenant))]);
    if let Value::Object(map) = doc {
        attrs.extend(map);
    }
    attrs
}

/// The tenants' rows in the settings registry table ([`TABLE`]).
pub struct TenantSettingsProvider {
    pg: Arc<PostgresProvider>,
    table_ready: OnceCell<()>,
}

impl TenantSettingsProvider {
    /// A provider writing through `pg`'s connections; the table is created on first use.
    pub fn new(pg: Arc<PostgresProvider>) -> Self {
        TenantSettingsProvider {
            pg,
            table_ready: OnceCell::new(),
        }
    }

    async fn ensure_table(&self) -> Result<(), ProviderError> {
        self.table_ready
            .get_or_try_init(|| async {
                let sql = format!(
                    "CREATE SCHEMA IF NOT EXISTS tenantform; \
                     REVOKE ALL ON SCHEMA tenantform FROM PUBLIC; \
                     CREATE TABLE IF NOT EXISTS {TABLE} (\
                       tenant text PRIMARY KEY, \
                       settings jsonb NOT NULL, \
                       updated_at timestamptz NOT NULL DEFAULT now());"
                );
                // Another process creating the schema or the table at the same moment
                // (another engine, a registry or runs migration) makes this batch fail
                // half-way: both exist then, and the batch (all IF NOT EXISTS) goes
                // through when it is run again.
                let mut tries = 0;
                loop {
                    match self.pg.batch(&sql).await {
                        Err(ProviderError::Api { code, .. })
                            if (code == "23505" || code == "42P07") && tries < 3 =>
                        {
                            tries += 1;
                        }
                        other => break other,
                    }
                }
            })
            .await
            .map(|_| ())
    }

    /// The rows of every tenant of `reads`, in one query (and one to see whether the
    /// table exists yet).
    async fn read_all(&self, reads: &[ReadRequest<'_>]) -> Result<Vec<ReadResult>, ProviderError> {
        let tenants = reads
            .iter()
            .map(|(_, current)| required_str(current, "tenant").map(str::to_owned))
            .collect::<Result<BTreeSet<String>, _>>()?;
        let exists = self
            .pg
            .query("SELECT to_regclass($1) IS NOT NULL", &[TABLE])
            .await?;
        let rows = if exists.first().is_some_and(|r| r.get::<_, bool>(0)) {
            let tenants: Vec<String> = tenants.into_iter().collect();
            self.pg
                .query_in(
                    &format!("SELECT tenant, settings::text FROM {TABLE} WHERE tenant = ANY($1)"),
                    &tenants,
                )
                .await?
        } else {
            Vec::new()
        };
        let documents: HashMap<String, String> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(reads
            .iter()
            .map(|(_, current)| {
                let tenant = required_str(current, "tenant")?;
                Ok(documents
                    .get(tenant)
                    .map(|d| settings_attributes(tenant, d)))
            })
            .collect())
    }

    /// The settings document: every attribute but the key.
    fn document(attrs: &Attributes) -> Value {
        let s = schema(ResourceType::TenantSettings);
        Value::Object(
            s.attributes
                .iter()
                .filter(|a| a.name != "tenant")
                .filter_map(|a| attrs.get(a.name).map(|v| (a.name.to_owned(), v.clone())))
                .collect(),
        )
    }

    async fn upsert(&self, attrs: &Attributes) -> Result<(), ProviderError> {
        self.ensure_table().await?;
        let tenant = required_str(attrs, "tenant")?;
        let doc = Self::document(attrs).to_string();
        self.pg
            .query(
                &format!(
                    "INSERT INTO {TABLE} (tenant, settings) VALUES ($1, {}::jsonb) \
                     ON CONFLICT (tenant) DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()",
                    literal(&doc)
                ),
                &[tenant],
            )
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Provider for TenantSettingsProvider {
    async fn read(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let tenant = required_str(current, "tenant")?;
        // No table yet: nothing was ever recorded.
        let exists = self
            .pg
            .query("SELECT to_regclass($1) IS NOT NULL", &[TABLE])
            .await?;
        if !exists.first().is_some_and(|r| r.get::<_, bool>(0)) {
            return Ok(None);
        }
        let rows = self
            .pg
            .query(
                &format!("SELECT settings::text FROM {TABLE} WHERE tenant = $1"),
                &[tenant],
            )
            .await?;
        Ok(rows
            .first()
            .map(|row| settings_attributes(tenant, &row.get::<_, String>(0))))
    }

    /// In bulk: the settings rows of every tenant of the batch in one query.
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
        if mode.is_resume() {
            self.upsert(a).await?;
            return Ok(Attributes::new());
        }
        self.ensure_table().await?;
        let tenant = required_str(a, "tenant")?;
        // Inserted at most once, so that a retry after a lost answer does not find
        // its own row and take it for someone else's.
        let insert = format!(
            "INSERT INTO {TABLE} (tenant, settings) VALUES ({}, {}::jsonb)",
            literal(tenant),
            literal(&Self::document(a).to_string())
        );
        match self.pg.batch_once(&insert).await {
            Err(ProviderError::Api { code, .. }) if code == UNIQUE_VIOLATION => {
                Err(ProviderError::AlreadyExists {
                    what: format!("the settings row of tenant {tenant:?} in {TABLE}"),
                })
            }
            other => other.map(|()| Attributes::new()),
        }
    }

    async fn update(
        &self,
        resource: &Resource,
        _current: &Attributes,
        _changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        self.upsert(&resource.attributes).await?;
        Ok(Attributes::new())
    }

    async fn delete(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        let tenant = required_str(current, "tenant")?;
        let exists = self
            .pg
            .query("SELECT to_regclass($1) IS NOT NULL", &[TABLE])
            .await?;
        if !exists.first().is_some_and(|r| r.get::<_, bool>(0)) {
            return Ok(());
        }
        self.pg
            .query(&format!("DELETE FROM {TABLE} WHERE tenant = $1"), &[tenant])
            .await
            .map(|_| ())
    }
}
