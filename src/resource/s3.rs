//! S3 resources: a bucket with its versioning, lifecycle, public access block and
//! tags, and the bucket's policy; and the shape of a lifecycle rule in the
//! `lifecycle_rules` attribute.

use serde_json::{Value, json};

use super::{AttributeSchema as A, ResourceType, Schema};

/// The tenant's documents bucket (`s3_bucket`).
pub static BUCKET: Schema = Schema {
    resource_type: ResourceType::S3Bucket,
    attributes: &[
        A::force_new("bucket"),
        A::force_new("region"),
        A::updatable("versioning"),
        A::updatable("lifecycle_rules"),
        A::updatable("public_access_block"),
        A::updatable("tags"),
        A::computed("arn"),
    ],
    replace_note: "a bucket cannot be renamed or moved to another region",
};

/// The bucket's policy (`s3_bucket_policy`).
pub static BUCKET_POLICY: Schema = Schema {
    resource_type: ResourceType::S3BucketPolicy,
    attributes: &[
        A::force_new("bucket"),
        A::force_new("region"),
        A::updatable("policy").as_policy(),
    ],
    replace_note: "a bucket policy belongs to one bucket",
};

/// One lifecycle rule as the `lifecycle_rules` attribute holds it: `transitions` are
/// (days after upload, storage class).
pub fn lifecycle_rule_json(
    id: &str,
    prefix: &str,
    enabled: bool,
    transitions: &[(i32, &str)],
) -> Value {
    json!({
        "id": id,
        "prefix": prefix,
        "enabled": enabled,
        "transitions": transitions
            .iter()
            .map(|(days, class)| json!({"days": days, "storage_class": class}))
            .collect::<Vec<_>>(),
    })
}
