//! The contract of the HTTP API: schemathesis (installed by `scripts/api-tools`, its path
//! in `TENANTFORM_SCHEMATHESIS`) reads the OpenAPI document a real `tenantform serve`
//! serves at `/openapi.json` and sends every operation generated requests, valid and
//! invalid, with a token that has every scope; every answer must be what the document
//! says: no 5xx, a documented status, the documented content type, a body that fits
//! the documented schema.
//!
//! Bounded: a few examples per operation, a deadline per example, and the whole run is
//! killed after [`SCHEMATHESIS_LIMIT`]. Nothing is executed: the platform's runs go to
//! workers (`[runs] executor = "workers"`) and none is started, so a generated request
//! that happens to be valid queues a run that stays queued, and no infrastructure is
//! touched. The test checks what schemathesis did, not only its exit status: its JUnit
//! report must name every operation of `docs/openapi.json`, each passed, and each check
//! must have looked at more answers than there are operations.
//!
//! Left out of generation (`tests/contract/schemathesis_hooks.py`): header values with
//! control characters, which are not HTTP and which the server's HTTP parser refuses
//! before any route sees them.

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::server::{start_server_with, token_with};
use support::*;

const SECRET: &str = "api-contract-secret-0123456789abcdefghijklmn";
/// Schemathesis is killed after this.
const SCHEMATHESIS_LIMIT: Duration = Duration::from_secs(180);
/// Examples per operation and checking strategy (positive, then negative).
const MAX_EXAMPLES: &str = "15";
/// What schemathesis checks on every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// The path of schemathesis, which `scripts/api-tools` installs.
fn schemathesis() -> std::path::PathBuf {
    let path = std::env::var_os("TENANTFORM_SCHEMATHESIS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "TENANTFORM_SCHEMATHESIS is not set: run the tests with scripts/test, which installs schemathesis (scripts/api-tools) and exports its path"
            )
        });
    assert!(
        path.is_file(),
        "TENANTFORM_SCHEMATHESIS={} does not exist: run scripts/api-tools (or scripts/test) to install it",
        path.display()
    );
    path
}

/// Every operation of the stored document, as `METHOD /path`.
fn documented_operations() -> BTreeSet<String> {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap())
            .unwrap();
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                ops.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    ops
}

/// One `<testcase>` of a JUnit report: its name and what it holds.
struct Case {
    name: String,
    failed: bool,
    skipped: bool,
    text: String,
}

/// The test cases of schemathesis' JUnit report (one per operation).
fn junit_cases(xml: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<testcase") {
        let tail = &rest[start..];
        let open_end = tail.find('>').expect("a closed tag");
        let self_closing = tail[..open_end].ends_with('/');
        let end = if self_closing {
            open_end + 1
        } else {
            tail.find("</testcase>")
                .map(|i| i + "</testcase>".len())
                .expect("a closed test case")
        };
        let case = &tail[..end];
        let name = case
            .split_once("name=\"")
            .and_then(|(_, n)| n.split_once('"'))
            .map(|(n, _)| n.replace("&amp;", "&"))
            .expect("a test case has a name");
        cases.push(Case {
            name,
            failed: case.contains("<failure") || case.contains("<error"),
            skipped: case.contains("<skipped"),
            text: case.to_owned(),
        });
        rest = &tail[end..];
    }
    cases
}

/// Schemathesis finds every answer of every operation as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_openapi_document_says() {
    let tool = schemathesis();
    // One tenant with a spec (not applied), so that the listing has something to show.
    let tenant = TenantDef::new("contract", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&tenant)).await;
    ws.edit_platform(|p| p.replace("executor = \"embedded\"", "executor = \"workers\""));
    let server = start_server_with(&ws, &[("TENANTFORM_JWT_SECRET", SECRET)]).await;
    let token = token_with(
        &ws,
        SECRET,
        "contract-bot",
        "platform-admin,cfo",
        "tenants:read,runs:plan,runs:apply,requests:submit,approvals:decide",
    );

    let junit = ws.dir.path().join("schemathesis.xml");
    let child = tokio::process::Command::new(&tool)
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // utoipa writes OpenAPI 3.1, which the 3.x line reads behind this switch.
        .args(["--experimental", "openapi-3.1"])
        .args(["--data-generation-method", "all"])
        .args(["--hypothesis-max-examples", MAX_EXAMPLES])
        .args(["--hypothesis-deadline", "15000"])
        .args(["--request-timeout", "15000"])
        // Fixed, so that a failure is found again by the next run; no example database
        // kept between runs.
        .args(["--hypothesis-seed", "20261204"])
        .args(["--hypothesis-database", "none"])
        .args(["--hypothesis-suppress-health-check", "all"])
        .arg("--junit-xml")
        .arg(&junit)
        .arg("--no-color")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // Leaves out header values that are not HTTP: see the module's comment.
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", repo().join("tests/contract"))
        .current_dir(ws.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("schemathesis starts");
    let out = tokio::time::timeout(SCHEMATHESIS_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran past {SCHEMATHESIS_LIMIT:?}: killed"))
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = || std::fs::read_to_string(ws.dir.path().join("serve.log")).unwrap_or_default();
    let xml = std::fs::read_to_string(&junit).unwrap_or_else(|e| {
        panic!("schemathesis wrote no JUnit report ({e}):\n{stdout}\n{stderr}")
    });
    let cases = junit_cases(&xml);

    let failed: Vec<&Case> = cases.iter().filter(|c| c.failed).collect();
    assert!(
        failed.is_empty() && out.status.success(),
        "schemathesis found answers that are not what the document says ({}):\n{}\n{stdout}\n{stderr}\nserver log:\n{}",
        out.status,
        failed
            .iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        log()
    );
    // Every operation of the document was tested, none skipped.
    let documented = documented_operations();
    assert_eq!(documented.len(), 12, "the API's operations: {documented:?}");
    let tested: BTreeSet<String> = cases
        .iter()
        .filter(|c| !c.skipped)
        .map(|c| c.name.clone())
        .collect();
    let missing: Vec<&String> = documented.difference(&tested).collect();
    assert!(
        missing.is_empty() && tested.len() >= documented.len(),
        "schemathesis did not test {missing:?} (tested: {tested:?}):\n{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} passed", tested.len())),
        "schemathesis' summary does not report every operation passed:\n{stdout}"
    );
    // And each check looked at answers: at least one per operation, every one passed
    // (the summary's `CHECK  PASSED / PERFORMED passed`).
    for check in CHECKS.split(',') {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{check} ")))
            .unwrap_or_else(|| panic!("schemathesis did not report the check {check}:\n{stdout}"));
        let counts: Vec<usize> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            matches!(counts[..], [passed, performed] if passed == performed && performed >= documented.len()),
            "{check}: {line:?}: fewer answers checked than operations, or some failed"
        );
    }
}
