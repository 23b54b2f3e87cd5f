//! The shared Redis: where it is ([`RedisEndpoint`], the `[redis]` section of
//! platform.toml), the admin URL resolved from the variable it names
//! ([`RedisConfig`]), URLs for other users, and the mapping of client errors.

use crate::environment::Environment;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ServiceError;
use crate::secret::Secret;

const SERVICE: &str = "Redis";

/// The shared Redis on which every tenant gets an ACL user, as `[redis]` in
/// platform.toml states it. The URL (with the admin password in it) comes from an
/// environment variable, never from the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisEndpoint {
    /// The environment variable holding `redis://USER:PASSWORD@HOST:PORT/DB`.
    pub url_env: String,
    /// Run `ACL SAVE` after every change, so that users survive a restart of Redis.
    /// Needs an `aclfile` in the server's configuration; off by default, in which
    /// case a restarted Redis shows up as drift and the next apply re-creates the users.
    pub acl_save: bool,
}

impl Default for RedisEndpoint {
    fn default() -> Self {
        RedisEndpoint {
            url_env: "REDIS_URL".into(),
            acl_save: false,
        }
    }
}

/// Where the shared Redis is; the URL carries the admin credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: Secret,
    pub acl_save: bool,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("endpoint", &self.endpoint())
            .field("acl_save", &self.acl_save)
            .finish()
    }
}

impl RedisConfig {
    /// The platform file's settings with the URL from the variable they name.
    pub fn resolve(
        endpoint: &RedisEndpoint,
        environment: &Environment,
    ) -> Result<Self, ServiceError> {
        let var = &endpoint.url_env;
        let url = environment.get(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            ServiceError::Config(format!(
                "the Redis URL is not set: export {var}=redis://USER:PASSWORD@HOST:PORT/0 (the variable is named by [redis] url_env in platform.toml; `scripts/stack env` prints a working one)"
            ))
        })?;
        if redis::Client::open(url.as_str()).is_err() {
            // The URL itself is not repeated: it holds a password.
            return Err(ServiceError::Config(format!(
                "{var} is not a Redis URL; write it as redis://USER:PASSWORD@HOST:PORT/DB"
            )));
        }
        Ok(RedisConfig {
            url: Secret::new(url),
            acl_save: endpoint.acl_save,
        })
    }

    /// `host:port` (and database) of the URL, without credentials, for outputs.
    pub fn endpoint(&self) -> String {
        let url = self.url.expose();
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        rest.to_owned()
    }

    /// A URL for `user`, with the password left for the caller to put in.
    pub fn url_for(&self, user: &str, password: &str) -> String {
        let url = self.url.expose();
        let scheme = url.split_once("://").map_or("redis", |(s, _)| s);
        format!("{scheme}://{user}:{password}@{}", self.endpoint())
    }
}

/// Opens a connection with `client` that waits up to 10 s to connect and for each
/// answer: the client's defaults give up within a second or so, which a loaded machine
/// (a shared Redis during a burst of tenants) overruns without anything being wrong.
pub async fn connect(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let patience = Some(std::time::Duration::from_secs(10));
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(patience)
        .set_response_timeout(patience);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Maps a client error to a service error; a server still loading its data or busy
/// with a script is retryable, as is a lost connection.
pub fn redis_error(e: &redis::RedisError) -> ServiceError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        ServiceError::Unreachable {
            service: SERVICE,
            detail: e.to_string(),
        }
    } else {
        ServiceError::Api {
            service: SERVICE,
            code: e.code().unwrap_or("ERR").to_owned(),
            message: e.detail().map_or_else(|| e.to_string(), str::to_owned),
            retryable: e.code() == Some("LOADING") || e.code() == Some("BUSY"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_shows_the_endpoint_without_credentials() {
        let c = RedisConfig {
            url: Secret::new("redis://default:hunter2@127.0.0.1:6379/0"),
            acl_save: false,
        };
        assert_eq!(c.endpoint(), "127.0.0.1:6379/0");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.url_for("u", "p"), "redis://u:p@127.0.0.1:6379/0");
    }
}
