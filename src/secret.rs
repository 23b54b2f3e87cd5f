//! Secrets: generated here, delivered to the tenant's credentials secret (AWS Secrets
//! Manager), shown nowhere else. State keeps only their versions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a secret value is replaced with in plans, logs and `show`.
pub const REDACTED: &str = "(sensitive value)";

/// A password of `len` characters from [A-Za-z0-9], from the operating system's
/// cryptographic random source. The alphabet needs no quoting in SQL, URLs or shells.
pub fn generate_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the operating system's random source works");
        for b in buf {
            // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// A string that prints as [`REDACTED`] in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; take care where it goes.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// What a provider returns for a password it generated: the password (ephemeral:
/// handed to the credentials secret, never recorded) and a new random version id,
/// which state records in its place.
pub fn generated_password(password: String) -> crate::resource::Attributes {
    crate::resource::Attributes::from([
        ("password".into(), serde_json::Value::String(password)),
        (
            crate::resource::version_of("password"),
            serde_json::Value::String(uuid::Uuid::now_v7().simple().to_string()),
        ),
    ])
}

/// One login as the tenant's credentials secret holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub host: String,
    pub port: u16,
    /// The database (PostgreSQL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbname: Option<String>,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("username", &self.username)
            .field("password", &REDACTED)
            .finish()
    }
}

/// The value of a tenant's credentials secret (JSON): what its application reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub postgres: Login,
    pub redis: Login,
}

/// The tenant's credentials as its application reads them: its IAM role assumed (the
/// engine's principal is one of the role's trusted principals), the value of its
/// credentials secret read with the role's credentials. The engine's own credentials
/// are refused the value by the secret's resource policy.
pub async fn read_credentials(
    aws: &crate::connect::aws::AwsClients,
    state: &crate::state::TenantState,
) -> Result<Credentials, String> {
    let role = created_attributes(state, crate::resource::ResourceType::IamRole, "app")?;
    let arn = crate::resource::required_str(role, "arn").map_err(|e| e.to_string())?;
    let assumed = aws
        .assume_tenant_role(arn, &format!("tenantform-validate-{}", state.tenant))
        .await
        .map_err(|e| format!("cannot assume {arn}: {e}"))?;
    let text = read_secret_as(&assumed, state)
        .await
        .map_err(|e| e.to_string())?;
    // serde_json's messages may quote the text: only where it failed is told.
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "the credentials secret of tenant {} does not hold credentials ({:?} error at line {} column {})",
            state.tenant,
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

/// The value of `state`'s credentials secret, read as `role` (the tenant's own, or
/// another tenant's for the negative test of isolation).
pub async fn read_secret_as(
    role: &crate::connect::aws::AssumedRole,
    state: &crate::state::TenantState,
) -> Result<String, crate::connect::ServiceError> {
    let secret = created_attributes(state, crate::resource::ResourceType::Secret, "credentials")
        .map_err(crate::connect::ServiceError::Config)?;
    let name = crate::resource::required_str(secret, "name")
        .map_err(|e| crate::connect::ServiceError::Config(e.to_string()))?;
    let region = crate::resource::required_str(secret, "region")
        .map_err(|e| crate::connect::ServiceError::Config(e.to_string()))?;
    let client = role.secrets(region);
    let out = crate::connect::aws::call(
        &crate::connect::retry::RetryPolicy::DEFAULT,
        "Secrets Manager",
        || client.get_secret_value().secret_id(name).send(),
    )
    .await?;
    out.secret_string().map(str::to_owned).ok_or_else(|| {
        crate::connect::ServiceError::Config(format!("secret {name:?} holds no string value"))
    })
}

/// A created resource's attributes in `state`.
fn created_attributes<'s>(
    state: &'s crate::state::TenantState,
    t: crate::resource::ResourceType,
    name: &str,
) -> Result<&'s crate::resource::Attributes, String> {
    state
        .resources
        .get(&format!("{t}.{name}"))
        .filter(|r| r.status == crate::state::ResourceStatus::Created)
        .map(|r| &r.attributes)
        .ok_or_else(|| format!("tenant {} has no {t}.{name} in state", state.tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_alphanumeric_and_different() {
        let a = generate_password(32);
        let b = generate_password(32);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), format!("{REDACTED} {REDACTED}"));
        assert_eq!(s.expose(), "hunter2");
    }
}
