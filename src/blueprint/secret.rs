//! The tenant's credentials secret: its PostgreSQL and Redis logins, in AWS Secrets
//! Manager in the tenant's region, readable by the tenant's application role alone.

use serde_json::{Value, json};

use crate::resource::iam::role_arn;
use crate::resource::secret::READ_CREDENTIALS;
use crate::resource::{Resource, ResourceAddress, ResourceType, attr_str};
use crate::spec::{Naming, TenantSpec, render_name};

/// Who may read the secret: the tenant's role, and nobody else. The Deny holds against
/// every other principal of the account too, the platform's own included (an Allow
/// alone would leave the secret readable by any principal whose IAM policy allows
/// Secrets Manager everywhere); tenantform writes and deletes it, it never reads it.
fn policy(tenant_role: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TenantRoleReads",
                "Effect": "Allow",
                "Principal": {"AWS": tenant_role},
                "Action": [READ_CREDENTIALS],
                "Resource": "*",
            },
            {
                "Sid": "OnlyTenantRoleReads",
                "Effect": "Deny",
                "Principal": "*",
                "Action": [READ_CREDENTIALS],
                "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:PrincipalArn": tenant_role}},
            },
        ],
    })
}

/// The credentials secret, taking the passwords of `postgres_role` and `redis_user`
/// (and their names) as inputs; `iam_role` is the role that reads it.
pub fn resources(
    tenant: &TenantSpec,
    naming: &Naming,
    tags: &Value,
    postgres_role: &Resource,
    redis_user: &Resource,
    iam_role: &Resource,
) -> Vec<Resource> {
    let id = &tenant.id;
    let role_name = attr_str(&iam_role.attributes, "name").unwrap_or_default();
    let secret = Resource::new(ResourceAddress::new(
        id,
        ResourceType::Secret,
        "credentials",
    ))
    .attr("name", render_name(&naming.credentials_secret, id))
    .attr("region", tenant.region.clone())
    .attr(
        "description",
        format!("PostgreSQL and Redis credentials of tenant {id}, managed by tenantform"),
    )
    .attr("policy", policy(&role_arn(role_name)))
    .attr("tags", tags.clone())
    .input("postgres_username", postgres_role, "name")
    .input("postgres_password", postgres_role, "password")
    .input("redis_username", redis_user, "name")
    .input("redis_password", redis_user, "password")
    .depends_on(iam_role);
    vec![secret]
}
