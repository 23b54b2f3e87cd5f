//! The variables the library reads: those platform.toml names by variable
//! (`[redis] url_env`, `[encryption] passphrase_env`, `[dashboards] token_env`, the
//! notification and webhook secrets, ...) and the conventional ones (`PG*`, `USER`,
//! `TENANTFORM_STATE_BACKEND`, `TENANTFORM_JWT_SECRET`). The library reads them only
//! through an [`Environment`]: the CLI takes the process's at its edge, and a service
//! embedding the library may hand each engine its own, so that two engines in one
//! process can talk to two databases with two sets of secrets.
//!
//! ```
//! use tenantform::{Engine, EngineConfig, Environment};
//!
//! let engine = Engine::new(EngineConfig {
//!     environment: Environment::from_vars([
//!         ("PGHOST", "db.internal"),
//!         ("TENANTFORM_REDIS_URL", "redis://tenantform:secret@cache.internal:6379/0"),
//!     ]),
//!     ..EngineConfig::default()
//! });
//! assert_eq!(engine.config().environment.get("PGHOST").as_deref(), Some("db.internal"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Where the library looks a variable up: the process environment, or a set of
/// variables of its own (no fallback to the process: what is not in it is unset).
#[derive(Clone, Default)]
pub struct Environment {
    vars: Option<Arc<BTreeMap<String, String>>>,
}

impl Environment {
    /// The process environment, read when a variable is asked for.
    pub fn process() -> Self {
        Environment { vars: None }
    }

    /// Exactly `vars`, whatever the process environment holds.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Environment {
            vars: Some(Arc::new(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            )),
        }
    }

    /// The value of `name`; `None` when it is unset, empty, or not valid Unicode.
    pub fn get(&self, name: &str) -> Option<String> {
        let value = match &self.vars {
            None => std::env::var(name).ok(),
            Some(vars) => vars.get(name).cloned(),
        };
        value.filter(|v| !v.is_empty())
    }

    /// The value of the variable a setting names (`url_env = "..."`), if it names one.
    pub fn named(&self, name: Option<&str>) -> Option<String> {
        name.and_then(|n| self.get(n))
    }
}

impl fmt::Debug for Environment {
    /// Names only: the values are passwords and keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vars {
            None => f.write_str("Environment(process)"),
            Some(vars) => f.debug_set().entries(vars.keys()).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_variables_are_all_there_is_and_empty_means_unset() {
        let env = Environment::from_vars([("PGHOST", "db"), ("EMPTY", ""), ("SECRET", "s3cr3t")]);
        assert_eq!(env.get("PGHOST").as_deref(), Some("db"));
        assert_eq!(env.get("EMPTY"), None);
        // PATH is set in every process that runs this test, and not in `env`.
        assert!(std::env::var_os("PATH").is_some());
        assert_eq!(env.get("PATH"), None);
        assert_eq!(env.named(Some("PGHOST")).as_deref(), Some("db"));
        assert_eq!(env.named(None), None);
        let shown = format!("{env:?}");
        assert!(
            shown.contains("SECRET") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn the_process_environment_is_read_when_asked() {
        assert_eq!(
            Environment::process().get("PATH"),
            std::env::var("PATH").ok().filter(|p| !p.is_empty())
        );
    }
}
