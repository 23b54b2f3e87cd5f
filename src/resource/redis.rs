//! Redis resources: a tenant's ACL user on the shared Redis.

use super::{AttributeSchema as A, ResourceType, Schema};

/// The tenant's Redis ACL user (`redis_acl_user`).
pub static ACL_USER: Schema = Schema {
    resource_type: ResourceType::RedisAclUser,
    attributes: &[
        A::force_new("name"),
        A::updatable("enabled"),
        A::updatable("keys"),
        A::updatable("channels"),
        // Applied left to right as the blueprint lists them, but compared as a set:
        // Redis reads them back in its own normal order.
        A::updatable("commands").as_set(),
        A::computed("password").sensitive().unreadable().ephemeral(),
        A::computed("password_version").unreadable(),
    ],
    replace_note: "a Redis user's name is its identity",
};
