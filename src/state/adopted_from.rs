//! Where an adopted tenant came from: the Terraform state whose objects `tenantform
//! adopt` took over, recorded in the tenant's state as [`AdoptedFrom`].
//!
//! It is provenance only (which lineage and serial of which Terraform state, which of
//! its addresses became which resource): nothing is planned differently because of
//! it. The one thing an adopted state lacks, the role's password (Terraform had it and
//! it is never taken over), is set anew by the next apply under the plan's general
//! rule for a generated secret that state does not hold.
//!
//! # Versions
//!
//! - **1**: `tool`, `source`, `lineage`, `serial`, `terraform_version`, `adopted_at`,
//!   `objects`.
//!
//! The field is optional in [`super::TenantState`] and left out when absent, so state
//! files written before it existed load unchanged and those of tenants that were never
//! adopted look as they did. A record of a newer version than this build knows is
//! refused with a message saying so, never half-read.

use chrono::{DateTime, Utc};
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use crate::resource::ResourceAddress;

/// The version of [`AdoptedFrom`] this build writes.
pub const ADOPTED_FROM_VERSION: u32 = 1;

/// The Terraform state a tenant's resources were adopted from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptedFrom {
    #[serde(deserialize_with = "known_version")]
    pub version: u32,
    /// The tool that managed the objects before: `terraform`.
    pub tool: String,
    /// The state file as given: a path or `s3://bucket/key`.
    pub source: String,
    /// The Terraform state's lineage and serial when it was read.
    pub lineage: String,
    pub serial: u64,
    pub terraform_version: String,
    pub adopted_at: DateTime<Utc>,
    /// Which Terraform objects became which resource, sorted by address.
    pub objects: Vec<AdoptedObject>,
}

/// One resource of the tenant and the Terraform objects it was adopted from (a bucket
/// is the `aws_s3_bucket` and its `_versioning`, `_lifecycle_configuration` and
/// `_public_access_block` parts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptedObject {
    pub address: ResourceAddress,
    /// Terraform addresses, e.g. `module.tenant["acme"].aws_s3_bucket.documents`.
    pub terraform: Vec<String>,
}

fn known_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    super::known_record_version(
        u32::deserialize(deserializer)?,
        "adopted_from",
        ADOPTED_FROM_VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AdoptedFrom {
        AdoptedFrom {
            version: ADOPTED_FROM_VERSION,
            tool: "terraform".into(),
            source: "s3://tf-state/prod/terraform.tfstate".into(),
            lineage: "2c24d3cd-d3c3-4828-a8cc-4a73d75ff2c1".into(),
            serial: 12,
            terraform_version: "1.11.4".into(),
            adopted_at: "2026-11-23T16:00:00Z".parse().unwrap(),
            objects: vec![AdoptedObject {
                address: "acme/s3_bucket.documents".parse().unwrap(),
                terraform: vec![
                    "module.tenant[\"acme\"].aws_s3_bucket.documents".into(),
                    "module.tenant[\"acme\"].aws_s3_bucket_versioning.documents".into(),
                ],
            }],
        }
    }

    #[test]
    fn reads_back_what_it_writes_and_refuses_a_newer_version() {
        let json = serde_json::to_value(record()).unwrap();
        assert_eq!(json["version"], ADOPTED_FROM_VERSION);
        assert_eq!(
            serde_json::from_value::<AdoptedFrom>(json.clone()).unwrap(),
            record()
        );
        let mut newer = json;
        newer["version"] = 2.into();
        let err = serde_json::from_value::<AdoptedFrom>(newer)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("version 2") && err.contains("newer tenantform"),
            "{err}"
        );
    }
}
