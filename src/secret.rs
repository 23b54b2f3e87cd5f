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

impl Credentials {
    /// The credentials in `text` (a secret's value). The error says where the text is
    /// not credentials, never what it holds.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        // serde_json's messages may quote the text: only where it failed is told.
        serde_json::from_str(text).map_err(|e| {
            format!(
                "the value is not credentials ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })
    }
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
    fn credentials_parse_and_a_bad_value_is_not_echoed() {
        let login = |db: Option<&str>| Login {
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: db.map(str::to_owned),
            username: "u".into(),
            password: "hunter2-hunter2".into(),
        };
        let c = Credentials {
            postgres: login(Some("rag")),
            redis: login(None),
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(Credentials::parse(&text), Ok(c.clone()));
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = Credentials::parse(r#"{"postgres": "hunter2-hunter2"}"#).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), format!("{REDACTED} {REDACTED}"));
        assert_eq!(s.expose(), "hunter2");
    }
}
