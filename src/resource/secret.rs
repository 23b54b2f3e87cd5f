//! The tenant's credentials in AWS Secrets Manager (`secret`): one secret per tenant,
//! readable only by the tenant's application role, holding its PostgreSQL and Redis
//! logins. The passwords reach it as inputs, never through state.

use super::iam::ACCOUNT_PLACEHOLDER;
use super::{AttributeSchema as A, ResourceType, Schema};

/// The action that reads a secret's value.
pub const READ_CREDENTIALS: &str = "secretsmanager:GetSecretValue";

/// The ARN of secret `name` in `region` as a policy names it: AWS appends a hyphen and
/// six random characters to a secret's name in its ARN, which `-??????` matches.
pub fn secret_arn_pattern(region: &str, name: &str) -> String {
    format!("arn:aws:secretsmanager:{region}:{ACCOUNT_PLACEHOLDER}:secret:{name}-??????")
}

/// The name under which a plan shows that a secret's value is written anew (the value
/// itself is never an attribute).
pub const VALUE: &str = "value";

/// The computed attribute of a resource that takes ephemeral inputs: the version of
/// each input its last write was given, by input name. The apply records it; a plan
/// that finds it differing from what the inputs' resources record writes anew.
pub const INPUT_VERSIONS: &str = "input_versions";

/// The tenant's credentials secret (`secret.credentials`).
pub static CREDENTIALS: Schema = Schema {
    resource_type: ResourceType::Secret,
    attributes: &[
        A::force_new("name"),
        A::force_new("region"),
        A::updatable("description"),
        // The resource policy: the tenant's role reads, nobody else does.
        A::updatable("policy").as_policy(),
        A::updatable("tags"),
        A::computed("arn"),
        // The secret's current value (AWSCURRENT): a change made outside tenantform
        // shows as another version id.
        A::computed("version_id"),
        // The version of each credential the value holds, by input name
        // (`postgres_password` -> the role's `password_version`).
        A::computed(INPUT_VERSIONS).unreadable(),
    ],
    replace_note: "a secret's name and region are its identity",
};
