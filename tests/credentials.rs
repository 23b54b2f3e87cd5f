//! The tenant's credentials delivered to AWS Secrets Manager (moto, IAM enforced, with
//! the secret's resource policy evaluated): readable by the tenant's role alone, never
//! in state, plan files, output or the database, renewed when they fall out of step,
//! and migrated from a state that still holds a password.

mod support;

use serde_json::Value;
use support::*;

/// The code of the refusal when `role` (a tenant's, assumed) or the engine's own
/// principal (`None`) asks for `state`'s credentials secret.
async fn refusal(ws: &Workspace, reader: Option<&str>, owner: &str) -> String {
    let aws = tenantform::connect::aws::AwsClients::new(aws_config().await);
    let state: tenantform::state::TenantState =
        serde_json::from_value(ws.state_json(owner).unwrap()).unwrap();
    let read = match reader {
        Some(id) => {
            let arn = ws.state_attr(id, "iam_role.app", "arn");
            let role = aws
                .assume_tenant_role(arn.as_str().unwrap(), "credentials-test")
                .await
                .expect("the engine assumes a tenant role");
            tenantform::workflow::checks::read_secret_as(&role, &state).await
        }
        None => {
            let name = ws.state_attr(owner, "secret.credentials", "name");
            aws.secrets("us-east-1")
                .get_secret_value()
                .secret_id(name.as_str().unwrap())
                .send()
                .await
                .map(|_| String::new())
                .map_err(|e| tenantform::connect::aws::sdk_error("Secrets Manager", e))
        }
    };
    match read {
        Ok(_) => "read".into(),
        Err(e) => e.code().to_owned(),
    }
}

#[tokio::test]
async fn only_the_tenants_role_reads_its_credentials_and_no_password_is_kept_anywhere() {
    let a = TenantDef::new("cred-a", "bronze");
    let b = TenantDef::new("cred-b", "bronze");
    let ws = Workspace::new(&[a.clone(), b.clone()]).await;
    let plan_file = ws.dir.path().join("tenants.plan");
    let plan_file = plan_file.to_str().unwrap();
    let mut scan = OutputScan::new();
    scan.run(&ws, &["plan", "--out", plan_file]).ok();
    scan.run(&ws, &["apply", plan_file]).ok();
    scan.learn_tenant_secrets(&ws).await;
    assert!(
        scan.secrets() >= 4 + 2,
        "two tenants' two passwords, the stack's"
    );

    // The application's view: the secret names where to connect and as whom, and the
    // logins work.
    let c = ws.credentials(&a.id).await;
    assert_eq!(c.postgres.username, a.pg_name());
    assert_eq!(c.redis.username, a.pg_name());
    ws.tenant_client(&a).await.expect("the role logs in");
    ws.tenant_redis(&a).await.expect("the Redis user logs in");

    // Readable by the tenant's role alone: not by another tenant's, not by the engine.
    assert_eq!(refusal(&ws, Some(&a.id), &a.id).await, "read");
    assert_eq!(
        refusal(&ws, Some(&b.id), &a.id).await,
        "AccessDeniedException"
    );
    assert_eq!(
        refusal(&ws, Some(&a.id), &b.id).await,
        "AccessDeniedException"
    );
    assert_eq!(refusal(&ws, None, &a.id).await, "AccessDeniedException");

    // No password in state (a version of each), the plan file, output or database.
    let passwords = [
        c.postgres.password.clone(),
        c.redis.password.clone(),
        ws.password(&b.id).await,
        ws.redis_password(&b.id).await,
    ];
    let state = ws.state_json(&a.id).unwrap();
    let role = &state["resources"]["postgres_role.app"]["attributes"];
    assert!(role.get("password").is_none(), "{role}");
    assert!(role["password_version"].is_string(), "{role}");
    let secret = &state["resources"]["secret.credentials"]["attributes"];
    assert_eq!(
        secret["input_versions"]["postgres_password"],
        role["password_version"]
    );
    let kept = [
        std::fs::read_to_string(ws.state_file(&a.id)).unwrap(),
        std::fs::read_to_string(ws.state_file(&b.id)).unwrap(),
        String::from_utf8_lossy(&std::fs::read(plan_file).unwrap()).into_owned(),
        database_text(&ws).await,
    ];
    for (i, text) in kept.iter().enumerate() {
        for p in &passwords {
            assert!(!text.contains(p.as_str()), "a password in kept text #{i}");
        }
    }
    scan.run(&ws, &["show"]).ok();
    scan.run(&ws, &["output", "--tenant", &a.id, "--json"]).ok();
    scan.run(&ws, &["plan", "--detailed-exitcode"]).code(0);
    scan.run(&ws, &["drift"]).code(0);

    // Destroy removes the secret at once: its name is free again.
    scan.run(&ws, &["destroy", "--auto-approve", "--tenant", &a.id])
        .ok();
    assert_eq!(leftovers(&ws, &a).await, Vec::<String>::new());
    assert!(scan.assert_clean() >= 7);
    // After the destroy too: nothing in the database, nothing under the state directory
    // (the destroyed tenant's backup included).
    let rows = database_text(&ws).await;
    let files: Vec<Vec<u8>> = walk_files(&ws.state())
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    for p in &passwords {
        assert!(
            !rows.contains(p.as_str()),
            "a password in a row after destroy"
        );
        for bytes in &files {
            assert!(
                !String::from_utf8_lossy(bytes).contains(p.as_str()),
                "a password in a state file after destroy"
            );
        }
    }
    ws.run(&["apply", "--auto-approve", "--tenant", &a.id]).ok();
    assert_ne!(ws.password(&a.id).await, c.postgres.password);
}

#[tokio::test]
async fn credentials_out_of_step_are_renewed_together() {
    let t = TenantDef::new("cred-step", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let before = ws.credentials(&t.id).await;

    // The value changed outside tenantform (by the platform's admin): the plan writes
    // it anew, with new passwords, since the old ones are nowhere to be read.
    let name = ws.state_attr(&t.id, "secret.credentials", "name");
    secrets_admin(&t.region)
        .await
        .put_secret_value()
        .secret_id(name.as_str().unwrap())
        .secret_string("{\"hand\": \"edited\"}")
        .send()
        .await
        .unwrap();
    let plan = ws.run(&["plan", "--json", "--detailed-exitcode"]).code(2);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let renewed: Vec<(String, String)> = doc["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"]["actions"] != serde_json::json!(["no-op"]))
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_owned(),
                c["reason"]["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = |kind: &str| {
        [
            "postgres_role.app",
            "redis_acl_user.app",
            "secret.credentials",
        ]
        .map(|r| (format!("{}/{r}", t.id), kind.to_owned()))
        .to_vec()
    };
    assert_eq!(renewed, expected("credentials_renewed"), "{doc}");
    ws.run(&["apply", "--auto-approve"]).ok();
    let after = ws.credentials(&t.id).await;
    assert_ne!(after.postgres.password, before.postgres.password);
    ws.tenant_client(&t).await.expect("the new password works");
    ws.tenant_redis(&t)
        .await
        .expect("the new Redis password works");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);

    // An apply that stopped between setting a password and writing the secret leaves
    // the versions out of step: the next plan renews them.
    let mut state = ws.state_json(&t.id).unwrap();
    state["resources"]["redis_acl_user.app"]["attributes"]["password_version"] =
        Value::String("set-by-a-run-that-stopped".into());
    std::fs::write(
        ws.state_file(&t.id),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
    let plan = ws.run(&["plan", "--json", "--detailed-exitcode"]).code(2);
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let kinds: Vec<&str> = doc["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"]["actions"] != serde_json::json!(["no-op"]))
        .map(|c| c["reason"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["credentials_renewed"; 3], "{doc}");
    ws.run(&["apply", "--auto-approve"]).ok();
    ws.tenant_redis(&t).await.expect("the Redis user logs in");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[tokio::test]
async fn a_state_holding_passwords_is_migrated_to_the_secret() {
    let t = TenantDef::new("cred-old", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();

    // As a release before the secret left it: the passwords in state, no secret.
    let name = ws.state_attr(&t.id, "secret.credentials", "name");
    secrets_admin(&t.region)
        .await
        .delete_secret()
        .secret_id(name.as_str().unwrap())
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let mut state = ws.state_json(&t.id).unwrap();
    let resources = state["resources"].as_object_mut().unwrap();
    resources.remove("secret.credentials");
    for r in ["postgres_role.app", "redis_acl_user.app"] {
        let attrs = resources[r]["attributes"].as_object_mut().unwrap();
        attrs.remove("password_version");
        attrs.insert("password".into(), "legacy-password-in-state".into());
    }
    std::fs::write(
        ws.state_file(&t.id),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();

    let plan = ws.run(&["plan"]).code(0);
    assert!(!plan.all().contains("legacy-password-in-state"));
    assert!(
        plan.stdout.contains("secret.credentials will be created"),
        "{}",
        plan.stdout
    );
    ws.run(&["apply", "--auto-approve"]).ok();
    let kept = std::fs::read_to_string(ws.state_file(&t.id)).unwrap();
    assert!(!kept.contains("legacy-password-in-state"), "{kept}");
    ws.tenant_client(&t).await.expect("the role logs in");
    ws.tenant_redis(&t).await.expect("the Redis user logs in");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}
