//! Terraform's state file, format version 4 (Terraform 0.12 and later), read as far as
//! adoption needs it: its lineage and serial, and every resource instance with its
//! module, mode, type, name, index, status (`tainted`), deposed key and attributes.
//!
//! Only version 4 is read: an older file (version 3, Terraform 0.11) has another
//! shape, and a newer one may mean something this reader does not know. Either is
//! refused with the version found, never half-read.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::AdoptError;

/// The one state format version this reader understands.
pub const TERRAFORM_STATE_VERSION: u64 = 4;

/// A Terraform state (`terraform.tfstate`), as much of it as adoption reads.
#[derive(Clone, Debug, Deserialize)]
pub struct TerraformState {
    pub terraform_version: String,
    pub serial: u64,
    pub lineage: String,
    #[serde(default)]
    pub resources: Vec<TerraformResource>,
}

/// One `resource` or `data` block of a module instance, with its instances.
#[derive(Clone, Debug, Deserialize)]
pub struct TerraformResource {
    /// The module instance (`module.tenant["acme"]`); absent at the root module.
    #[serde(default)]
    pub module: Option<String>,
    /// `managed` or `data`.
    pub mode: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    #[serde(default)]
    pub instances: Vec<TerraformInstance>,
}

/// One instance of a resource (one per `count` index or `for_each` key).
#[derive(Clone, Debug, Deserialize)]
pub struct TerraformInstance {
    /// The `count` index or `for_each` key; absent for a single instance.
    #[serde(default)]
    pub index_key: Option<Value>,
    /// `tainted` for an instance Terraform will replace; absent otherwise.
    #[serde(default)]
    pub status: Option<String>,
    /// Set for an object a `create_before_destroy` replacement left behind.
    #[serde(default)]
    pub deposed: Option<String>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

impl TerraformState {
    /// Parses the bytes of a state file; `source` names it in errors.
    pub fn parse(bytes: &[u8], source: &str) -> Result<TerraformState, AdoptError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| AdoptError::NotAState {
            file: source.to_owned(),
            problem: e.to_string(),
        })?;
        let version = value
            .get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| AdoptError::NotAState {
                file: source.to_owned(),
                problem: "it has no numeric \"version\" field".into(),
            })?;
        if version != TERRAFORM_STATE_VERSION {
            return Err(AdoptError::StateVersion {
                file: source.to_owned(),
                found: version,
            });
        }
        serde_json::from_value(value).map_err(|e| AdoptError::NotAState {
            file: source.to_owned(),
            problem: e.to_string(),
        })
    }
}

impl TerraformResource {
    /// The instance's address as Terraform writes it, e.g.
    /// `module.tenant["acme"].aws_s3_bucket.documents` or `data.aws_caller_identity.current`.
    pub fn address(&self, instance: &TerraformInstance) -> String {
        let mut out = String::new();
        if let Some(module) = &self.module {
            out.push_str(module);
            out.push('.');
        }
        if self.mode == "data" {
            out.push_str("data.");
        }
        out.push_str(&self.resource_type);
        out.push('.');
        out.push_str(&self.name);
        match &instance.index_key {
            None => {}
            Some(Value::String(k)) => {
                out.push_str(&format!("[{}]", Value::String(k.clone())));
            }
            Some(other) => out.push_str(&format!("[{other}]")),
        }
        out
    }
}

/// The tenant id of a module instance address under `template` (which holds `{id}`
/// once, e.g. `module.tenant["{id}"]`); `None` when `module` is not one of its
/// instances.
pub fn tenant_of_module<'a>(template: &str, module: &'a str) -> Option<&'a str> {
    let (prefix, suffix) = template.split_once("{id}")?;
    let id = module.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!id.is_empty() && !id.contains(['"', '[', ']', '.'])).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_versions_and_non_states_naming_the_file() {
        let v3 = br#"{"version": 3, "terraform_version": "0.11.14", "serial": 1, "lineage": "x", "modules": []}"#;
        let err = TerraformState::parse(v3, "old.tfstate")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("old.tfstate") && err.contains("version 3") && err.contains("version 4"),
            "{err}"
        );
        let err = TerraformState::parse(b"not json", "x.tfstate")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.tfstate") && err.contains("not a Terraform state"),
            "{err}"
        );
        let err = TerraformState::parse(
            br#"{"version": 4, "terraform_version": "1.11.4", "serial": 1}"#,
            "y.tfstate",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("y.tfstate") && err.contains("lineage"),
            "{err}"
        );
    }

    #[test]
    fn addresses_are_terraforms() {
        let state = TerraformState::parse(
            br#"{"version": 4, "terraform_version": "1.11.4", "serial": 3, "lineage": "l",
                 "resources": [
                   {"module": "module.tenant[\"acme\"]", "mode": "managed", "type": "aws_elasticache_cluster",
                    "name": "cache", "provider": "p", "instances": [{"index_key": 0, "attributes": {}}]},
                   {"mode": "data", "type": "aws_caller_identity", "name": "current",
                    "instances": [{"attributes": {}}]},
                   {"mode": "managed", "type": "aws_s3_bucket", "name": "b",
                    "instances": [{"index_key": "x", "attributes": {}}]}
                 ]}"#,
            "t.tfstate",
        )
        .unwrap();
        let addrs: Vec<String> = state
            .resources
            .iter()
            .map(|r| r.address(&r.instances[0]))
            .collect();
        assert_eq!(
            addrs,
            [
                "module.tenant[\"acme\"].aws_elasticache_cluster.cache[0]",
                "data.aws_caller_identity.current",
                "aws_s3_bucket.b[\"x\"]",
            ]
        );
        assert_eq!(state.lineage, "l");
        assert_eq!(state.serial, 3);
    }

    #[test]
    fn module_instances_give_their_tenant() {
        let t = "module.tenant[\"{id}\"]";
        assert_eq!(tenant_of_module(t, "module.tenant[\"acme\"]"), Some("acme"));
        assert_eq!(tenant_of_module(t, "module.other[\"acme\"]"), None);
        assert_eq!(
            tenant_of_module(t, "module.tenant[\"acme\"].module.inner"),
            None
        );
        assert_eq!(
            tenant_of_module("module.tenant_{id}", "module.tenant_acme"),
            Some("acme")
        );
    }
}
