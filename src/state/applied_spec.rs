//! The spec of a tenant as last applied, as state files and saved plans record it.
//!
//! [`TenantSpec`] is the parsed input: it follows the spec file, and a release may add a
//! field to it. What is stored must stay readable however the input grows, so it has a
//! type of its own, [`AppliedSpec`], made from the input at the boundary
//! (`From<&TenantSpec>`) and carrying the version of its own shape.
//!
//! # Versions
//!
//! - **1**: `id`, `name`, `tier`, `region`, `budget_inr`, `owner_email`, `cost_center`,
//!   `data_classification`, `protected`. tenantform 0.1.0 wrote this shape without a
//!   `version` field (it stored the input type itself); such a record reads as version 1.
//!
//! # Changing it
//!
//! A field added here gets a default (`#[serde(default)]`), so that records without it
//! still read, and the version stays. A field renamed, removed or given a new meaning is
//! a new version: records of the older versions are converted while reading. A record of
//! a version newer than this build knows is refused with a message saying so, never
//! half-read.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use crate::resource::TenantId;
use crate::spec::TenantSpec;

/// The version of [`AppliedSpec`] this build writes.
pub const APPLIED_SPEC_VERSION: u32 = 1;

/// A tenant's spec as it was applied: what state keeps after the spec file is gone, and
/// what a saved plan will record in state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedSpec {
    /// The shape of this record; absent (version 1) in files of tenantform 0.1.0.
    #[serde(default = "unversioned", deserialize_with = "known_version")]
    pub version: u32,
    pub id: TenantId,
    pub name: String,
    pub tier: String,
    pub region: String,
    /// Monthly budget in INR.
    pub budget_inr: i64,
    pub owner_email: String,
    pub cost_center: String,
    pub data_classification: String,
    #[serde(default)]
    pub protected: bool,
}

impl From<&TenantSpec> for AppliedSpec {
    fn from(spec: &TenantSpec) -> Self {
        AppliedSpec {
            version: APPLIED_SPEC_VERSION,
            id: spec.id.clone(),
            name: spec.name.clone(),
            tier: spec.tier.clone(),
            region: spec.region.clone(),
            budget_inr: spec.budget_inr,
            owner_email: spec.owner_email.clone(),
            cost_center: spec.cost_center.clone(),
            data_classification: spec.data_classification.clone(),
            protected: spec.protected,
        }
    }
}

/// The version of a record written before records had one.
fn unversioned() -> u32 {
    1
}

fn known_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    super::known_record_version(
        u32::deserialize(deserializer)?,
        "the applied spec",
        APPLIED_SPEC_VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TenantSpec {
        TenantSpec {
            id: "acme".parse().unwrap(),
            name: "Acme".into(),
            tier: "gold".into(),
            region: "us-east-1".into(),
            budget_inr: 1_500_000,
            owner_email: "ops@acme.example".into(),
            cost_center: "CC-1".into(),
            data_classification: "phi".into(),
            protected: true,
        }
    }

    #[test]
    fn is_written_with_its_version_and_reads_back_the_same() {
        let applied = AppliedSpec::from(&spec());
        let json = serde_json::to_value(&applied).unwrap();
        assert_eq!(json["version"], APPLIED_SPEC_VERSION);
        assert_eq!(json["id"], "acme");
        let back: AppliedSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, applied);
    }

    /// The shape tenantform 0.1.0 stored (the input type, no version) reads as version 1,
    /// and a record of a later release with a field this one does not know still reads.
    #[test]
    fn an_unversioned_record_is_version_1_and_unknown_fields_are_ignored() {
        let old: AppliedSpec = serde_json::from_str(
            r#"{"id": "acme", "name": "Acme", "tier": "gold", "region": "us-east-1",
                "budget_inr": 1500000, "owner_email": "ops@acme.example",
                "cost_center": "CC-1", "data_classification": "phi", "protected": true}"#,
        )
        .unwrap();
        assert_eq!(old, AppliedSpec::from(&spec()));
        let later: AppliedSpec = serde_json::from_str(
            r#"{"version": 1, "id": "acme", "name": "Acme", "tier": "gold",
                "region": "us-east-1", "budget_inr": 1500000, "owner_email": "ops@acme.example",
                "cost_center": "CC-1", "data_classification": "phi", "protected": true,
                "support_plan": "premium"}"#,
        )
        .unwrap();
        assert_eq!(later, AppliedSpec::from(&spec()));
    }

    #[test]
    fn a_newer_version_is_refused_with_a_message() {
        let err = serde_json::from_str::<AppliedSpec>(
            r#"{"version": 2, "id": "acme", "name": "Acme", "tier": "gold",
                "region": "us-east-1", "budget_inr": 1, "owner_email": "a@b.co",
                "cost_center": "CC-1", "data_classification": "phi"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("version 2") && err.contains("newer tenantform"),
            "{err}"
        );
    }
}
