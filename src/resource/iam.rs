//! IAM resources: a managed policy, a role, and the attachment of one to the other;
//! and ARNs as the blueprint writes them, with the account id left out.

use super::{AttributeSchema as A, ResourceType, Schema};

/// The tenant's managed IAM policy (`iam_policy`).
pub static POLICY: Schema = Schema {
    resource_type: ResourceType::IamPolicy,
    attributes: &[
        A::force_new("name"),
        A::force_new("description"),
        A::updatable("document").as_policy(),
        A::updatable("tags"),
        A::computed("arn"),
    ],
    replace_note: "IAM cannot rename a managed policy or change its description",
};

/// The tenant's application role (`iam_role`).
pub static ROLE: Schema = Schema {
    resource_type: ResourceType::IamRole,
    attributes: &[
        A::force_new("name"),
        A::updatable("description"),
        A::updatable("assume_role_policy").as_policy(),
        A::updatable("tags"),
        A::computed("arn"),
    ],
    replace_note: "IAM cannot rename a role",
};

/// The attachment of a policy to a role (`iam_role_policy_attachment`).
pub static ROLE_POLICY_ATTACHMENT: Schema = Schema {
    resource_type: ResourceType::IamRolePolicyAttachment,
    attributes: &[A::force_new("role"), A::force_new("policy_arn")],
    replace_note: "an attachment joins one role and one policy",
};

/// Written in documents and ARNs where the account id goes; the providers put the
/// real id in on the way out and take it out again on the way in, so that the
/// blueprint stays pure and plans read the same in every account.
pub const ACCOUNT_PLACEHOLDER: &str = "{aws_account_id}";

/// `value` with [`ACCOUNT_PLACEHOLDER`] replaced by `account` in every string.
pub fn with_account(value: &serde_json::Value, account: &str) -> serde_json::Value {
    map_strings(value, &|s| s.replace(ACCOUNT_PLACEHOLDER, account))
}

/// `value` with `f` applied to every string in it, keys left as they are.
pub fn map_strings(value: &serde_json::Value, f: &dyn Fn(&str) -> String) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(f(s)),
        Value::Array(a) => Value::Array(a.iter().map(|v| map_strings(v, f)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), map_strings(v, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The ARN of the managed policy `name`, with the account as a placeholder (as the
/// blueprint writes it).
pub fn policy_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_PLACEHOLDER}:policy/{name}")
}

/// The ARN of the role `name`, with the account as a placeholder.
pub fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_PLACEHOLDER}:role/{name}")
}
