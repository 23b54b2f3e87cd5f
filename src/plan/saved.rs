//! The saved plan file (`plan --out`, read by `apply PLANFILE` and `show PLANFILE`):
//! a [`Plan`] with a `kind` that says what the file is.
//!
//! Pure like the rest of the plan: bytes in, bytes out. The engine reads and writes the
//! file (atomically, mode 0600, like state). The plan's `format_version` is checked
//! before its content, so that a plan of another format is reported as such; within a
//! format, fields are only ever added, and the tenant specs it carries are
//! [`AppliedSpec`](crate::state::AppliedSpec)s, which read every older shape.

use serde::{Deserialize, Serialize};

use super::{PLAN_FORMAT_VERSION, Plan};

/// What a saved plan's `kind` says.
const SAVED_PLAN_KIND: &str = "tenantform-plan";

#[derive(Serialize, Deserialize)]
struct SavedPlan {
    kind: String,
    plan: Plan,
}

/// The file content for `plan`.
pub fn encode(plan: &Plan) -> Vec<u8> {
    let saved = SavedPlan {
        kind: SAVED_PLAN_KIND.into(),
        plan: plan.clone(),
    };
    serde_json::to_vec_pretty(&saved).expect("plan serializes")
}

/// The plan in a saved plan file, or what is wrong with the file (a sentence that
/// follows its path).
pub fn decode(bytes: &[u8]) -> Result<Plan, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a plan file (invalid JSON: {e})"))?;
    if value.get("kind").and_then(|k| k.as_str()) != Some(SAVED_PLAN_KIND) {
        return Err("not a plan file written by `tenantform plan --out`".into());
    }
    let version = value
        .pointer("/plan/format_version")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if version != PLAN_FORMAT_VERSION {
        return Err(format!(
            "plan format {version:?} is not {PLAN_FORMAT_VERSION:?}; plan again with this tenantform"
        ));
    }
    let saved: SavedPlan =
        serde_json::from_value(value).map_err(|e| format!("unexpected content: {e}"))?;
    Ok(saved.plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::APPLIED_SPEC_VERSION;

    /// A plan saved by tenantform 0.1.0 (its tenant spec has no version) reads, and
    /// reads the same after it is saved again.
    #[test]
    fn a_plan_saved_by_release_0_1_0_reads_and_round_trips() {
        let plan = decode(include_bytes!("testdata/education-platform-0.1.0.plan")).unwrap();
        let tenant = &plan.tenants[0];
        let spec = tenant.spec.as_ref().unwrap();
        assert_eq!((spec.version, spec.tier.as_str()), (1, "bronze"));
        assert_eq!(tenant.changes.len(), 1);
        assert_eq!(tenant.cost.as_ref().unwrap().monthly_inr, 15_300.0);

        let bytes = encode(&plan);
        let saved: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            saved["plan"]["tenants"][0]["spec"]["version"],
            APPLIED_SPEC_VERSION
        );
        assert_eq!(decode(&bytes).unwrap(), plan);
    }

    #[test]
    fn other_files_and_formats_are_refused_with_a_reason() {
        for (content, want) in [
            ("{not json", "invalid JSON"),
            (r#"{"kind": "something"}"#, "not a plan file written by"),
            (
                r#"{"kind": "tenantform-plan", "plan": {"format_version": "9.0"}}"#,
                "plan format \"9.0\" is not",
            ),
            (
                r#"{"kind": "tenantform-plan", "plan": {"format_version": "1.0"}}"#,
                "unexpected content",
            ),
        ] {
            let err = decode(content.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{content}: {err}");
        }
    }
}
