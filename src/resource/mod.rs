//! The resource model every stage shares: addresses, types, attributes and the
//! per-type schema that says how an attribute is diffed.
//!
//! A [`Resource`] is what the blueprint *wants*; a [`crate::state::ResourceState`]
//! is what the engine *believes exists*. Both carry [`Attributes`]: a sorted map of
//! JSON values, so that diffing, rendering and storing need no per-type code. What
//! differs per type lives in its [`Schema`]: which attributes force a replacement,
//! which are computed by the provider, which are secret.
//!
//! # Families
//!
//! Resource types come in families: the types one provider serves. Each family has
//! one file here (`postgres.rs`, `s3.rs`, ...) with its types' schemas and the shapes
//! of the structured attributes that the blueprint writes and the provider reads
//! (a table column, a lifecycle rule, an ARN with the account left out), so that the
//! two sides agree by construction. `resource_families!` below is the one table of
//! families: it declares the family modules, [`Family`], [`ResourceType`] and
//! [`schema`]. Adding a family is a file here, one in `blueprint/` and one in
//! `provider/`, an entry in the table, and the lines the compiler then asks for (the
//! engine's provider for the family, and the blueprint's call).
//!
//! Architecture invariant: this module imports nothing else of the crate. Every stage
//! may use it; it uses none.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Attribute values of one resource, sorted by name.
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// A tenant id: 2 to 32 characters, lowercase letters, digits and single hyphens,
/// starting with a letter. The limits come from the strictest name derived from it
/// (an ElastiCache cluster id: 40 characters, no `--`, no trailing hyphen).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// The longest id accepted, in characters.
    pub const MAX_LEN: usize = 32;

    /// The id as written in specs and addresses.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id with hyphens as underscores, for SQL identifiers and Redis user names.
    pub fn underscored(&self) -> String {
        self.0.replace('-', "_")
    }

    /// Why `s` is not a valid tenant id, as a sentence a person can act on.
    pub fn problem(s: &str) -> Option<String> {
        if s.len() < 2 || s.len() > Self::MAX_LEN {
            return Some(format!(
                "must be 2 to {} characters long (it is {})",
                Self::MAX_LEN,
                s.len()
            ));
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Some("must start with a lowercase letter".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Some(format!(
                "may contain only lowercase letters, digits and hyphens (found {c:?})"
            ));
        }
        if s.ends_with('-') || s.contains("--") {
            return Some("must not end with a hyphen or contain two hyphens in a row".into());
        }
        None
    }
}

impl TryFrom<String> for TenantId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match Self::problem(&s) {
            None => Ok(TenantId(s)),
            Some(p) => Err(format!("invalid tenant id {s:?}: {p}")),
        }
    }
}

impl FromStr for TenantId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The one table of resource families: per family, its module in `resource/` and its
/// types, each with the name used in addresses, state and plans, and the name of its
/// [`Schema`] static in the family's module. Declares the family modules, [`Family`],
/// [`ResourceType`] and [`schema`]. The order is the order of types in plans and state.
macro_rules! resource_families {
    ($(
        $(#[doc = $doc:literal])*
        $family:ident => $module:ident {
            $($variant:ident = $name:literal => $schema:ident,)+
        }
    )+) => {
        $(pub mod $module;)+

        /// A family of resource types: the types that one provider serves and one file
        /// of `resource/` declares.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Family {
            $($(#[doc = $doc])* $family,)+
        }

        impl Family {
            /// Every family, in declaration order.
            pub const ALL: &'static [Family] = &[$(Family::$family,)+];

            /// The family's name: its module in `resource/`, `blueprint/` and `provider/`.
            pub fn name(self) -> &'static str {
                match self { $(Family::$family => stringify!($module),)+ }
            }

            /// The resource types of the family.
            pub fn types(self) -> &'static [ResourceType] {
                match self { $(Family::$family => &[$(ResourceType::$variant,)+],)+ }
            }
        }

        /// Every kind of resource the engine manages. The string form is the type part
        /// of an address, `tenant/TYPE.name`, and the `type` field in state and plans.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum ResourceType {
            $($(#[doc = concat!("`", $name, "`.")] #[serde(rename = $name)] $variant,)+)+
        }

        impl ResourceType {
            /// Every resource type, grouped by family in declaration order.
            pub const ALL: &'static [ResourceType] = &[$($(ResourceType::$variant,)+)+];

            /// The type's name in addresses, state and plans (`s3_bucket`).
            pub fn as_str(self) -> &'static str {
                match self { $($(ResourceType::$variant => $name,)+)+ }
            }

            /// The family the type belongs to, whose provider serves it.
            pub fn family(self) -> Family {
                match self { $($(ResourceType::$variant => Family::$family,)+)+ }
            }
        }

        impl FromStr for ResourceType {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($($name => Ok(ResourceType::$variant),)+)+
                    _ => Err(format!(
                        "unknown resource type {s:?}; known types: {}",
                        [$($($name,)+)+].join(", ")
                    )),
                }
            }
        }

        /// The schema of a resource type.
        pub fn schema(resource_type: ResourceType) -> &'static Schema {
            match resource_type { $($(ResourceType::$variant => &$module::$schema,)+)+ }
        }
    };
}

resource_families! {
    /// PostgreSQL: the tenant's schema, login role, grants, tables and row-level
    /// security.
    Postgres => postgres {
        PostgresSchema = "postgres_schema" => SCHEMA,
        PostgresRole = "postgres_role" => ROLE,
        PostgresSchemaGrant = "postgres_schema_grant" => SCHEMA_GRANT,
        PostgresTable = "postgres_table" => TABLE,
        PostgresRowSecurity = "postgres_row_security" => ROW_SECURITY,
        PostgresTableGrant = "postgres_table_grant" => TABLE_GRANT,
    }
    /// S3: the tenant's documents bucket and its policy.
    S3 => s3 {
        S3Bucket = "s3_bucket" => BUCKET,
        S3BucketPolicy = "s3_bucket_policy" => BUCKET_POLICY,
    }
    /// IAM: the tenant's managed policy, application role and their attachment.
    Iam => iam {
        IamPolicy = "iam_policy" => POLICY,
        IamRole = "iam_role" => ROLE,
        IamRolePolicyAttachment = "iam_role_policy_attachment" => ROLE_POLICY_ATTACHMENT,
    }
    /// ElastiCache: a dedicated Redis cluster (tiers with a dedicated cache).
    Elasticache => elasticache {
        ElasticacheCluster = "elasticache_cluster" => CLUSTER,
    }
    /// The tier's settings, one row in the platform's registry table.
    Settings => settings {
        TenantSettings = "tenant_settings" => TENANT_SETTINGS,
    }
    /// The tenant's ACL user on the shared Redis.
    Redis => redis {
        RedisAclUser = "redis_acl_user" => ACL_USER,
    }
    /// Where the tenant's embeddings live, in the backend the platform names.
    Vector => vector {
        VectorNamespace = "vector_namespace" => NAMESPACE,
    }
    /// The tenant's monitoring dashboard.
    Dashboard => dashboard {
        GrafanaDashboard = "grafana_dashboard" => GRAFANA_DASHBOARD,
    }
    /// The tenant's credentials, delivered to AWS Secrets Manager.
    Secret => secret {
        Secret = "secret" => CREDENTIALS,
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stable name of one resource: `tenant/type.name`, e.g.
/// `healthcare-systems/postgres_role.app`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceAddress {
    pub tenant: TenantId,
    pub resource_type: ResourceType,
    pub name: String,
}

impl ResourceAddress {
    /// The address of the resource `name` of type `resource_type` in `tenant`.
    pub fn new(tenant: &TenantId, resource_type: ResourceType, name: &str) -> Self {
        ResourceAddress {
            tenant: tenant.clone(),
            resource_type,
            name: name.to_owned(),
        }
    }

    /// The address without its tenant (`type.name`): the key inside a tenant's state.
    pub fn local(&self) -> String {
        format!("{}.{}", self.resource_type, self.name)
    }

    /// Parses `type.name` as an address inside `tenant`.
    pub fn parse_local(tenant: &TenantId, local: &str) -> Result<Self, String> {
        let (t, name) = local
            .split_once('.')
            .ok_or_else(|| format!("{local:?} is not of the form TYPE.NAME"))?;
        if name.is_empty() {
            return Err(format!("{local:?} has an empty resource name"));
        }
        Ok(ResourceAddress::new(tenant, t.parse()?, name))
    }
}

impl fmt::Display for ResourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.{}", self.tenant, self.resource_type, self.name)
    }
}

impl FromStr for ResourceAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (tenant, local) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an address of the form TENANT/TYPE.NAME"))?;
        let tenant: TenantId = tenant.parse()?;
        Self::parse_local(&tenant, local)
    }
}

impl Serialize for ResourceAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A resource the blueprint wants to exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub address: ResourceAddress,
    /// Desired values of the configurable attributes (never computed ones).
    pub attributes: Attributes,
    /// Resources that must exist before this one and be deleted after it.
    pub depends_on: Vec<ResourceAddress>,
    /// Values this resource takes from others when it is created or updated, by the
    /// name the provider sees them under: an ephemeral value (a password) computed in
    /// the same apply, or what state records of the other resource. Never recorded
    /// with this resource, never shown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Input>,
}

/// Where an input of a resource comes from: attribute `attribute` of resource `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub from: ResourceAddress,
    pub attribute: String,
}

impl Resource {
    /// A resource at `address` with no attributes and no dependencies yet.
    pub fn new(address: ResourceAddress) -> Self {
        Resource {
            address,
            attributes: Attributes::new(),
            depends_on: Vec::new(),
            inputs: BTreeMap::new(),
        }
    }

    /// Takes attribute `attribute` of `from` as input `name` (and depends on `from`).
    pub fn input(mut self, name: &str, from: &Resource, attribute: &str) -> Self {
        self.inputs.insert(
            name.to_owned(),
            Input {
                from: from.address.clone(),
                attribute: attribute.to_owned(),
            },
        );
        if !self.depends_on.contains(&from.address) {
            self.depends_on.push(from.address.clone());
        }
        self
    }

    /// Sets attribute `name` to `value`, replacing an earlier value.
    pub fn attr(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.attributes.insert(name.to_owned(), value.into());
        self
    }

    /// Records that this resource depends on `other`: it is created after it and
    /// deleted before it.
    pub fn depends_on(mut self, other: &Resource) -> Self {
        self.depends_on.push(other.address.clone());
        self
    }

    /// The schema of the resource's type.
    pub fn schema(&self) -> &'static Schema {
        schema(self.address.resource_type)
    }
}

/// Names one create of one resource, across its attempts and across runs: state records
/// it with the `creating` record before the provider is called, and the provider writes
/// it with the object (an IAM, ElastiCache or S3 tag, a PostgreSQL schema's or role's
/// comment, a Redis user's channel rule, as the provider module says). An object of the
/// resource's name that carries the token is the one this create made, whatever answers
/// were lost on the way; one that does not is someone else's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CreateToken(uuid::Uuid);

impl CreateToken {
    /// A token no other create has. It holds the instant it was made (a UUIDv7), which
    /// is before the create's first call: an object made earlier is not this create's.
    pub fn issue() -> Self {
        CreateToken(uuid::Uuid::now_v7())
    }

    /// When the token was made, in milliseconds since the Unix epoch (`None` for a
    /// token of another form, which no create of this build wrote).
    pub fn issued_at_millis(self) -> Option<u64> {
        let ts = self.0.get_timestamp()?;
        let (secs, nanos) = ts.to_unix();
        Some(secs * 1000 + u64::from(nanos) / 1_000_000)
    }

    /// Whether `text` (a comment, a tag value, an ACL rule) carries this token.
    pub fn is_in(self, text: &str) -> bool {
        text.contains(&self.0.to_string())
    }
}

impl fmt::Display for CreateToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CreateToken {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(CreateToken)
    }
}

/// An attribute a provider needs is missing or not of its kind: a blueprint bug, or a
/// state file edited by hand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("attribute {name} is missing or not {expected}")]
pub struct AttributeError {
    pub name: String,
    /// What it should be: "a string", "a number".
    pub expected: &'static str,
}

/// A string attribute, if it is one.
pub fn attr_str<'a>(attrs: &'a Attributes, name: &str) -> Option<&'a str> {
    attrs.get(name).and_then(Value::as_str)
}

/// A boolean attribute; absent or not a boolean reads as `false`.
pub fn attr_bool(attrs: &Attributes, name: &str) -> bool {
    attrs.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// A string attribute that must be there.
pub fn required_str<'a>(attrs: &'a Attributes, name: &str) -> Result<&'a str, AttributeError> {
    attr_str(attrs, name).ok_or_else(|| AttributeError {
        name: name.to_owned(),
        expected: "a string",
    })
}

/// An integer attribute that must be there.
pub fn required_int(attrs: &Attributes, name: &str) -> Result<i64, AttributeError> {
    attrs
        .get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| AttributeError {
            name: name.to_owned(),
            expected: "a number",
        })
}

/// The strings of a list attribute; absent reads as empty, and items that are not
/// strings are left out.
pub fn string_list(attrs: &Attributes, name: &str) -> Vec<String> {
    attrs
        .get(name)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The `tags` attribute of a taggable resource (S3, IAM, ElastiCache) as a map;
/// absent or malformed reads as no tags.
pub fn tags_of(attrs: &Attributes) -> BTreeMap<String, String> {
    attrs
        .get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Tags as the `tags` attribute holds them: a JSON object of strings.
pub fn tags_value<K: Into<String>, V: Into<String>>(
    tags: impl IntoIterator<Item = (K, V)>,
) -> Value {
    Value::Object(
        tags.into_iter()
            .map(|(k, v)| (k.into(), Value::String(v.into())))
            .collect(),
    )
}

/// How the engine treats one attribute of a resource type.
#[derive(Clone, Copy, Debug)]
pub struct AttributeSchema {
    pub name: &'static str,
    /// Set by the provider (an ARN, a generated password), never by the blueprint.
    pub computed: bool,
    /// A change cannot be made in place: the resource is replaced.
    pub force_new: bool,
    /// Shown as `(sensitive value)` in plans and never logged; kept only in state.
    pub sensitive: bool,
    /// The provider can read it back; unreadable attributes are kept from state on refresh.
    pub readable: bool,
    /// A computed value that is never recorded (a generated password): the apply hands
    /// it to the resources that take it as an input ([`Resource::input`]) and forgets
    /// it. State keeps only its version, attribute [`version_of`] the name.
    pub ephemeral: bool,
    pub compare: Compare,
}

/// The attribute that records the version of ephemeral attribute `name`
/// (`password_version` for `password`): what state keeps instead of the value.
pub fn version_of(name: &str) -> String {
    format!("{name}_version")
}

/// How two values of an attribute are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// JSON equality.
    Exact,
    /// Lists compared as sets (order and duplicates do not matter).
    Set,
    /// AWS policy documents, compared by meaning: key order, statement order, a single
    /// value or a list of one, and the order of actions, resources and principals do
    /// not matter. A document may be given as JSON text or as a JSON value.
    PolicyDocument,
}

impl AttributeSchema {
    const fn base(name: &'static str) -> Self {
        AttributeSchema {
            name,
            computed: false,
            force_new: false,
            sensitive: false,
            readable: true,
            ephemeral: false,
            compare: Compare::Exact,
        }
    }
    /// Configurable, updatable in place.
    pub const fn updatable(name: &'static str) -> Self {
        Self::base(name)
    }
    /// Configurable; a change replaces the resource.
    pub const fn force_new(name: &'static str) -> Self {
        AttributeSchema {
            force_new: true,
            ..Self::base(name)
        }
    }
    /// Set by the provider.
    pub const fn computed(name: &'static str) -> Self {
        AttributeSchema {
            computed: true,
            ..Self::base(name)
        }
    }
    /// The same attribute, shown as `(sensitive value)` in plans and never logged.
    pub const fn sensitive(self) -> Self {
        AttributeSchema {
            sensitive: true,
            ..self
        }
    }
    /// The same attribute, which the provider cannot read back: refresh keeps it from state.
    pub const fn unreadable(self) -> Self {
        AttributeSchema {
            readable: false,
            ..self
        }
    }
    /// The same attribute, never recorded: handed to the resources that take it as an
    /// input in the apply that computed it, its version recorded instead.
    pub const fn ephemeral(self) -> Self {
        AttributeSchema {
            ephemeral: true,
            ..self
        }
    }
    /// The same attribute, compared as a set ([`Compare::Set`]).
    pub const fn as_set(self) -> Self {
        AttributeSchema {
            compare: Compare::Set,
            ..self
        }
    }
    /// The same attribute, compared as a policy document ([`Compare::PolicyDocument`]).
    pub const fn as_policy(self) -> Self {
        AttributeSchema {
            compare: Compare::PolicyDocument,
            ..self
        }
    }

    /// Whether `a` and `b` mean the same value of this attribute.
    pub fn same(&self, a: Option<&serde_json::Value>, b: Option<&serde_json::Value>) -> bool {
        match (a, b, self.compare) {
            (Some(a), Some(b), Compare::Set) => match (a.as_array(), b.as_array()) {
                (Some(a), Some(b)) => {
                    let mut a: Vec<String> = a.iter().map(|v| v.to_string()).collect();
                    let mut b: Vec<String> = b.iter().map(|v| v.to_string()).collect();
                    a.sort();
                    a.dedup();
                    b.sort();
                    b.dedup();
                    a == b
                }
                _ => a == b,
            },
            (Some(a), Some(b), Compare::PolicyDocument) => {
                canonical_policy(a) == canonical_policy(b)
            }
            (a, b, _) => a == b,
        }
    }
}

/// A policy document in a canonical form, so that two documents that mean the same
/// compare equal (see [`Compare::PolicyDocument`]). Never fails: what is not a policy
/// is returned as it is.
pub fn canonical_policy(v: &serde_json::Value) -> serde_json::Value {
    fn list(x: &Value) -> Vec<Value> {
        match x {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        }
    }
    fn sorted(mut items: Vec<Value>) -> Value {
        // Strings (actions, ARNs) sort as themselves; only other values are serialized,
        // once each.
        items.sort_by_cached_key(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        items.dedup();
        Value::Array(items)
    }
    // Condition values: AWS answers `true` as `"true"`.
    fn scalar_text(v: Value) -> Value {
        match v {
            Value::Bool(b) => Value::String(b.to_string()),
            Value::Number(n) => Value::String(n.to_string()),
            other => other,
        }
    }
    fn map_values(x: &Value, f: impl Fn(&Value) -> Value) -> Value {
        match x {
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), f(v))).collect()),
            other => other.clone(),
        }
    }
    fn statement(st: &Value) -> Value {
        map_values_keyed(st, |k, x| match k {
            "Action" | "NotAction" | "Resource" | "NotResource" => sorted(list(x)),
            "Principal" | "NotPrincipal" => map_values(x, |p| sorted(list(p))),
            "Condition" => map_values(x, |op| {
                map_values(op, |c| {
                    sorted(list(c).into_iter().map(scalar_text).collect())
                })
            }),
            _ => x.clone(),
        })
    }
    fn map_values_keyed(x: &Value, f: impl Fn(&str, &Value) -> Value) -> Value {
        match x {
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), f(k, v))).collect())
            }
            other => other.clone(),
        }
    }
    let parsed;
    let doc = match v {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(p) => {
                parsed = p;
                &parsed
            }
            Err(_) => return v.clone(),
        },
        other => other,
    };
    map_values_keyed(doc, |k, x| match k {
        "Statement" => sorted(list(x).iter().map(statement).collect()),
        _ => x.clone(),
    })
}

/// The attribute schemas of one resource type.
#[derive(Debug)]
pub struct Schema {
    pub resource_type: ResourceType,
    pub attributes: &'static [AttributeSchema],
    /// Why a replacement is needed, shown in plans next to `-/+`.
    pub replace_note: &'static str,
}

impl Schema {
    /// The attribute called `name`, if the schema has one.
    pub fn attribute(&self, name: &str) -> Option<&AttributeSchema> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Whether attribute `name` is sensitive; `false` for an attribute the schema lacks.
    pub fn is_sensitive(&self, name: &str) -> bool {
        self.attribute(name).is_some_and(|a| a.sensitive)
    }
}

#[cfg(test)]
mod tests {
    use super::AttributeSchema as A;
    use super::*;

    #[test]
    fn tenant_ids_follow_the_naming_rules() {
        for ok in ["ab", "healthcare-systems", "t1", "a-b-c"] {
            assert!(TenantId::problem(ok).is_none(), "{ok} should be valid");
        }
        for bad in [
            "a",
            "Healthcare",
            "1abc",
            "ab_c",
            "ab-",
            "a--b",
            "abcdefghijklmnopqrstuvwxyzabcdefg",
        ] {
            assert!(TenantId::problem(bad).is_some(), "{bad} should be invalid");
        }
    }

    #[test]
    fn addresses_round_trip_through_their_string_form() {
        let a: ResourceAddress = "retail-chain/postgres_role.app".parse().unwrap();
        assert_eq!(a.tenant.as_str(), "retail-chain");
        assert_eq!(a.resource_type, ResourceType::PostgresRole);
        assert_eq!(a.to_string(), "retail-chain/postgres_role.app");
        assert_eq!(a.local(), "postgres_role.app");
        assert!("retail-chain/nope.app".parse::<ResourceAddress>().is_err());
        assert!("postgres_role.app".parse::<ResourceAddress>().is_err());
    }

    #[test]
    fn every_type_has_a_schema_for_itself() {
        for t in ResourceType::ALL {
            assert_eq!(schema(*t).resource_type, *t);
            assert_eq!(t.as_str().parse::<ResourceType>().unwrap(), *t);
        }
    }

    #[test]
    fn every_type_is_in_exactly_one_family() {
        let mut seen = Vec::new();
        for f in Family::ALL {
            for t in f.types() {
                assert_eq!(t.family(), *f);
                assert!(!seen.contains(t), "{t} is in two families");
                seen.push(*t);
            }
        }
        assert_eq!(seen, ResourceType::ALL);
        assert_eq!(Family::Postgres.to_string(), "postgres");
    }

    #[test]
    fn attribute_accessors_read_what_is_there_and_name_what_is_not() {
        let a = Attributes::from([
            ("name".into(), serde_json::json!("x")),
            ("n".into(), serde_json::json!(3)),
            ("on".into(), serde_json::json!(true)),
            ("list".into(), serde_json::json!(["a", 1, "b"])),
            ("tags".into(), tags_value([("TenantID", "t")])),
        ]);
        assert_eq!(required_str(&a, "name"), Ok("x"));
        assert_eq!(
            required_str(&a, "n").unwrap_err().to_string(),
            "attribute n is missing or not a string"
        );
        assert_eq!(required_int(&a, "n"), Ok(3));
        assert!(required_int(&a, "nope").is_err());
        assert!(attr_bool(&a, "on") && !attr_bool(&a, "name"));
        assert_eq!(string_list(&a, "list"), vec!["a", "b"]);
        assert!(string_list(&a, "nope").is_empty());
        assert_eq!(tags_of(&a)["TenantID"], "t");
    }

    #[test]
    fn policy_documents_compare_by_meaning() {
        let p = A::updatable("p").as_policy();
        let a = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
                           "Resource": "arn:aws:s3:::b/*",
                           "Principal": {"AWS": "arn:aws:iam::1:role/r"},
                           "Condition": {"Bool": {"aws:SecureTransport": false}}}]
        });
        let b = serde_json::json!(
            r#"{"Statement": {"Resource": ["arn:aws:s3:::b/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Principal": {"AWS": ["arn:aws:iam::1:role/r"]},
            "Action": ["s3:GetObject", "s3:PutObject"], "Effect": "Allow"}, "Version": "2012-10-17"}"#
        );
        assert!(p.same(Some(&a), Some(&b)));
        let c = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
            "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}]});
        assert!(!p.same(Some(&a), Some(&c)));
        // Not a policy at all: compared as it is, no panic.
        let junk = serde_json::json!("{not json");
        assert!(p.same(Some(&junk), Some(&junk)));
        assert!(!p.same(Some(&junk), Some(&a)));
    }

    #[test]
    fn set_attributes_ignore_order_and_duplicates() {
        let s = A::updatable("p").as_set();
        let a = serde_json::json!(["SELECT", "INSERT"]);
        let b = serde_json::json!(["INSERT", "SELECT", "SELECT"]);
        assert!(s.same(Some(&a), Some(&b)));
        assert!(!s.same(Some(&a), Some(&serde_json::json!(["SELECT"]))));
        assert!(!A::updatable("p").same(Some(&a), Some(&b)));
    }
}
