//! The tenant lifecycle against the real stack: requests, approvals, provisioning,
//! the eight validation checks, activation, notifications (the stack's SMTP sink and
//! webhook receiver), rollback, and the audit trail.

mod support;

use std::fs;

use serde_json::Value;
use support::*;

/// A child process that is killed when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A request file for `t` (the format of a tenant spec).
fn request_file(ws: &Workspace, t: &TenantDef) -> String {
    let path = ws.dir.path().join(format!("request-{}.toml", t.id));
    fs::write(&path, t.toml()).unwrap();
    path.display().to_string()
}

fn status(ws: &Workspace, id: &str) -> Value {
    let run = ws.run(&["request", "status", id, "--json"]).ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// Lines of a sink file (mail.jsonl, webhooks.jsonl) that mention `needle`.
fn sink(file: &str, needle: &str) -> Vec<Value> {
    let path = std::path::Path::new(&env("TENANTFORM_STACK_DIR")).join(file);
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn mail_to(needle: &str, to: &str) -> bool {
    sink("mail.jsonl", needle)
        .iter()
        .any(|m| m["to"].as_array().unwrap().iter().any(|a| a == to))
}

/// Whether the registry holds the tenant's spec (where every worker and plan reads it).
async fn registered_spec(ws: &Workspace, id: &str) -> bool {
    ws.admin()
        .await
        .query_opt(
            "SELECT 1 FROM tenantform.tenant_specs WHERE tenant = $1",
            &[&id],
        )
        .await
        .unwrap()
        .is_some()
}

/// Transitions of the audit trail, as "from->to".
fn transitions(view: &Value) -> Vec<String> {
    view["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "status")
        .map(|e| {
            format!(
                "{}->{}",
                e["from_status"].as_str().unwrap(),
                e["to_status"].as_str().unwrap()
            )
        })
        .collect()
}

/// Gold, Silver and Bronze requests, each with the approvals its rules require, all
/// end `active` with all eight checks passed; the owner, the platform team and finance
/// are notified by e-mail and the webhook; the audit trail tells the story in order.
#[tokio::test]
async fn three_requests_go_through_approval_to_active_with_all_checks() {
    let mut gold = TenantDef::new("wf-gold", "gold");
    gold.budget_inr = 1_500_000;
    gold.classification = "phi".into();
    let mut silver = TenantDef::new("wf-silver", "silver");
    silver.region = "eu-west-1".into();
    silver.classification = "eu-personal".into();
    let mut bronze = TenantDef::new("wf-bronze", "bronze");
    bronze.region = "ap-south-1".into();
    bronze.budget_inr = 200_000;
    let ws = Workspace::new(&[]).await;
    // The workspace's tenants are cleaned up when it is dropped.
    let mut ws = ws;
    ws.tenants = vec![gold.clone(), silver.clone(), bronze.clone()];

    // (tenant, approvals its rules require)
    let cases = [
        (&gold, vec!["cfo", "compliance", "cto", "dpo", "legal"]),
        (&silver, vec!["compliance", "dpo", "legal"]),
        (&bronze, vec![]),
    ];
    for (t, roles) in &cases {
        let file = request_file(&ws, t);
        let run = ws
            .run(&[
                "request",
                "submit",
                &file,
                "--requester",
                "requester@wf.example",
            ])
            .ok();
        let view = status(&ws, &t.id);
        let required: Vec<&str> = view["required_approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["role"].as_str().unwrap())
            .collect();
        assert_eq!(&required, roles, "{}", t.id);
        if roles.is_empty() {
            assert_eq!(view["status"], "active", "{}\n{view:#}", run.all());
            continue;
        }
        assert_eq!(view["status"], "pending_approval");
        assert!(
            run.stdout
                .contains(&format!("waiting for: {}", roles.join(", "))),
            "{}",
            run.stdout
        );
        for (i, role) in roles.iter().enumerate() {
            let run = ws
                .run(&[
                    "request",
                    "approve",
                    &t.id,
                    "--as",
                    role,
                    "--by",
                    &format!("{role}-person"),
                    "--note",
                    "ok",
                ])
                .ok();
            let expected = if i + 1 == roles.len() {
                "active"
            } else {
                "pending_approval"
            };
            assert!(
                run.stdout.contains(&format!("It is now {expected}.")),
                "{}",
                run.all()
            );
        }
    }

    for (t, roles) in &cases {
        let view = status(&ws, &t.id);
        assert_eq!(view["status"], "active", "{view:#}");
        let checks = view["checks"].as_array().unwrap();
        let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "database_connectivity",
                "cross_tenant_isolation",
                "vector_search",
                "jwt_claims",
                "query_latency",
                "s3_access",
                "metrics_endpoint",
                "cost_tags"
            ]
        );
        for c in checks {
            assert_eq!(c["passed"], true, "{}: {c:#}", t.id);
            assert!(
                c["duration_ms"].is_u64() && c["message"].as_str().is_some_and(|m| !m.is_empty())
            );
        }
        // The credentials come from the tenant's secret, and another tenant's role (the
        // tenants are provisioned one after another, so each but the first has one to
        // try) is refused it.
        if t.id != cases[0].0.id {
            let isolation = checks[1]["message"].as_str().unwrap();
            assert!(
                isolation.contains("is refused this tenant's credentials secret"),
                "{}: {isolation}",
                t.id
            );
        }
        // The story, in order.
        let mut expected = vec![
            "pending_approval->approved",
            "approved->provisioning",
            "provisioning->validating",
            "validating->active",
        ];
        if roles.is_empty() {
            expected[0] = "pending_approval->approved";
        }
        assert_eq!(transitions(&view), expected, "{}", t.id);
        let actions: Vec<&str> = view["audit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions[0], "submitted");
        assert_eq!(
            actions.iter().filter(|a| **a == "approval").count(),
            roles.len()
        );
        assert!(
            actions.contains(&"configured") && actions.ends_with(&["notification"]),
            "{actions:?}"
        );
        let seqs: Vec<i64> = view["audit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        // Notified: the owner, the platform team, finance; and the webhook.
        let subject = format!("Tenant {} (", t.id);
        for to in [
            format!("owner@{}.example", t.id),
            "platform-team@rag-platform.example".into(),
            "finance@rag-platform.example".into(),
        ] {
            assert!(mail_to(&subject, &to), "{} not mailed to {to}", t.id);
        }
        assert!(
            sink("webhooks.jsonl", &format!("Tenant {} (", t.id))
                .iter()
                .any(|w| w["body"]["text"].as_str().unwrap().contains("is active")),
            "{}: no webhook",
            t.id
        );
        // The tenant's spec is in the registry (no file is written), and it matches its
        // state: a plan is clean.
        assert!(registered_spec(&ws, &t.id).await, "{}", t.id);
        assert!(!ws.specs().join(format!("tenants/{}.toml", t.id)).exists());
    }
    ws.run(&["plan", "--detailed-exitcode"]).code(0);

    // Gold got its demo documents, stamped as its own by row-level security.
    let n: i64 = ws
        .admin()
        .await
        .query_one(&format!("SELECT count(*) FROM {}.documents WHERE metadata->>'demo' = 'true' AND tenant_id = $1", gold.pg_name()), &[&gold.id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    // The metrics endpoint of `tenantform serve` has the figures.
    let port = free_port();
    let server = KillOnDrop(
        ws.command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env(
                "TENANTFORM_JWT_SECRET",
                "a-test-secret-of-at-least-32-bytes-0123",
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tenantform starts"),
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut text = String::new();
    wait_until(
        "tenantform serve",
        std::time::Duration::from_secs(30),
        || {
            text = http_get(&url).unwrap_or_default();
            !text.is_empty()
        },
    );
    drop(server);
    assert!(
        text.contains("tenantform_requests{status=\"active\"} 3"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "tenantform_tenant_info{{tenant=\"{}\",tier=\"gold\"",
            gold.id
        )),
        "{text}"
    );
    assert!(text.contains("tenantform_provisioning_duration_seconds_count{tier=\"silver\",region=\"eu-west-1\",outcome=\"active\"} 1"), "{text}");
    assert!(
        text.contains("tenantform_provisioning_successes_total{tier=\"bronze\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tenantform_validation_check_duration_seconds_count{check=\"cost_tags\"} 3"),
        "{text}"
    );

    // validate-tenant re-runs the suite on an active tenant.
    let run = ws.run(&["validate-tenant", &bronze.id, "--json"]).ok();
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["checks"].as_array().unwrap().len(), 8);
    assert_eq!(status(&ws, &bronze.id)["status"], "active");

    // Each provisioning was a run, executed by the command that queued it.
    let runs = ws.run(&["runs", "list", "--json"]).ok();
    let runs: Value = serde_json::from_str(&runs.stdout).unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{runs:#?}");
    for r in runs {
        assert_eq!(r["operation"], "provision");
        assert_eq!(r["status"], "applied");
        assert!(r["lease_owner"].is_null(), "the lease was released");
    }

    // Export moves a tenant from the registry to a file, which wins from then on; a
    // specs directory without the file refuses to plan the tenant rather than fall
    // back to the registry's copy.
    let file = ws.specs().join(format!("tenants/{}.toml", bronze.id));
    ws.run(&["request", "export", &bronze.id]).ok();
    let exported = fs::read_to_string(&file).unwrap();
    assert!(
        exported.contains(&format!("id = \"{}\"", bronze.id)),
        "{exported}"
    );
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    fs::remove_file(&file).unwrap();
    ws.run(&["plan", "--refresh=false"])
        .code(1)
        .contains(&format!(
            "tenant {} was exported to specs/tenants/{}.toml",
            bronze.id, bronze.id
        ));
    fs::write(&file, &exported).unwrap();
    ws.run(&["plan", "--refresh=false", "--detailed-exitcode"])
        .code(0);

    // The demo documents are rows of the tenant's `documents` table, not a resource of
    // their own: destroying the tenant removes them with the table.
    ws.run(&["destroy", "--tenant", &gold.id, "--auto-approve"])
        .ok();
    let table: Option<String> = ws
        .admin()
        .await
        .query_one(
            "SELECT to_regclass($1)::text",
            &[&format!("{}.documents", gold.pg_name())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(table, None, "the demo documents are gone with the tenant");
}

/// A ₹2.5 crore request waits for CFO, CTO and Legal; an approver it does not need is
/// refused; a rejection ends it, notifies the requester, and nothing is provisioned.
#[tokio::test]
async fn a_large_budget_waits_for_three_approvers_and_a_rejection_ends_it() {
    let mut big = TenantDef::new("wf-big", "gold");
    big.region = "ap-south-1".into();
    big.budget_inr = 25_000_000;
    let mut ws = Workspace::new(&[]).await;
    ws.tenants = vec![big.clone()];
    let file = request_file(&ws, &big);
    ws.run(&[
        "request",
        "submit",
        &file,
        "--requester",
        "big-requester@wf.example",
    ])
    .ok()
    .contains("waiting for: cfo, cto, legal");
    let view = status(&ws, &big.id);
    assert_eq!(
        view["pending_approvals"],
        serde_json::json!(["cfo", "cto", "legal"])
    );
    let legal = view["required_approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["role"] == "legal")
        .unwrap()
        .clone();
    assert!(
        legal["reasons"][0]
            .as_str()
            .unwrap()
            .contains("above ₹50 lakh"),
        "{legal}"
    );

    ws.run(&["request", "approve", &big.id, "--as", "cfo"])
        .ok()
        .contains("It is now pending_approval.");
    ws.run(&["request", "approve", &big.id, "--as", "dpo"])
        .code(1)
        .contains("does not need the approval of \"dpo\"; it needs: cfo, cto, legal");
    ws.run(&["request", "approve", &big.id, "--as", "cfo"])
        .code(1)
        .contains("already decided");
    ws.run(&[
        "request",
        "reject",
        &big.id,
        "--as",
        "legal",
        "--note",
        "contract not signed",
    ])
    .ok()
    .contains("It is now rejected.");
    ws.run(&["request", "approve", &big.id, "--as", "cto"])
        .code(1)
        .contains("is rejected, not waiting for approval");
    ws.run(&["request", "retry", &big.id])
        .code(1)
        .contains("only a rolled_back or failed request can be retried");

    let view = status(&ws, &big.id);
    assert_eq!(view["status"], "rejected");
    assert_eq!(transitions(&view), ["pending_approval->rejected"]);
    assert!(
        mail_to(&format!("request {} ", big.id), "big-requester@wf.example")
            || mail_to(&big.id, "big-requester@wf.example")
    );
    assert!(ws.state_json(&big.id).is_none(), "nothing was provisioned");
    assert!(!registered_spec(&ws, &big.id).await);
}

/// A grant that breaks isolation makes check 2 fail; the tenant is rolled back and
/// nothing of it is left on any service. With the grant gone, a retry activates it.
async fn broken_isolation_fails_the_check_and_rolls_everything_back(backend: Backend) {
    let mut canary = TenantDef::new("wf-canary", "bronze");
    canary.region = "ap-south-1".into();
    let mut victim = TenantDef::new("wf-iso", "bronze");
    victim.region = "ap-south-1".into();
    let mut ws = Workspace::with_backend(&[], backend).await;
    ws.tenants = vec![canary.clone(), victim.clone()];
    let file = request_file(&ws, &canary);
    ws.run(&["request", "submit", &file]).ok();
    assert_eq!(status(&ws, &canary.id)["status"], "active");

    // The fault: the canary's documents readable by everyone.
    let admin = ws.admin().await;
    let c = canary.pg_name();
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA {c} TO PUBLIC; GRANT SELECT ON {c}.documents TO PUBLIC"
        ))
        .await
        .unwrap();
    let file = request_file(&ws, &victim);
    let run = ws.run(&["request", "submit", &file]).code(1);
    assert!(
        run.stderr.contains("rolled_back")
            && run.stderr.contains("validation:cross_tenant_isolation"),
        "{}",
        run.all()
    );
    let view = status(&ws, &victim.id);
    assert_eq!(view["status"], "rolled_back");
    assert_eq!(view["failure_step"], "validation:cross_tenant_isolation");
    assert!(
        view["failure_reason"]
            .as_str()
            .unwrap()
            .contains("ISOLATION BROKEN"),
        "{view:#}"
    );
    let failed: Vec<&str> = view["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["cross_tenant_isolation"]);

    // Nothing of the tenant is left, on any service.
    assert_eq!(leftovers(&ws, &victim).await, Vec::<String>::new());
    assert!(
        ws.state_json(&victim.id)
            .is_none_or(|s| s["resources"].as_object().unwrap().is_empty())
    );
    assert!(!registered_spec(&ws, &victim.id).await, "spec removed");
    assert!(mail_to(
        &format!("tenant {} failed and was rolled back", victim.id),
        &format!("owner@{}.example", victim.id)
    ));

    // Fixed, and retried: active.
    admin
        .batch_execute(&format!(
            "REVOKE SELECT ON {c}.documents FROM PUBLIC; REVOKE USAGE ON SCHEMA {c} FROM PUBLIC"
        ))
        .await
        .unwrap();
    ws.run(&["request", "retry", &victim.id])
        .ok()
        .contains("is now active");
    let view = status(&ws, &victim.id);
    assert_eq!(
        transitions(&view),
        [
            "pending_approval->approved",
            "approved->provisioning",
            "provisioning->validating",
            "validating->rolled_back",
            "rolled_back->provisioning",
            "provisioning->validating",
            "validating->active"
        ]
    );
    assert_eq!(view["failure_step"], Value::Null, "cleared on success");
}

/// Submitting the same tenant twice returns the existing request; other values under
/// the same id, or a taken name, are refused; bad requests record nothing; illegal
/// transitions are refused; the audit trail cannot be rewritten; a failing webhook
/// does not stop a tenant from being activated.
#[tokio::test]
async fn duplicates_bad_requests_illegal_transitions_and_failing_notifications() {
    let mut t = TenantDef::new("wf-dup", "bronze");
    t.region = "ap-south-1".into();
    let mut ws = Workspace::new(&[]).await;
    ws.tenants = vec![t.clone()];
    // Every webhook delivery fails: provisioning must not care.
    let fail_url = format!("{}/fail", env("SLACK_WEBHOOK_URL"));
    ws.set_env("SLACK_WEBHOOK_URL", &fail_url);

    let file = request_file(&ws, &t);
    ws.run(&["request", "submit", &file])
        .ok()
        .contains("Submitted request");
    let first = status(&ws, &t.id);
    assert_eq!(
        first["status"], "active",
        "a failing webhook does not stop activation: {first:#}"
    );
    let deliveries: Vec<&Value> = first["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "notification")
        .flat_map(|e| e["detail"]["deliveries"].as_array().unwrap())
        .collect();
    let webhook = deliveries
        .iter()
        .find(|d| d["channel"] == "slack")
        .expect("webhook tried");
    assert_eq!(
        (webhook["ok"].as_bool(), webhook["attempts"].as_u64()),
        (Some(false), Some(3)),
        "{webhook}"
    );
    assert!(
        !webhook.to_string().contains(&fail_url),
        "the webhook URL is a secret: {webhook}"
    );
    assert!(
        deliveries
            .iter()
            .any(|d| d["channel"] == "email" && d["ok"] == true)
    );

    // The same request again: the existing one, nothing new.
    ws.run(&["request", "submit", &file])
        .ok()
        .contains("already exists (active); nothing new was recorded");
    assert_eq!(status(&ws, &t.id)["audit"], first["audit"]);
    // Same id, other values.
    let mut other = t.clone();
    other.budget_inr = 300_000;
    let file2 = request_file(&ws, &other);
    fs::write(&file2, other.toml()).unwrap();
    ws.run(&["request", "submit", &file2])
        .code(1)
        .contains("already exists");
    // Same name, other id.
    let mut same_name = TenantDef::new("wf-dup2", "bronze");
    same_name.name = t.name.clone();
    let file3 = request_file(&ws, &same_name);
    ws.run(&["request", "submit", &file3])
        .code(1)
        .contains("is already used by the request for tenant");
    // Budget outside the tier's range, and an invalid spec: nothing recorded.
    let mut poor = TenantDef::new("wf-poor", "gold");
    poor.budget_inr = 10_000;
    let file4 = request_file(&ws, &poor);
    ws.run(&["request", "submit", &file4])
        .code(1)
        .contains("field budget_inr");
    let mut bad = TenantDef::new("wf-bad", "platinum");
    bad.region = "ap-south-1".into();
    let file5 = request_file(&ws, &bad);
    ws.run(&["request", "submit", &file5])
        .code(1)
        .contains("unknown tier \"platinum\"");
    let list = ws.run(&["request", "list", "--json"]).ok();
    let v: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v["requests"].as_array().unwrap().len(), 1, "{v:#}");

    // Illegal moves are refused.
    ws.run(&["request", "approve", &t.id, "--as", "cfo"])
        .code(1)
        .contains("is active, not waiting for approval");
    ws.run(&["request", "retry", &t.id])
        .code(1)
        .contains("only a rolled_back or failed request");
    // The audit trail is append-only, even for the admin.
    let e = ws
        .admin()
        .await
        .batch_execute("UPDATE tenantform.audit SET actor = 'someone else'")
        .await
        .unwrap_err();
    assert!(
        e.as_db_error().unwrap().message().contains("append-only"),
        "{e}"
    );
    let e = ws
        .admin()
        .await
        .batch_execute("DELETE FROM tenantform.audit")
        .await
        .unwrap_err();
    assert!(
        e.as_db_error().unwrap().message().contains("append-only"),
        "{e}"
    );
}

/// `destroy` ends a requested tenant in the registry: its request says `destroyed`
/// (status and audit trail), its spec is out of the registry, and the id can be
/// requested again, with other values, through approval to `active`. The destroyed
/// tenant's name is free for another request.
#[tokio::test]
async fn a_destroyed_tenant_is_destroyed_in_the_registry_and_its_id_can_be_requested_again() {
    let mut t = TenantDef::new("wf-again", "bronze");
    t.region = "ap-south-1".into();
    t.budget_inr = 200_000;
    let mut ws = Workspace::new(&[]).await;
    ws.tenants = vec![t.clone()];
    let file = request_file(&ws, &t);
    ws.run(&[
        "request",
        "submit",
        &file,
        "--requester",
        "again@wf.example",
    ])
    .ok();
    assert_eq!(status(&ws, &t.id)["status"], "active");
    assert!(registered_spec(&ws, &t.id).await);

    ws.run(&["destroy", "--auto-approve", "--tenant", &t.id])
        .ok()
        .contains(&format!("Request {} is now destroyed", t.id));
    let view = status(&ws, &t.id);
    assert_eq!(view["status"], "destroyed", "{view:#}");
    assert_eq!(
        transitions(&view).last().map(String::as_str),
        Some("active->destroyed")
    );
    assert!(ws.state_json(&t.id).is_none());
    assert!(
        !registered_spec(&ws, &t.id).await,
        "a later apply must not bring it back"
    );
    ws.run(&["validate-tenant", &t.id])
        .code(1)
        .contains("is destroyed");
    ws.run(&["request", "retry", &t.id])
        .code(1)
        .contains("only a rolled_back or failed request can be retried");
    // Nothing of it is left to destroy, and the registry does not move again.
    ws.run(&["destroy", "--auto-approve", "--tenant", &t.id])
        .code(1)
        .contains("unknown tenant");
    assert_eq!(transitions(&status(&ws, &t.id)).len(), 5);

    // The destroyed tenant's name is free: another id may take it (this one waits for
    // approval, so nothing is provisioned for it).
    let old_name = t.name.clone();
    let mut other = TenantDef::new("wf-namesake", "silver");
    other.name = old_name.clone();
    other.region = "ap-south-1".into();
    other.budget_inr = 1_500_000;
    ws.run(&[
        "request",
        "submit",
        &request_file(&ws, &other),
        "--requester",
        "other@wf.example",
    ])
    .ok();
    assert_eq!(status(&ws, &other.id)["status"], "pending_approval");

    // A new request for the id, under another name, goes all the way again.
    t.name = format!("Again {}", t.id);
    let file = request_file(&ws, &t);
    ws.run(&[
        "request",
        "submit",
        &file,
        "--requester",
        "again@wf.example",
    ])
    .ok()
    .contains(&format!("Submitted request {}", t.id));
    let view = status(&ws, &t.id);
    assert_eq!(view["status"], "active", "{view:#}");
    assert_eq!(view["name"], t.name.as_str());
    assert_eq!(
        transitions(&view),
        [
            "pending_approval->approved",
            "approved->provisioning",
            "provisioning->validating",
            "validating->active",
            "active->destroyed",
            "pending_approval->approved",
            "approved->provisioning",
            "provisioning->validating",
            "validating->active",
        ]
    );
    let resubmitted = view["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "submitted")
        .map(|e| e["from_status"].as_str().unwrap_or("-").to_owned())
        .collect::<Vec<_>>();
    assert_eq!(resubmitted, ["-", "destroyed"]);
    assert_eq!(
        ws.state_json(&t.id).expect("state")["resources"]
            .as_object()
            .unwrap()
            .len(),
        PER_TENANT
    );
    ws.run(&["validate-tenant", &t.id]).ok();
}

on_both_backends!(broken_isolation_fails_the_check_and_rolls_everything_back);
