//! ElastiCache resources: a dedicated Redis cluster.

use super::{AttributeSchema as A, ResourceType, Schema};

/// A dedicated ElastiCache cluster (`elasticache_cluster`).
pub static CLUSTER: Schema = Schema {
    resource_type: ResourceType::ElasticacheCluster,
    attributes: &[
        A::force_new("cluster_id"),
        A::force_new("region"),
        A::force_new("engine"),
        A::updatable("node_type"),
        A::force_new("num_nodes"),
        A::updatable("tags"),
        A::computed("arn"),
        A::computed("endpoint"),
    ],
    replace_note: "a cache cluster's id, region, engine and node count cannot change in place",
};
