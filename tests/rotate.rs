//! `--rotate TENANT` against the real services: the tenant's PostgreSQL role and Redis
//! user get new passwords in place, the old ones stop working, and no password is
//! printed on the way.

mod support;

use serde_json::Value;
use support::*;

/// Every change of `plan` (its `resource_changes`) that is not a no-op, as
/// (address, actions, reason kind, changed attributes).
fn changes(plan: &Value) -> Vec<(String, Value, String, Value)> {
    plan["resource_changes"]
        .as_array()
        .expect("resource_changes")
        .iter()
        .filter(|c| c["change"]["actions"] != serde_json::json!(["no-op"]))
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_owned(),
                c["change"]["actions"].clone(),
                c["reason"]["kind"].as_str().unwrap().to_owned(),
                c["changed_attributes"].clone(),
            )
        })
        .collect()
}

fn assert_no_secret(run: &Run, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !run.all().contains(s),
            "a password is printed:\n{}",
            run.all()
        );
    }
}

#[tokio::test]
async fn rotate_sets_new_passwords_and_the_old_ones_stop_working() {
    let t = TenantDef::new("rot", "bronze");
    let other = TenantDef::new("rot-other", "bronze");
    let ws = Workspace::new(&[t.clone(), other.clone()]).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let old_pg = ws.password(&t.id).await;
    let old_redis = ws.redis_password(&t.id).await;
    let old_version = ws.state_attr(&t.id, "secret.credentials", "version_id");
    assert!(old_version.is_string(), "{old_version}");
    let other_pg = ws.password(&other.id).await;
    let other_redis = ws.redis_password(&other.id).await;
    ws.tenant_client(&t).await.expect("the role logs in");

    let plan = ws.run(&["plan", "--rotate", &t.id]).ok();
    assert_no_secret(&plan, &[&old_pg, &old_redis]);
    assert!(
        plan.stdout.contains("rotation requested with --rotate"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("password"), "{}", plan.stdout);

    let json = ws.run(&["plan", "--json", "--rotate", &t.id]).ok();
    assert_no_secret(&json, &[&old_pg, &old_redis]);
    let doc: Value = serde_json::from_str(&json.stdout).expect("plan --json is JSON");
    let mut found = changes(&doc);
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let update = serde_json::json!(["update"]);
    let password = serde_json::json!(["password"]);
    assert_eq!(
        found,
        vec![
            (
                format!("{}/postgres_role.app", t.id),
                update.clone(),
                "rotation_requested".to_owned(),
                password.clone()
            ),
            (
                format!("{}/redis_acl_user.app", t.id),
                update.clone(),
                "rotation_requested".to_owned(),
                password
            ),
            (
                format!("{}/secret.credentials", t.id),
                update,
                "rotation_requested".to_owned(),
                serde_json::json!(["value"])
            ),
        ],
        "{doc}"
    );

    let apply = ws.run(&["apply", "--auto-approve", "--rotate", &t.id]).ok();
    let new_pg = ws.password(&t.id).await;
    let new_redis = ws.redis_password(&t.id).await;
    assert_no_secret(&apply, &[&old_pg, &old_redis, &new_pg, &new_redis]);
    assert_ne!(new_pg, old_pg);
    assert_ne!(new_redis, old_redis);
    // The secret holds the new passwords in a new version; state holds neither.
    assert_ne!(
        ws.state_attr(&t.id, "secret.credentials", "version_id"),
        old_version
    );
    let state = ws.state_json(&t.id).unwrap().to_string();
    for p in [&old_pg, &old_redis, &new_pg, &new_redis] {
        assert!(!state.contains(p.as_str()), "a password in state");
    }

    connect(&t.pg_name(), &old_pg, &ws.database)
        .await
        .expect_err("the old PostgreSQL password no longer works");
    let client = connect(&t.pg_name(), &new_pg, &ws.database)
        .await
        .expect("the new PostgreSQL password works");
    // The grants made to the role are untouched: it still reads its vector table.
    client
        .query(
            &format!("SELECT count(*) FROM {}.embeddings", t.pg_name()),
            &[],
        )
        .await
        .expect("the role still reads its vector table");
    redis_as(&t.pg_name(), &old_redis)
        .await
        .expect_err("the old Redis password no longer works");
    let mut r = redis_as(&t.pg_name(), &new_redis)
        .await
        .expect("the new Redis password works");
    redis_cmd(&mut r, &["SET", &format!("tenant:{}:k", t.id), "v"])
        .await
        .expect("the user keeps its rights");

    // The other tenant was not asked for: its passwords are as they were.
    assert_eq!(ws.password(&other.id).await, other_pg);
    assert_eq!(ws.redis_password(&other.id).await, other_redis);
    ws.tenant_client(&other)
        .await
        .expect("the other role logs in");

    let again = ws.run(&["plan", "--detailed-exitcode"]).code(0);
    assert_no_secret(&again, &[&old_pg, &old_redis, &new_pg, &new_redis]);
}

#[tokio::test]
async fn a_saved_plan_with_rotate_rotates_on_apply() {
    let t = TenantDef::new("rot-saved", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let old_pg = ws.password(&t.id).await;
    let file = ws.dir.path().join("rotate.plan");
    let file = file.to_str().unwrap();
    ws.run(&["plan", "--rotate", &t.id, "--out", file]).ok();
    assert_eq!(ws.password(&t.id).await, old_pg, "a plan changes nothing");
    let apply = ws.run(&["apply", file]).ok();
    let new_pg = ws.password(&t.id).await;
    assert_no_secret(&apply, &[&old_pg, &new_pg]);
    assert_ne!(new_pg, old_pg);
    connect(&t.pg_name(), &old_pg, &ws.database)
        .await
        .expect_err("the old password no longer works");
    ws.tenant_client(&t).await.expect("the new password works");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[tokio::test]
async fn rotate_of_an_unknown_tenant_is_refused_and_changes_nothing() {
    let t = TenantDef::new("rot-known", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let state = ws.state_bytes(&t.id);
    assert!(state.is_some(), "the tenant has state");
    for args in [
        vec!["plan", "--rotate", "no-such-tenant"],
        vec!["apply", "--auto-approve", "--rotate", "no-such-tenant"],
        vec![
            "apply",
            "--auto-approve",
            "--rotate",
            &t.id,
            "--rotate",
            "no-such-tenant",
        ],
    ] {
        ws.run(&args)
            .code(1)
            .contains("--rotate no-such-tenant")
            .contains("no specs/tenants/no-such-tenant.toml")
            .contains("nothing was changed");
    }
    assert_eq!(ws.state_bytes(&t.id), state, "nothing was changed");

    // A tenant the run leaves out is not rotated behind the selection's back.
    let other = TenantDef::new("rot-left-out", "bronze");
    ws.write_tenant(&other);
    ws.run(&[
        "apply",
        "--auto-approve",
        "--tenant",
        &other.id,
        "--rotate",
        &t.id,
    ])
    .code(1)
    .contains(&format!("--rotate {}", t.id))
    .contains(&format!("add --tenant {}", t.id))
    .contains("nothing was changed");
    assert!(ws.state_bytes(&other.id).is_none(), "nothing was applied");
    assert_eq!(ws.state_bytes(&t.id), state, "nothing was changed");
    ws.tenant_client(&t)
        .await
        .expect("the password still works");
}
