//! A tenant's outputs: what its application needs to use what was provisioned
//! (endpoints, names, where its credentials are), derived from state. The passwords
//! themselves are not outputs: state does not hold them, and the application reads
//! them from its credentials secret.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::connect::postgres::PostgresConfig;
use crate::connect::redis::RedisConfig;
use crate::resource::{ResourceType, attr_str};
use crate::secret::REDACTED;
use crate::state::{ResourceStatus, TenantState};

/// One output value; sensitive ones print as redacted unless asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub value: Value,
    pub sensitive: bool,
}

/// The outputs of a tenant, by name.
pub fn tenant_outputs(
    state: &TenantState,
    postgres: Option<&PostgresConfig>,
    redis: Option<&RedisConfig>,
) -> BTreeMap<String, Output> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, value: Value, sensitive: bool| {
        out.insert(name.to_owned(), Output { value, sensitive });
    };
    let created = |t: ResourceType| {
        state
            .resources
            .values()
            .find(|r| r.resource_type == t && r.status == ResourceStatus::Created)
    };
    if let Some(schema) = created(ResourceType::PostgresSchema) {
        put(
            "postgres_schema",
            json!(attr_str(&schema.attributes, "name")),
            false,
        );
    }
    if let Some(role) = created(ResourceType::PostgresRole) {
        let name = attr_str(&role.attributes, "name").unwrap_or_default();
        put("postgres_role", json!(name), false);
        if let Some(pg) = postgres {
            put("postgres_host", json!(pg.host), false);
            put("postgres_port", json!(pg.port), false);
            put("postgres_database", json!(pg.database), false);
            put(
                "postgres_url",
                json!(format!(
                    "postgres://{name}@{}:{}/{}",
                    pg.host, pg.port, pg.database
                )),
                false,
            );
        }
    }
    if let Some(bucket) = created(ResourceType::S3Bucket) {
        put(
            "s3_bucket",
            json!(attr_str(&bucket.attributes, "bucket")),
            false,
        );
        put(
            "s3_region",
            json!(attr_str(&bucket.attributes, "region")),
            false,
        );
    }
    if let Some(role) = created(ResourceType::IamRole) {
        put(
            "iam_role_arn",
            json!(attr_str(&role.attributes, "arn")),
            false,
        );
    }
    if let Some(cache) = created(ResourceType::ElasticacheCluster) {
        put(
            "cache_cluster_id",
            json!(attr_str(&cache.attributes, "cluster_id")),
            false,
        );
        // `null` until AWS reports the node's address.
        put(
            "cache_endpoint",
            cache
                .attributes
                .get("endpoint")
                .cloned()
                .unwrap_or(Value::Null),
            false,
        );
    }
    if let Some(user) = created(ResourceType::RedisAclUser) {
        let name = attr_str(&user.attributes, "name").unwrap_or_default();
        put("redis_user", json!(name), false);
        if let Some(keys) = user.attributes.get("keys") {
            put("redis_key_patterns", keys.clone(), false);
        }
        if let Some(redis) = redis {
            put("redis_endpoint", json!(redis.endpoint()), false);
        }
    }
    if let Some(secret) = created(ResourceType::Secret) {
        let a = &secret.attributes;
        put("credentials_secret_name", json!(attr_str(a, "name")), false);
        put("credentials_secret_arn", json!(attr_str(a, "arn")), false);
    }
    if let Some(ns) = created(ResourceType::VectorNamespace) {
        let a = &ns.attributes;
        put("vector_backend", json!(attr_str(a, "backend")), false);
        if let (Some(schema), Some(table)) = (attr_str(a, "schema"), attr_str(a, "table")) {
            put("vector_table", json!(format!("{schema}.{table}")), false);
        }
        if let Some(d) = a.get("dimension") {
            put("vector_dimension", d.clone(), false);
        }
        put("vector_distance", json!(attr_str(a, "distance")), false);
    }
    if let Some(d) = created(ResourceType::GrafanaDashboard) {
        let a = &d.attributes;
        put("dashboard_uid", json!(attr_str(a, "uid")), false);
        put("dashboard_file", json!(attr_str(a, "file")), false);
        if let (Some(base), Some(uid)) = (attr_str(a, "grafana_url"), attr_str(a, "uid")) {
            put(
                "dashboard_url",
                json!(format!("{}/d/{uid}", base.trim_end_matches('/'))),
                false,
            );
        }
    }
    if let Some(s) = created(ResourceType::TenantSettings) {
        let a = &s.attributes;
        for name in ["tier", "llm_model", "queries_per_minute", "sla_latency_ms"] {
            if let Some(v) = a.get(name) {
                put(name, v.clone(), false);
            }
        }
    }
    out
}

/// Outputs as they may be shown: sensitive values redacted unless `show_secrets`.
pub fn redact_outputs(
    outputs: &BTreeMap<String, Output>,
    show_secrets: bool,
) -> BTreeMap<String, Value> {
    outputs
        .iter()
        .map(|(k, o)| {
            let v = if o.sensitive && !show_secrets {
                json!(REDACTED)
            } else {
                o.value.clone()
            };
            (k.clone(), v)
        })
        .collect()
}
