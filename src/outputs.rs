//! A tenant's outputs: what its application needs to use what was provisioned
//! (endpoints, names, credentials), derived from state.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::provider::postgres::PostgresConfig;
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
        if let Some(pw) = attr_str(&role.attributes, "password") {
            put("postgres_password", json!(pw), true);
        }
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
    out
}

/// Outputs as JSON, with sensitive values redacted unless `show_secrets`.
pub fn outputs_json(outputs: &BTreeMap<String, Output>, show_secrets: bool) -> Value {
    Value::Object(
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
            .collect(),
    )
}
