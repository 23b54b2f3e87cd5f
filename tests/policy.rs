//! Policy as code on plans, through the real binary against the real stack: the
//! example policies in specs/policies, `--policy DIR` and `[policy] dir`.

mod support;

use support::{TenantDef, Workspace, repo};

fn example_policies() -> String {
    repo().join("specs/policies").display().to_string()
}

async fn schema_exists(ws: &Workspace, t: &TenantDef) -> bool {
    ws.admin()
        .await
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&t.pg_name()],
        )
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_mandatory_violation_fails_the_plan_and_apply_changes_nothing() {
    // Gold, not protected: the example policy tenantform.gold_protected denies it.
    let gold = TenantDef::new("polgold", "gold");
    let ws = Workspace::new(std::slice::from_ref(&gold)).await;
    let policies = example_policies();
    let message = format!("tenant {} is Gold and must be protected", gold.id);

    ws.run(&["plan", "--policy", &policies])
        .code(1)
        .contains("Policy violation (mandatory): tenantform.gold_protected (gold_protected.rego)")
        .contains(&message)
        .contains("1 mandatory policy violation");

    let run = ws.run(&["plan", "--json", "--policy", &policies]).code(1);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON plan");
    assert_eq!(plan["policy"]["passed"], false);
    assert_eq!(plan["policy"]["mandatory_violations"], 1);
    let result = &plan["policy_results"][0];
    assert_eq!(result["level"], "mandatory");
    assert_eq!(result["policy"], "tenantform.gold_protected");
    assert_eq!(result["tenant"], gold.id.as_str());
    assert!(result["message"].as_str().unwrap().contains(&message));

    ws.run(&["plan", "--markdown", "--policy", &policies])
        .code(1)
        .contains("#### Policy check: **failed: this plan cannot be applied**")
        .contains(":x: **mandatory** `tenantform.gold_protected`");

    // Apply evaluates the same policies and refuses before any change.
    ws.run(&["apply", "--auto-approve", "--policy", &policies])
        .code(1)
        .contains("1 mandatory policy violation")
        .contains("nothing was changed")
        .contains(&message);
    assert!(ws.state_json(&gold.id).is_none(), "no state was written");
    assert!(!schema_exists(&ws, &gold).await, "nothing was created");

    // A plan saved without the policies is checked against them when applied.
    let planfile = ws.dir.path().join("tenants.plan");
    ws.run(&["plan", "--out", planfile.to_str().unwrap()]).ok();
    ws.run(&["apply", planfile.to_str().unwrap(), "--policy", &policies])
        .code(1)
        .contains(&message);
    assert!(ws.state_json(&gold.id).is_none(), "no state was written");

    // The same policies named in platform.toml apply without --policy.
    ws.edit_platform(|p| format!("{p}\n[policy]\ndir = {policies:?}\n"));
    ws.run(&["plan"]).code(1).contains(&message);
    ws.run(&["apply", "--auto-approve"])
        .code(1)
        .contains(&message);
    assert!(!schema_exists(&ws, &gold).await, "nothing was created");
}

#[tokio::test]
async fn an_advisory_violation_warns_and_apply_proceeds() {
    // Bronze costs ₹17,000 a month; a budget of ₹1,000 is over, which is advisory.
    let mut bronze = TenantDef::new("polbud", "bronze");
    bronze.budget_inr = 1_000;
    let ws = Workspace::new(std::slice::from_ref(&bronze)).await;
    let policies = example_policies();
    let warning = format!(
        "Policy warning (advisory): tenantform.budget (budget.rego): tenant {} is estimated at 17000 INR a month, above its budget of 1000 INR",
        bronze.id
    );

    ws.run(&["plan", "--detailed-exitcode", "--policy", &policies])
        .code(2)
        .contains(&warning)
        .contains("2 policy files: 0 mandatory violations, 1 advisory warning");
    let run = ws.run(&["plan", "--json", "--policy", &policies]).ok();
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["policy"]["passed"], true);
    assert_eq!(plan["policy_results"][0]["level"], "advisory");

    ws.run(&["apply", "--auto-approve", "--policy", &policies])
        .ok()
        .contains(&warning)
        .contains("Apply complete!");
    assert!(schema_exists(&ws, &bronze).await);
    ws.run(&["destroy", "--auto-approve"]).ok();
}

#[tokio::test]
async fn a_broken_policy_is_an_error_naming_its_file_and_line() {
    let t = TenantDef::new("polbad", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    let dir = ws.dir.path().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("broken.rego"),
        "package broken\n\ndeny contains msg if {\n  msg := \n}\n",
    )
    .unwrap();
    let run = ws
        .run(&["plan", "--policy", dir.to_str().unwrap()])
        .code(1)
        .contains("broken.rego is not valid Rego")
        .contains("broken.rego:4:7: expecting `}` while parsing set");
    assert!(!run.all().contains("panicked"), "{}", run.all());

    let missing = ws.dir.path().join("no-such-dir");
    ws.run(&["plan", "--policy", missing.to_str().unwrap()])
        .code(1)
        .contains("does not exist or is not a directory")
        // The library states the fact; the CLI adds the flag that fixes it.
        .contains("Hint: create it, or fix --policy or [policy] dir in platform.toml");
}
