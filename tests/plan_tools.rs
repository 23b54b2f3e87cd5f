//! The JSON plan against the real tools that read `terraform show -json`: checkov
//! must scan every resource (and apply its AWS checks to the AWS equivalents), and
//! terraform-compliance must run a feature of ours and pass or fail on the data.
//!
//! The tools come from PyPI through `scripts/plan-tools` (run by `scripts/test`),
//! which exports their paths. Without them these tests fail: nothing is skipped.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{Workspace, repo};

/// The path of a tool `scripts/plan-tools` installed.
fn tool(variable: &str) -> PathBuf {
    let path = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{variable} is not set: run the tests with scripts/test, which installs checkov and terraform-compliance (scripts/plan-tools) and exports their paths"
        )
    });
    assert!(
        path.is_file(),
        "{variable}={} does not exist: run scripts/plan-tools (or scripts/test) to install it",
        path.display()
    );
    path
}

/// A workspace with the repository's example tenants (one per tier), and the JSON
/// plan of creating them, written to `plan.json` in it.
async fn example_plan() -> (Workspace, PathBuf, Value) {
    let ws = Workspace::new(&[]).await;
    for entry in std::fs::read_dir(repo().join("specs/tenants")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            ws.specs().join("tenants").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    let run = ws.run(&["plan", "--json", "--detailed-exitcode"]).code(2);
    assert_eq!(
        run.stdout.trim_end().lines().count(),
        1,
        "plan --json prints one line"
    );
    let plan: Value = serde_json::from_str(&run.stdout).expect("plan --json is JSON");
    let path = ws.dir.path().join("plan.json");
    std::fs::write(&path, &run.stdout).unwrap();
    (ws, path, plan)
}

fn resource_count(plan: &Value) -> usize {
    plan["resource_changes"].as_array().unwrap().len()
}

fn run_checkov(plan: &Path) -> Value {
    let out = Command::new(tool("TENANTFORM_CHECKOV"))
        .args([
            "--framework",
            "terraform_plan",
            "-o",
            "json",
            "--skip-download",
        ])
        .arg("-f")
        .arg(plan)
        // No calls home: everything it needs is in the package.
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .expect("checkov runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's output is not JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // One report per framework: a list when there are several.
    match report {
        Value::Array(mut reports) => reports.remove(0),
        one => one,
    }
}

fn checks<'a>(report: &'a Value, outcome: &str, id: &str) -> Vec<&'a str> {
    report["results"][outcome]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["check_id"] == id)
        .map(|c| c["resource"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn checkov_scans_every_resource_and_reads_the_buckets_right() {
    let (_ws, path, plan) = example_plan().await;
    let report = run_checkov(&path);
    let summary = &report["summary"];
    let scanned = summary["resource_count"]
        .as_u64()
        .expect("a resource_count");
    let planned = resource_count(&plan) as u64;
    assert_eq!(planned, 52, "17 + 17 + 18 resources of the example tenants");
    assert!(
        scanned >= planned,
        "checkov scanned {scanned} resources of a plan with {planned}: {summary}"
    );
    let evaluated = summary["passed"].as_u64().unwrap() + summary["failed"].as_u64().unwrap();
    assert!(evaluated > 0, "checkov applied no check: {summary}");
    // Versioning, the public access block and the lifecycle are separate resources
    // in the AWS provider: each bucket must be seen to have them.
    for id in ["CKV_AWS_21", "CKV2_AWS_6", "CKV2_AWS_61", "CKV_AWS_53"] {
        assert_eq!(
            checks(&report, "passed_checks", id).len(),
            3,
            "{id} should pass for the three buckets: {:?}",
            checks(&report, "failed_checks", id)
        );
    }
    eprintln!("checkov: {summary}");
}

fn run_compliance(plan: &Path) -> support::Run {
    let out = Command::new(tool("TENANTFORM_TERRAFORM_COMPLIANCE"))
        .arg("-p")
        .arg(plan)
        .arg("-f")
        .arg(repo().join("tests/compliance"))
        .arg("--no-ansi")
        .output()
        .expect("terraform-compliance runs");
    support::Run::from(out)
}

#[tokio::test]
async fn terraform_compliance_checks_the_tenant_tag() {
    let (ws, path, plan) = example_plan().await;
    let run = run_compliance(&path)
        .ok()
        .contains("1 features (1 passed)")
        .contains("3 steps (3 passed)");
    eprintln!("{}", run.stdout);

    // The same plan with one bucket's TenantID tag taken away.
    let mut untagged = plan.clone();
    let strip = |values: &mut Value| {
        if values["tags"]["TenantID"] == "retail-chain" {
            values["tags"].as_object_mut().unwrap().remove("TenantID");
        }
    };
    for module in untagged["planned_values"]["root_module"]["child_modules"]
        .as_array_mut()
        .unwrap()
    {
        for r in module["resources"].as_array_mut().unwrap() {
            if r["type"] == "s3_bucket" {
                strip(&mut r["values"]);
            }
        }
    }
    for rc in untagged["resource_changes"].as_array_mut().unwrap() {
        if rc["type"] == "s3_bucket" {
            strip(&mut rc["change"]["after"]);
        }
    }
    assert_ne!(untagged, plan, "a tag was removed");
    let path = ws.dir.path().join("untagged.json");
    std::fs::write(&path, untagged.to_string()).unwrap();
    run_compliance(&path)
        .code(1)
        .contains("Failure: retail-chain/s3_bucket.documents (s3_bucket) does not have TenantID property.")
        .contains("1 features (0 passed, 1 failed)");
}
