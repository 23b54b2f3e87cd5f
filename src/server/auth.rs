//! Who calls the API, and what they may do: Bearer JWTs.
//!
//! A token carries `sub` (the caller: a person or a bot), `roles` (what they are:
//! `requester`, an approver role, `platform-admin`), `scopes` (what they may do) and
//! `exp`. The server verifies it with HS256 and the shared secret in
//! `TENANTFORM_JWT_SECRET`, or with RS256/ES256 and the public key (PEM) in the file
//! `TENANTFORM_JWT_PUBLIC_KEY` names; it does not start without one of them.
//!
//! A missing, expired, malformed or forged token is a 401; a valid token without the
//! scope or role a route needs is a 403. Neither the token nor the key is ever written
//! to a response or a log.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// The environment variable with the HS256 secret.
pub const SECRET_VAR: &str = "TENANTFORM_JWT_SECRET";
/// The environment variable with the path of an RS256/ES256 public key (PEM).
pub const PUBLIC_KEY_VAR: &str = "TENANTFORM_JWT_PUBLIC_KEY";
/// A shorter HS256 secret can be guessed by brute force from one token.
const MIN_SECRET_BYTES: usize = 32;

/// The roles a token may carry.
pub const ROLES: &[&str] = &[
    "requester",
    "cfo",
    "cto",
    "legal",
    "compliance",
    "dpo",
    "platform-admin",
];

/// What a token may allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read tenants (`tenants:read`).
    TenantsRead,
    /// Make plans (`runs:plan`).
    RunsPlan,
    /// Apply plans (`runs:apply`).
    RunsApply,
    /// Submit tenant requests (`requests:submit`).
    RequestsSubmit,
    /// Approve or reject requests (`approvals:decide`).
    ApprovalsDecide,
}

impl Scope {
    /// Every scope, in the order they are listed to users.
    pub const ALL: &'static [Scope] = &[
        Scope::TenantsRead,
        Scope::RunsPlan,
        Scope::RunsApply,
        Scope::RequestsSubmit,
        Scope::ApprovalsDecide,
    ];

    /// The scope as written in a token's `scope` claim (`runs:plan`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TenantsRead => "tenants:read",
            Scope::RunsPlan => "runs:plan",
            Scope::RunsApply => "runs:apply",
            Scope::RequestsSubmit => "requests:submit",
            Scope::ApprovalsDecide => "approvals:decide",
        }
    }
}

/// Why the server has no key, or a token cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// Neither a secret nor a public key is configured.
    #[error(
        "no key to verify API tokens: set {SECRET_VAR} (a random secret of at least {MIN_SECRET_BYTES} bytes, e.g. `openssl rand -base64 48`) or {PUBLIC_KEY_VAR} (the path of an RS256 or ES256 public key in PEM); the server was not started"
    )]
    NoKey,
    /// The HS256 secret is shorter than the minimum; the length is inside.
    #[error(
        "{SECRET_VAR} is {0} bytes long; use at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -base64 48`)"
    )]
    ShortSecret(usize),
    /// The public key file cannot be read or is not an RS256/ES256 key in PEM.
    #[error(
        "cannot read the public key {path} ({PUBLIC_KEY_VAR}): {detail}; give the path of an RS256 or ES256 public key in PEM"
    )]
    PublicKey { path: PathBuf, detail: String },
    /// A token was asked for with a role not in [`ROLES`].
    #[error("unknown role {0:?}; use one of: {roles}", roles = ROLES.join(", "))]
    UnknownRole(String),
    /// A token was asked for with a scope no [`Scope`] has.
    #[error("unknown scope {0:?}; use one of: {scopes}", scopes = Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))]
    UnknownScope(String),
    /// A token was asked for with an empty subject.
    #[error("the subject is empty; name the person or bot the token is for")]
    EmptySubject,
    /// Signing the token failed.
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// The claims of an API token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

/// How the server verifies tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of every printout.
        f.debug_struct("TokenVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// The verifier `environment` configures ([`SECRET_VAR`] or [`PUBLIC_KEY_VAR`]).
    pub fn from_environment(
        environment: &crate::Environment,
    ) -> Result<TokenVerifier, AuthSetupError> {
        if let Some(path) = environment.get(PUBLIC_KEY_VAR) {
            return Self::public_key(PathBuf::from(path));
        }
        let secret = environment.get(SECRET_VAR).unwrap_or_default();
        Self::hs256(secret.as_bytes())
    }

    /// A verifier of HS256 tokens signed with `secret`.
    ///
    /// # Errors
    /// [`AuthSetupError::NoKey`] when `secret` is empty, [`AuthSetupError::ShortSecret`] when it
    /// is shorter than the minimum.
    pub fn hs256(secret: &[u8]) -> Result<TokenVerifier, AuthSetupError> {
        check_secret(secret)?;
        Ok(Self::with(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    fn public_key(path: PathBuf) -> Result<TokenVerifier, AuthSetupError> {
        let pem = std::fs::read(&path).map_err(|e| AuthSetupError::PublicKey {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Self::with(key, Algorithm::RS256));
        }
        match DecodingKey::from_ec_pem(&pem) {
            Ok(key) => Ok(Self::with(key, Algorithm::ES256)),
            Err(e) => Err(AuthSetupError::PublicKey {
                path,
                detail: format!("neither an RSA nor an EC public key ({e})"),
            }),
        }
    }

    fn with(key: DecodingKey, algorithm: Algorithm) -> TokenVerifier {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // An expired token is expired: no grace period.
        validation.leeway = 0;
        TokenVerifier { key, validation }
    }

    /// The caller a token names, or why it is not accepted (a 401).
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired; get a new one",
                    ErrorKind::InvalidSignature => {
                        "the token's signature does not match the server's key"
                    }
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks its sub or exp claim",
                    _ => "the token cannot be read as a JWT signed for this server",
                };
                ApiError::unauthorized(why)
            })?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            return Err(ApiError::unauthorized("the token's subject is empty"));
        }
        Ok(Caller {
            subject: claims.sub,
            roles: claims.roles.into_iter().collect(),
            scopes: claims.scopes.into_iter().collect(),
        })
    }
}

fn check_secret(secret: &[u8]) -> Result<(), AuthSetupError> {
    match secret.len() {
        0 => Err(AuthSetupError::NoKey),
        n if n < MIN_SECRET_BYTES => Err(AuthSetupError::ShortSecret(n)),
        _ => Ok(()),
    }
}

/// What `tenantform token create` signs.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub subject: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub ttl: Duration,
}

/// Signs an HS256 token with `secret` (the server's [`SECRET_VAR`]); roles and scopes
/// must be known names.
pub fn issue_token(secret: &[u8], request: &TokenRequest) -> Result<String, AuthSetupError> {
    check_secret(secret)?;
    if request.subject.trim().is_empty() {
        return Err(AuthSetupError::EmptySubject);
    }
    if let Some(r) = request.roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
        return Err(AuthSetupError::UnknownRole(r.clone()));
    }
    if let Some(s) = request
        .scopes
        .iter()
        .find(|s| !Scope::ALL.iter().any(|k| k.as_str() == s.as_str()))
    {
        return Err(AuthSetupError::UnknownScope(s.clone()));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        sub: request.subject.clone(),
        roles: request.roles.clone(),
        scopes: request.scopes.clone(),
        iat: now,
        exp: now.saturating_add(request.ttl.as_secs()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthSetupError::Sign(e.to_string()))
}

/// The verified caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub subject: String,
    pub roles: BTreeSet<String>,
    pub scopes: BTreeSet<String>,
}

impl Caller {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(scope.as_str())
    }

    /// A 403 unless the token has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the scope {}, which the token of {} does not have",
                scope.as_str(),
                self.subject
            )))
        }
    }

    /// A 403 unless the token has one of `scopes`.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        if scopes.iter().any(|s| self.has_scope(*s)) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "this needs one of the scopes {}, which the token of {} does not have",
            scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            self.subject
        )))
    }

    /// Whether the token carries `role` (one of [`ROLES`]).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// Whether the caller sees every request, not only their own: approvers and the
    /// platform team do.
    pub fn sees_all_requests(&self) -> bool {
        self.roles.iter().any(|r| r != "requester")
    }
}

/// Anything that holds the verifier can authenticate requests.
pub trait HasVerifier {
    /// The verifier that checks the tokens of incoming requests.
    fn verifier(&self) -> &TokenVerifier;
}

impl<S: HasVerifier + Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("no Authorization: Bearer token"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer TOKEN`")
            })?;
        state.verifier().verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

    fn request(roles: &[&str], scopes: &[&str], ttl: u64) -> TokenRequest {
        TokenRequest {
            subject: "ci-bot".into(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ttl: Duration::from_secs(ttl),
        }
    }

    #[test]
    fn a_token_round_trips_with_its_roles_and_scopes() {
        let token = issue_token(SECRET, &request(&["cfo"], &["runs:plan"], 60)).unwrap();
        let caller = TokenVerifier::hs256(SECRET)
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(caller.subject, "ci-bot");
        assert!(caller.has_role("cfo"));
        assert!(caller.has_scope(Scope::RunsPlan));
        assert!(!caller.has_scope(Scope::RunsApply));
        assert!(caller.require(Scope::RunsApply).is_err());
    }

    #[test]
    fn forged_and_expired_tokens_are_refused() {
        let other = b"another-secret-of-enough-length-0123456789";
        let forged = issue_token(other, &request(&[], &["runs:plan"], 60)).unwrap();
        let verifier = TokenVerifier::hs256(SECRET).unwrap();
        assert_eq!(verifier.verify(&forged).unwrap_err().status.as_u16(), 401);
        let expired = issue_token(SECRET, &request(&[], &[], 0)).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let e = verifier.verify(&expired).unwrap_err();
        assert!(e.message.contains("expired"), "{}", e.message);
        assert_eq!(
            verifier.verify("not.a.jwt").unwrap_err().status.as_u16(),
            401
        );
    }

    #[test]
    fn unknown_names_and_short_secrets_are_refused() {
        assert!(matches!(
            issue_token(SECRET, &request(&["boss"], &[], 60)),
            Err(AuthSetupError::UnknownRole(_))
        ));
        assert!(matches!(
            issue_token(SECRET, &request(&[], &["runs:everything"], 60)),
            Err(AuthSetupError::UnknownScope(_))
        ));
        assert!(matches!(
            TokenVerifier::hs256(b"short"),
            Err(AuthSetupError::ShortSecret(5))
        ));
        assert!(matches!(
            TokenVerifier::hs256(b""),
            Err(AuthSetupError::NoKey)
        ));
    }
}
