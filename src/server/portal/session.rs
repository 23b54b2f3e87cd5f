//! Who uses the portal: a session cookie holding the caller's API token, verified on
//! every request exactly as the API's Bearer auth verifies it, and the CSRF token each
//! form carries.
//!
//! Promises:
//! - The session cookie (`tenantform_session`) is `HttpOnly` (no script reads it),
//!   `SameSite=Strict` (no other site's page sends it) and `Path=/`. It holds the JWT
//!   itself, so the server keeps no session state and any number of servers serve one
//!   platform; an expired, forged or unreadable token is no session, and the page asks
//!   to sign in again.
//! - Every form POST of a signed-in caller carries `csrf`, an HMAC-SHA256 of the
//!   session's token under a fixed label: only a page the server rendered for that
//!   session knows it. A POST without it, or with another, is refused with 403.
//! - The sign-in form, which has no session yet, is protected by a double submit: a
//!   random value in a `SameSite=Strict` cookie that the form must repeat.
//! - The cookie has no `Secure` flag: the server speaks plain HTTP on loopback; behind
//!   a TLS proxy, the proxy adds it.

use aws_lc_rs::{constant_time, hmac};
use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::super::ApiState;
use super::super::auth::{Caller, HasVerifier, TokenVerifier};
use super::pages;

/// The cookie holding the caller's token.
pub const SESSION_COOKIE: &str = "tenantform_session";
/// The cookie holding the sign-in form's double-submit value.
pub const SIGN_IN_COOKIE: &str = "tenantform_sign_in";
/// What the CSRF token of a session signs: fixed, so any server derives the same one.
const CSRF_LABEL: &[u8] = b"tenantform portal form";

/// A signed-in caller.
#[derive(Clone, Debug)]
pub struct Session {
    pub caller: Caller,
    /// The token every form of this session must carry.
    pub csrf: String,
}

/// The value of cookie `name` in `headers`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of the session whose token is `token`.
pub fn csrf_token(token: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, CSRF_LABEL).as_ref())
}

/// Whether `given` is `expected`, in constant time.
pub fn same_secret(expected: &str, given: &str) -> bool {
    constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes()).is_ok()
}

/// The session the cookies of `headers` carry, if their token verifies.
pub fn session(headers: &HeaderMap, verifier: &TokenVerifier) -> Option<Session> {
    let token = cookie(headers, SESSION_COOKIE)?;
    match verifier.verify(token) {
        Ok(caller) => Some(Session {
            caller,
            csrf: csrf_token(token),
        }),
        Err(e) => {
            tracing::info!(reason = %e.message, "portal session refused");
            None
        }
    }
}

impl Session {
    /// Whether `given` is this session's CSRF token; a form without it is answered
    /// with [`csrf_refusal`].
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| same_secret(&self.csrf, g))
    }
}

/// The answer to a form POST without the right CSRF token.
pub fn csrf_refusal() -> Response {
    pages::error_page(
        StatusCode::FORBIDDEN,
        None,
        "The form's security token is missing or belongs to another session, so nothing was done. Reload the page and submit the form again.",
    )
}

/// A redirect (303, so that a POST becomes a GET) to `to`.
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// The `Set-Cookie` value that keeps `value` under `name` for this site's pages.
pub fn set_cookie(name: &str, value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tenantform_invalid=; Path=/"))
}

/// The `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tenantform_invalid=; Path=/"))
}

/// Adds `Set-Cookie: value` to `response`.
pub fn with_cookie(mut response: Response, value: HeaderValue) -> Response {
    response.headers_mut().append(SET_COOKIE, value);
    response
}

/// A fresh random value for the sign-in form's double submit.
pub fn sign_in_nonce() -> String {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).expect("the operating system's random source works");
    URL_SAFE_NO_PAD.encode(buf)
}

/// A page needing a session answers a caller without one with the sign-in page.
impl FromRequestParts<ApiState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Session, Response> {
        match session(&parts.headers, state.verifier()) {
            Some(s) => Ok(s),
            // A stale cookie goes, so that the browser stops sending it.
            None if cookie(&parts.headers, SESSION_COOKIE).is_some() => Err(with_cookie(
                see_other("/sign-in"),
                clear_cookie(SESSION_COOKIE),
            )),
            None => Err(see_other("/sign-in")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::{TokenRequest, issue_token};
    use std::time::Duration;

    const SECRET: &[u8] = b"portal-test-secret-0123456789abcdefghij";

    fn token(secret: &[u8], ttl: u64) -> String {
        issue_token(
            secret,
            &TokenRequest {
                subject: "alice@example.com".into(),
                roles: vec!["requester".into()],
                scopes: vec!["requests:submit".into()],
                ttl: Duration::from_secs(ttl),
            },
        )
        .unwrap()
    }

    fn with_session_cookie(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("other=1; {SESSION_COOKIE}={token}; x=y")).unwrap(),
        );
        h
    }

    #[test]
    fn a_valid_cookie_is_a_session_and_a_forged_or_expired_one_is_not() {
        let verifier = TokenVerifier::hs256(SECRET).unwrap();
        let good = token(SECRET, 60);
        let s = session(&with_session_cookie(&good), &verifier).expect("a session");
        assert_eq!(s.caller.subject, "alice@example.com");
        assert_eq!(s.csrf, csrf_token(&good));

        let forged = token(b"another-secret-of-enough-length-0123456789", 60);
        assert!(session(&with_session_cookie(&forged), &verifier).is_none());
        let expired = token(SECRET, 0);
        std::thread::sleep(Duration::from_millis(1100));
        assert!(session(&with_session_cookie(&expired), &verifier).is_none());
        assert!(session(&with_session_cookie("not.a.jwt"), &verifier).is_none());
        assert!(session(&HeaderMap::new(), &verifier).is_none());
    }

    #[test]
    fn a_form_without_the_session_csrf_token_is_refused_with_403() {
        let verifier = TokenVerifier::hs256(SECRET).unwrap();
        let alice = session(&with_session_cookie(&token(SECRET, 60)), &verifier).unwrap();
        assert!(alice.csrf_ok(Some(&alice.csrf)));
        assert!(!alice.csrf_ok(None));
        assert!(!alice.csrf_ok(Some("guess")));
        assert!(!alice.csrf_ok(Some("")));
        // Another session's token does not pass for this one.
        let other = csrf_token(&token(SECRET, 120));
        assert_ne!(other, alice.csrf);
        assert!(!alice.csrf_ok(Some(&other)));
        assert_eq!(csrf_refusal().status(), StatusCode::FORBIDDEN);
    }
}
