//! The tenant's namespace on the shared Redis: an ACL user that may touch only keys
//! under `tenant:<id>:` and may not run commands that reach beyond them.

use serde_json::json;

use crate::resource::{Resource, ResourceAddress, ResourceType, TenantId};
use crate::spec::{Naming, TenantSpec, render_name};

/// The prefix of every key of a tenant on the shared Redis.
pub fn key_prefix(id: &TenantId) -> String {
    format!("tenant:{id}:")
}

/// The command rules of a tenant user, applied left to right.
///
/// - `@dangerous` covers FLUSHALL, FLUSHDB, KEYS, CONFIG, DEBUG, MONITOR, ACL, CLIENT
///   KILL and the rest of `@admin` (Redis folds `-@admin` into it, so it is not listed).
/// - Scripts and pub/sub are off: channels are not namespaced here, and `PUBSUB
///   CHANNELS` would list other tenants' channels.
/// - SCAN, RANDOMKEY and DBSIZE take no key argument, so key patterns do not filter
///   them: they would reveal other tenants' key names or counts.
pub const COMMAND_RULES: &[&str] = &[
    "+@all",
    "-@dangerous",
    "-@scripting",
    "-@pubsub",
    "-scan",
    "-randomkey",
    "-dbsize",
];

/// The tenant's Redis ACL user, limited to the tenant's key prefix.
pub fn resources(tenant: &TenantSpec, naming: &Naming) -> Vec<Resource> {
    let id = &tenant.id;
    let user = Resource::new(ResourceAddress::new(id, ResourceType::RedisAclUser, "app"))
        .attr("name", render_name(&naming.redis_user, id))
        .attr("enabled", true)
        .attr("keys", json!([format!("{}*", key_prefix(id))]))
        .attr("channels", json!([]))
        .attr("commands", json!(COMMAND_RULES));
    vec![user]
}
