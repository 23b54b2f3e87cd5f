//! Loading and evaluating policies: levels, message forms, and bad policies.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

fn set(files: &[(&str, &str)]) -> Result<PolicySet, PolicyError> {
    let sources = files
        .iter()
        .map(|(name, src)| (PathBuf::from(name), name.to_string(), src.to_string()))
        .collect();
    PolicySet::from_sources(Path::new("policies"), sources)
}

fn plan(tier: &str, protected: bool, monthly: f64, budget: i64) -> Value {
    json!({
        "mode": "normal",
        "tenants": [{
            "tenant": "acme",
            "protected": protected,
            "spec": {"id": "acme", "tier": tier, "budget_inr": budget, "protected": protected},
            "cost": {"monthly_inr": monthly, "budget_inr": budget},
        }],
    })
}

fn example_policies() -> PolicySet {
    PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/policies"))
        .expect("the example policies load")
}

#[test]
fn deny_is_mandatory_and_warn_is_advisory() {
    let policies = set(&[(
        "p.rego",
        r#"package t
deny contains "no" if input.x == 1
warn contains "careful" if input.x >= 1
"#,
    )])
    .unwrap();
    let report = policies.evaluate(&json!({"x": 1})).unwrap();
    assert_eq!(report.mandatory().count(), 1);
    assert_eq!(report.advisory().count(), 1);
    assert_eq!(report.results[0].level, PolicyLevel::Mandatory);
    assert_eq!(report.results[0].message, "no");
    assert_eq!(report.results[0].policy, "t");
    assert_eq!(report.results[0].files, vec!["p.rego"]);
    let err = report.enforce().unwrap_err().to_string();
    assert!(
        err.starts_with(
            "1 mandatory policy violation (policies in policies); nothing was changed:"
        ),
        "{err}"
    );
    assert!(err.contains("t (p.rego): no"), "{err}");

    let report = policies.evaluate(&json!({"x": 2})).unwrap();
    assert_eq!(report.mandatory().count(), 0);
    assert_eq!(report.advisory().count(), 1);
    assert!(report.enforce().is_ok());
    assert_eq!(
        report.summary(),
        "1 policy file: 0 mandatory violations, 1 advisory warning"
    );
}

#[test]
fn messages_may_be_objects_naming_their_tenant() {
    let policies = set(&[(
        "p.rego",
        r#"package t
deny contains {"msg": sprintf("tenant %s is bad", [t.tenant]), "tenant": t.tenant} if {
    some t in input.tenants
}
warn contains {"not_msg": 1} if true
"#,
    )])
    .unwrap();
    let report = policies
        .evaluate(&json!({"tenants": [{"tenant": "b"}, {"tenant": "a"}]}))
        .unwrap();
    let mandatory: Vec<_> = report
        .mandatory()
        .map(|v| (v.message.as_str(), v.tenant.as_deref()))
        .collect();
    assert_eq!(
        mandatory,
        vec![
            ("tenant a is bad", Some("a")),
            ("tenant b is bad", Some("b"))
        ]
    );
    // Without a `msg`, the value itself is the message.
    assert_eq!(
        report.advisory().next().unwrap().message,
        r#"{"not_msg":1}"#
    );
}

#[test]
fn a_package_without_deny_or_warn_says_nothing() {
    let policies = set(&[("lib.rego", "package lib\nhelper := 1\n")]).unwrap();
    let report = policies.evaluate(&json!({})).unwrap();
    assert!(report.results.is_empty());
    assert_eq!(report.files, vec!["lib.rego"]);
}

#[test]
fn packages_across_files_are_evaluated_together() {
    let policies = set(&[
        ("a.rego", "package shared\nlimit := 2\n"),
        (
            "b.rego",
            "package shared\ndeny contains \"too many\" if count(input.items) > limit\n",
        ),
    ])
    .unwrap();
    let report = policies.evaluate(&json!({"items": [1, 2, 3]})).unwrap();
    assert_eq!(report.results.len(), 1);
    assert_eq!(report.results[0].files, vec!["a.rego", "b.rego"]);
}

#[test]
fn a_broken_policy_is_an_error_naming_its_file_and_line() {
    let err = set(&[(
        "broken.rego",
        "package t\n\ndeny contains msg if {\n  msg := \n}\n",
    )])
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PolicyError::Parse { .. }), "{text}");
    assert!(
        text.contains("policy broken.rego is not valid Rego"),
        "{text}"
    );
    assert!(
        text.ends_with("nothing was evaluated: broken.rego:4:7: expecting `}` while parsing set"),
        "{text}"
    );

    // Rego v0 syntax (no `if`/`contains`) is refused the same way, not misread.
    let err = set(&[("old.rego", "package t\ndeny[msg] { msg := \"x\" }\n")]).unwrap_err();
    assert!(err.to_string().contains("old.rego:2:"), "{err}");

    // Not Rego at all, and an empty file.
    for junk in ["\u{0}\u{1}{{{", "", "package"] {
        assert!(
            set(&[("junk.rego", junk)]).is_err(),
            "{junk:?} should not load"
        );
    }
}

#[test]
fn an_error_while_evaluating_names_the_policy() {
    let policies = set(&[(
        "div.rego",
        "package t\ndeny contains msg if { msg := sprintf(\"%d\", [1 / input.zero]) }\n",
    )])
    .unwrap();
    match policies.evaluate(&json!({"zero": 0})) {
        Err(PolicyError::Evaluate { policy, files, .. }) => {
            assert_eq!(policy, "t");
            assert_eq!(files, "div.rego");
        }
        // OPA leaves a division by zero undefined rather than failing; either way
        // nothing panics and nothing is reported as a violation.
        Ok(report) => assert!(report.results.is_empty()),
        Err(other) => panic!("unexpected {other}"),
    }
}

#[test]
fn a_missing_or_empty_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = PolicySet::load(&missing).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    // Tests of policies are not policies.
    std::fs::write(dir.path().join("x_test.rego"), "package t\n").unwrap();
    let err = PolicySet::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("has no .rego file"), "{err}");
}

#[test]
fn gold_tenants_must_be_protected() {
    let policies = example_policies();
    let report = policies.evaluate(&plan("gold", false, 1.0, 10)).unwrap();
    let v: Vec<_> = report.mandatory().collect();
    assert_eq!(v.len(), 1, "{report:?}");
    assert_eq!(v[0].policy, "tenantform.gold_protected");
    assert_eq!(v[0].tenant.as_deref(), Some("acme"));
    assert!(
        v[0].message.contains("protected = true"),
        "{}",
        v[0].message
    );
    let report = policies.evaluate(&plan("gold", true, 1.0, 10)).unwrap();
    assert_eq!(report.mandatory().count(), 0);
    let report = policies.evaluate(&plan("silver", false, 1.0, 10)).unwrap();
    assert_eq!(report.mandatory().count(), 0);
}

#[test]
fn a_monthly_estimate_above_budget_is_a_warning() {
    let policies = example_policies();
    let report = policies
        .evaluate(&plan("silver", false, 56_400.0, 50_000))
        .unwrap();
    let v: Vec<_> = report.advisory().collect();
    assert_eq!(v.len(), 1, "{report:?}");
    assert_eq!(v[0].policy, "tenantform.budget");
    assert!(v[0].message.contains("acme"), "{}", v[0].message);
    assert_eq!(report.mandatory().count(), 0);
    let report = policies
        .evaluate(&plan("silver", false, 56_400.0, 600_000))
        .unwrap();
    assert!(report.results.is_empty(), "{report:?}");
}
