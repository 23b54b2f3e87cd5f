//! Redis: one ACL user per tenant on the shared Redis.
//!
//! Passwords are sent as SHA-256 digests (`#<hex>`), so the plain password never
//! reaches the server, its slow log or a `MONITOR` session. `ACL GETUSER` reads a
//! user back; its command rules come back in Redis's own normal form, which the
//! blueprint states in the same way.
//!
//! A user is created in one `ACL SETUSER` with a mark that carries the create's token
//! (see `CREATE_MARK`), which tells a resumed create its user from someone else's.
//!
//! Users set with `ACL SETUSER` live in the server's memory. With `acl_save = true`
//! (and an `aclfile` configured on the server) every change is followed by `ACL
//! SAVE`; otherwise a restarted Redis shows up as drift and the next apply re-creates
//! the users, with new passwords.

use std::collections::HashMap;

use async_trait::async_trait;
use redis::Value;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    CreateMode, Provider, ProviderError, ReadOptions, ReadRequest, ReadResult, failed_batch,
    generated_password,
};
use crate::connect::redis::{RedisConfig, redis_error};
use crate::connect::retry::RetryPolicy;
use crate::resource::{
    Attributes, CreateToken, Resource, ResourceAddress, attr_bool, required_str, string_list,
};
use crate::secret::generate_password;

const SERVICE: &str = "Redis";

/// The SHA-256 of a password in hex, as `ACL SETUSER ... #<hash>` takes it and `ACL
/// GETUSER` shows it.
pub fn password_hash(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A reply value as text (bulk and simple strings, numbers).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// The items of an array or set reply.
fn items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a.iter().collect(),
        _ => Vec::new(),
    }
}

/// An `ACL GETUSER` reply as field -> value (RESP2 sends a flat array of pairs).
fn fields(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| text(k).map(|k| (k, v)))
            .collect(),
        Value::Array(a) => a
            .chunks(2)
            .filter_map(|p| match p {
                [k, v] => text(k).map(|k| (k, v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The attributes of a user as `ACL GETUSER` describes it.
fn user_attributes(name: &str, reply: &Value) -> Attributes {
    let mut enabled = false;
    let mut keys = Vec::new();
    let mut channels = Vec::new();
    let mut commands = Vec::new();
    let words = |v: &Value| -> Vec<String> {
        text(v)
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_else(|| items(v).iter().filter_map(|i| text(i)).collect())
    };
    for (field, v) in fields(reply) {
        match field.as_str() {
            "flags" => enabled = items(v).iter().filter_map(|f| text(f)).any(|f| f == "on"),
            "keys" => {
                keys = words(v)
                    .into_iter()
                    .map(|k| k.strip_prefix('~').map(str::to_owned).unwrap_or(k))
                    .collect()
            }
            "channels" => {
                channels = words(v)
                    .into_iter()
                    .map(|c| c.strip_prefix('&').map(str::to_owned).unwrap_or(c))
                    .filter(|c| !c.starts_with(CREATE_MARK))
                    .collect()
            }
            "commands" => commands = words(v),
            _ => {}
        }
    }
    acl_user_attributes(name, enabled, keys, channels, commands)
}

/// Every user of an `ACL LIST` reply, with the attributes [`user_attributes`] gives
/// for its `ACL GETUSER`: one call for all tenants' users instead of one each.
fn listed_users(reply: &Value) -> HashMap<String, Attributes> {
    items(reply)
        .iter()
        .filter_map(|line| listed_user(&text(line)?))
        .collect()
}

/// One `ACL LIST` line (`user NAME on #HASH ~KEYS resetchannels &CHANNELS -@all
/// +cmd ...`): the flags, then the root selector's keys, channels and command rules,
/// then any further selectors in parentheses (which `ACL GETUSER` lists apart, and
/// the attributes leave out).
fn listed_user(line: &str) -> Option<(String, Attributes)> {
    let mut words = line.split_whitespace();
    if words.next()? != "user" {
        return None;
    }
    let name = words.next()?.to_owned();
    let (mut enabled, mut keys, mut channels, mut commands) =
        (false, Vec::new(), Vec::new(), Vec::new());
    let mut in_selector = false;
    for w in words {
        if in_selector || w.starts_with('(') {
            in_selector = !w.ends_with(')');
        } else if !commands.is_empty() || w.starts_with(['+', '-']) {
            commands.push(w.to_owned());
        } else if w == "on" || w == "off" {
            enabled = w == "on";
        } else if let Some(k) = w.strip_prefix('~') {
            keys.push(k.to_owned());
        } else if w.starts_with('%') {
            keys.push(w.to_owned());
        } else if let Some(c) = w.strip_prefix('&')
            && !c.starts_with(CREATE_MARK)
        {
            channels.push(c.to_owned());
        }
        // Passwords (`#...`, `nopass`), `resetchannels` and payload flags say nothing
        // the attributes hold.
    }
    let attrs = acl_user_attributes(&name, enabled, keys, channels, commands);
    Some((name, attrs))
}

fn acl_user_attributes(
    name: &str,
    enabled: bool,
    keys: Vec<String>,
    channels: Vec<String>,
    commands: Vec<String>,
) -> Attributes {
    Attributes::from([
        ("name".into(), json!(name)),
        ("enabled".into(), json!(enabled)),
        ("keys".into(), json!(keys)),
        ("channels".into(), json!(channels)),
        ("commands".into(), json!(commands)),
    ])
}

/// The channel pattern a create adds to the user's rules, followed by the create's
/// token: Redis stores no comment, and this rule is set in the same `ACL SETUSER` that
/// creates the user, so a user that has it is the one this create made. It names a
/// channel nobody uses; reads leave it out, and the next update's `resetchannels`
/// removes it.
const CREATE_MARK: &str = "tenantform-create:";

/// Whether the `ACL GETUSER` reply carries the mark of the create of `token`.
fn made_by(reply: &Value, token: CreateToken) -> bool {
    fields(reply)
        .into_iter()
        .filter(|(field, _)| field == "channels")
        .any(|(_, v)| {
            let mark = format!("{CREATE_MARK}{token}");
            text(v).is_some_and(|t| t.contains(&mark))
                || items(v)
                    .iter()
                    .filter_map(|i| text(i))
                    .any(|t| t.contains(&mark))
        })
}

/// The `ACL SETUSER` arguments after the name that set everything but the password.
fn rule_args(attrs: &Attributes) -> Vec<String> {
    let enabled = attr_bool(attrs, "enabled");
    let mut args = vec![
        if enabled { "on" } else { "off" }.to_owned(),
        "resetkeys".into(),
    ];
    args.extend(string_list(attrs, "keys").iter().map(|k| format!("~{k}")));
    args.push("resetchannels".into());
    args.extend(
        string_list(attrs, "channels")
            .iter()
            .map(|c| format!("&{c}")),
    );
    args.push("nocommands".into());
    args.extend(string_list(attrs, "commands"));
    args
}

/// ACL users on one Redis.
pub struct RedisProvider {
    config: RedisConfig,
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    retry: RetryPolicy,
}

impl RedisProvider {
    /// A provider for the Redis at `config`'s URL; connects on first use.
    ///
    /// # Errors
    /// [`ProviderError::Config`] when the URL is not valid.
    pub fn new(config: RedisConfig) -> Result<Self, ProviderError> {
        let client = redis::Client::open(config.url.expose())
            .map_err(|_| ProviderError::Config("the Redis URL is not valid".into()))?;
        Ok(RedisProvider {
            config,
            client,
            connection: tokio::sync::Mutex::new(None),
            retry: RetryPolicy::DEFAULT,
        })
    }

    /// The settings the provider connects with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    async fn connection(&self) -> Result<MultiplexedConnection, ProviderError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = crate::connect::redis::connect(&self.client)
            .await
            .map_err(|e| redis_error(&e))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one command with retries; a broken connection is dropped and reopened.
    async fn call(&self, args: &[String]) -> Result<Value, ProviderError> {
        self.retry
            .run(SERVICE, || async {
                let mut c = self.connection().await?;
                let mut cmd = redis::cmd(&args[0]);
                for a in &args[1..] {
                    cmd.arg(a);
                }
                match cmd.query_async::<Value>(&mut c).await {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        let err = redis_error(&e);
                        if matches!(err, ProviderError::Unreachable { .. }) {
                            *self.connection.lock().await = None;
                        }
                        Err(err)
                    }
                }
            })
            .await
    }

    async fn get_user(&self, name: &str) -> Result<Option<Value>, ProviderError> {
        let reply = self
            .call(&["ACL".into(), "GETUSER".into(), name.into()])
            .await?;
        Ok(match reply {
            Value::Nil => None,
            v => Some(v),
        })
    }

    async fn set_user(&self, name: &str, args: Vec<String>) -> Result<(), ProviderError> {
        let mut all = vec!["ACL".to_owned(), "SETUSER".into(), name.into()];
        all.extend(args);
        self.call(&all).await?;
        self.persist().await
    }

    async fn persist(&self) -> Result<(), ProviderError> {
        if !self.config.acl_save {
            return Ok(());
        }
        self.call(&["ACL".into(), "SAVE".into()]).await.map(|_| ()).map_err(|e| {
            ProviderError::Config(format!(
                "ACL SAVE failed ({e}); configure `aclfile` on the Redis server or set acl_save = false under [redis] in platform.toml"
            ))
        })
    }
}

#[async_trait]
impl Provider for RedisProvider {
    async fn read(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let name = required_str(current, "name")?;
        Ok(self
            .get_user(name)
            .await?
            .map(|reply| user_attributes(name, &reply)))
    }

    /// In bulk: every user from one `ACL LIST`.
    async fn read_many(&self, reads: &[ReadRequest<'_>], _: ReadOptions) -> Vec<ReadResult> {
        let users = match self.call(&["ACL".into(), "LIST".into()]).await {
            Ok(reply) => listed_users(&reply),
            Err(e) => return failed_batch(reads, &e),
        };
        reads
            .iter()
            .map(|(_, current)| Ok(users.get(required_str(current, "name")?).cloned()))
            .collect()
    }

    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let name = required_str(a, "name")?;
        // Resume: the user may exist from the interrupted run (it has this create's
        // mark), with a password nobody recorded; `reset` gives it a new one along with
        // the rules. Any other user of the name is someone else's.
        if let Some(reply) = self.get_user(name).await?
            && !(mode.is_resume() && made_by(&reply, mode.token()))
        {
            return Err(ProviderError::AlreadyExists {
                what: format!("Redis ACL user {name:?}"),
            });
        }
        let password = generate_password(32);
        let mut args = vec!["reset".to_owned(), format!("#{}", password_hash(&password))];
        args.extend(rule_args(a));
        args.push(format!("&{CREATE_MARK}{}", mode.token()));
        self.set_user(name, args).await?;
        Ok(generated_password(password))
    }

    async fn update(
        &self,
        resource: &Resource,
        _current: &Attributes,
        changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        let a = &resource.attributes;
        let name = required_str(a, "name")?;
        // A password the plan changes (rotation, credentials delivered anew) replaces
        // every password the user has, and is handed over; otherwise the user keeps
        // its password (state does not hold it) and only the rules are set.
        let mut args = Vec::new();
        let mut computed = Attributes::new();
        if changed.iter().any(|c| c == "password") {
            let password = generate_password(32);
            args.push("resetpass".to_owned());
            args.push(format!("#{}", password_hash(&password)));
            computed = generated_password(password);
        }
        args.extend(rule_args(a));
        self.set_user(name, args).await?;
        Ok(computed)
    }

    async fn delete(
        &self,
        _address: &ResourceAddress,
        current: &Attributes,
    ) -> Result<(), ProviderError> {
        let name = required_str(current, "name")?;
        // DELUSER of a missing user answers 0; it also disconnects the user's clients.
        self.call(&["ACL".into(), "DELUSER".into(), name.into()])
            .await?;
        self.persist().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_create_mark_proves_its_create_and_is_not_a_channel_of_the_resource() {
        let token = CreateToken::issue();
        let reply = Value::Array(vec![
            Value::BulkString(b"flags".to_vec()),
            Value::Array(vec![Value::BulkString(b"on".to_vec())]),
            Value::BulkString(b"channels".to_vec()),
            Value::BulkString(format!("&app:* &{CREATE_MARK}{token}").into_bytes()),
        ]);
        assert!(made_by(&reply, token));
        assert!(!made_by(&reply, CreateToken::issue()));
        assert_eq!(user_attributes("u", &reply)["channels"], json!(["app:*"]));
    }

    #[test]
    fn password_hash_is_hex_sha256() {
        assert_eq!(
            password_hash("pw123"),
            "23d47445adfb8991789b459b6ba1b974d727d310aa9d80b7c2875b9430c0ba25"
        );
    }

    #[test]
    fn getuser_reply_becomes_attributes() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            b("flags"),
            Value::Array(vec![b("on"), b("sanitize-payload")]),
            b("passwords"),
            Value::Array(vec![b("abc")]),
            b("commands"),
            b("+@all -@dangerous"),
            b("keys"),
            b("~tenant:x:*"),
            b("channels"),
            b(""),
        ]);
        let a = user_attributes("u", &reply);
        assert_eq!(a["enabled"], json!(true));
        assert_eq!(a["keys"], json!(["tenant:x:*"]));
        assert_eq!(a["channels"], json!([]));
        assert_eq!(a["commands"], json!(["+@all", "-@dangerous"]));
    }

    #[test]
    fn an_acl_list_line_gives_what_getuser_gives() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let list = Value::Array(vec![
            b("user default on nopass sanitize-payload ~* &* +@all"),
            b(
                "user u on sanitize-payload #abc ~tenant:x:* %R~ro:* resetchannels -@all +get +set (~other +ping)",
            ),
            b("user v off resetchannels &news &tenantform-create:abc -@all"),
        ]);
        let users = listed_users(&list);
        let getuser = Value::Array(vec![
            b("flags"),
            Value::Array(vec![b("on"), b("sanitize-payload")]),
            b("passwords"),
            Value::Array(vec![b("abc")]),
            b("commands"),
            b("-@all +get +set"),
            b("keys"),
            b("~tenant:x:* %R~ro:*"),
            b("channels"),
            b(""),
        ]);
        assert_eq!(users["u"], user_attributes("u", &getuser));
        assert_eq!(users["v"]["enabled"], json!(false));
        assert_eq!(users["v"]["channels"], json!(["news"]));
        assert_eq!(users["default"]["keys"], json!(["*"]));
        assert_eq!(users.len(), 3);
    }

    #[test]
    fn rules_reset_keys_channels_and_commands() {
        let a = Attributes::from([
            ("enabled".into(), json!(true)),
            ("keys".into(), json!(["tenant:x:*"])),
            ("channels".into(), json!([])),
            ("commands".into(), json!(["+@all", "-@dangerous"])),
        ]);
        assert_eq!(
            rule_args(&a),
            [
                "on",
                "resetkeys",
                "~tenant:x:*",
                "resetchannels",
                "nocommands",
                "+@all",
                "-@dangerous"
            ]
        );
    }
}
