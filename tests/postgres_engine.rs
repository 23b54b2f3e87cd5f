//! The engine against a real PostgreSQL: apply, isolation, no-op plans, updates,
//! replacements, drift, destroy.

mod support;

use support::*;

/// Names of objects that exist, for before/after comparisons.
async fn catalog(ws: &Workspace, t: &TenantDef) -> Vec<String> {
    let c = ws.admin().await;
    let name = t.pg_name();
    let mut out = Vec::new();
    for (label, sql) in [
        (
            "schema",
            "SELECT nspname::text FROM pg_namespace WHERE nspname = $1",
        ),
        (
            "role",
            "SELECT rolname::text FROM pg_roles WHERE rolname = $1",
        ),
        (
            "table",
            "SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND relkind = 'r' ORDER BY relname",
        ),
        (
            "policy",
            "SELECT policyname::text FROM pg_policies WHERE schemaname = $1",
        ),
    ] {
        for row in c.query(sql, &[&name]).await.unwrap() {
            out.push(format!("{label} {}", row.get::<_, String>(0)));
        }
    }
    out
}

/// Transaction ids of the tenant's catalog rows: any DDL on them changes these.
async fn catalog_versions(ws: &Workspace, t: &TenantDef) -> Vec<String> {
    let c = ws.admin().await;
    let rows = c
        .query(
            "SELECT 'ns:' || xmin::text FROM pg_namespace WHERE nspname = $1 \
             UNION ALL SELECT 'role:' || xmin::text FROM pg_authid WHERE rolname = $1 \
             UNION ALL SELECT 'rel:' || c.relname || ':' || c.xmin::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
             UNION ALL SELECT 'pol:' || p.xmin::text FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
             ORDER BY 1",
            &[&t.pg_name()],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn apply_creates_everything_and_tenants_are_isolated() {
    let a = TenantDef::new("iso-a", "silver");
    let b = TenantDef::new("iso-b", "bronze");
    let ws = Workspace::new(&[a.clone(), b.clone()]).await;

    let run = ws.run(&["apply", "--auto-approve"]).ok();
    assert!(
        run.stdout.contains(&format!(
            "Apply complete! Resources: {} added, 0 changed, 0 destroyed.",
            2 * PER_TENANT
        )),
        "{}",
        run.all()
    );
    for t in [&a, &b] {
        let name = t.pg_name();
        assert_eq!(
            catalog(&ws, t).await,
            vec![
                format!("schema {name}"),
                format!("role {name}"),
                "table documents".to_owned(),
                "table embeddings".to_owned(),
                "policy tenant_isolation".to_owned()
            ]
        );
    }
    let admin = ws.admin().await;
    let row = admin
        .query_one(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, r.rolconnlimit, r.rolsuper, r.rolbypassrls \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, pg_roles r \
             WHERE n.nspname = $1 AND c.relname = 'documents' AND r.rolname = $1",
            &[&a.pg_name()],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "row-level security enabled");
    assert!(row.get::<_, bool>(1), "row-level security forced");
    assert_eq!(row.get::<_, i32>(2), 20, "silver connection limit");
    assert!(!row.get::<_, bool>(3) && !row.get::<_, bool>(4));

    // Each tenant uses its own schema with its own credentials.
    let ca = ws.tenant_client(&a).await.expect("tenant a logs in");
    ca.execute(
        "INSERT INTO documents (title, content) VALUES ('a doc', 'alpha')",
        &[],
    )
    .await
    .unwrap();
    let n: i64 = ca
        .query_one("SELECT count(*) FROM documents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "search_path finds the tenant's own schema");
    let cb = ws.tenant_client(&b).await.expect("tenant b logs in");
    cb.execute(
        "INSERT INTO documents (title, content) VALUES ('b doc', 'beta')",
        &[],
    )
    .await
    .unwrap();

    // a cannot reach b's schema at all.
    let err = ca
        .query(&format!("SELECT * FROM {}.documents", b.pg_name()), &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{err}");
    // a cannot write rows tagged for another tenant into its own table either.
    let err = ca
        .execute(
            &format!(
                "INSERT INTO documents (tenant_id, content) VALUES ('{}', 'x')",
                b.id
            ),
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{err}");
    // Even if someone grants a access to b's table, row-level security hides b's rows.
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA {b} TO {a}; GRANT SELECT ON {b}.documents TO {a};",
            a = a.pg_name(),
            b = b.pg_name()
        ))
        .await
        .unwrap();
    let n: i64 = ca
        .query_one(
            &format!("SELECT count(*) FROM {}.documents", b.pg_name()),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "another tenant's rows are invisible");

    // The password is in the tenant's credentials secret only: not in state, not in
    // any output, with --show-secrets too.
    let pw = ws.password(&a.id).await;
    assert!(!run.all().contains(&pw));
    let state = std::fs::read_to_string(ws.state_file(&a.id)).unwrap();
    assert!(!state.contains(&pw), "the password in state");
    let show = ws.run(&["show", "--tenant", &a.id]).ok();
    assert!(!show.all().contains(&pw), "{}", show.all());
    let show = ws.run(&["show", "--tenant", &a.id, "--show-secrets"]).ok();
    assert!(!show.all().contains(&pw), "{}", show.all());
    assert!(
        show.stdout.contains("credentials_secret_name"),
        "{}",
        show.stdout
    );
    let mode = std::fs::metadata(ws.state_file(&a.id)).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

async fn a_clean_plan_after_apply_and_a_second_apply_change_nothing(backend: Backend) {
    let t = TenantDef::new("noop", "gold");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    ws.run(&["apply", "--auto-approve"]).ok();

    ws.run(&["plan", "--detailed-exitcode"])
        .code(0)
        .contains("No changes.");
    ws.run(&["plan", "--detailed-exitcode", "--refresh=false"])
        .code(0);
    let versions = catalog_versions(&ws, &t).await;
    let serial = ws.state_json(&t.id).unwrap()["serial"].clone();
    let run = ws.run(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("No changes."), "{}", run.all());
    assert_eq!(catalog_versions(&ws, &t).await, versions, "no DDL ran");
    assert_eq!(
        ws.state_json(&t.id).unwrap()["serial"],
        serial,
        "state not rewritten"
    );
    // Under --json, the last message of the stream says nothing ran.
    let json = ws.run(&["apply", "--auto-approve", "--json"]).ok();
    let last: serde_json::Value =
        serde_json::from_str(json.stdout.lines().last().unwrap()).expect("a JSON line");
    assert_eq!(last["type"], "apply_report", "{}", json.stdout);
    assert!(last["report"].is_null(), "{}", json.stdout);
    let summaries: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|m| m["type"] == "change_summary")
        .map(|m| m["changes"].clone())
        .collect();
    assert_eq!(summaries.len(), 2, "{}", json.stdout);
    for (s, operation) in summaries.iter().zip(["plan", "apply"]) {
        assert_eq!(s["operation"], operation, "{}", json.stdout);
        assert_eq!(
            (&s["add"], &s["change"], &s["remove"]),
            (&0.into(), &0.into(), &0.into())
        );
    }
}

#[tokio::test]
async fn a_tier_change_updates_in_place_and_a_rename_replaces() {
    let mut t = TenantDef::new("change", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let ct = ws.tenant_client(&t).await.unwrap();
    ct.execute(
        "INSERT INTO documents (content) VALUES ('kept across updates')",
        &[],
    )
    .await
    .unwrap();

    t.tier = "gold".into();
    ws.write_tenant(&t);
    let plan = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("~ postgres_role.app"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("connection_limit = 10 -> 50"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 1 to add, 7 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    ws.run(&["apply", "--auto-approve"]).ok();
    let limit: i32 = ws
        .admin()
        .await
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&t.pg_name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 50);
    let n: i64 = ct
        .query_one("SELECT count(*) FROM documents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "an in-place update keeps the data");

    // Renaming the schema cannot be done in place: the schema and what is in it are
    // replaced; the role stays. The old template is declared, so that state naming the
    // old schema is still taken as the tenant's own.
    ws.edit_platform(|p| {
        p.replace(
            "postgres_schema = \"tenant_{id_}\"",
            "postgres_schema = \"docs_{id_}\"\nrenamed_from = { postgres_schema = [\"tenant_{id_}\"] }",
        )
    });
    let plan = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("-/+ postgres_schema.main"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("# forces replacement"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 7 to add, 0 to change, 7 to destroy."),
        "{}",
        plan.stdout
    );
    ws.run(&["apply", "--auto-approve"]).ok();
    let new_schema = format!("docs_{}", t.id.replace('-', "_"));
    let admin = ws.admin().await;
    let old: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&t.pg_name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(old, 0, "the old schema is gone");
    let ct = ws.tenant_client(&t).await.unwrap();
    ct.execute(
        &format!("INSERT INTO {new_schema}.documents (content) VALUES ('new home')"),
        &[],
    )
    .await
    .expect("the role works in the new schema");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

#[tokio::test]
async fn drift_is_planned_and_repaired_by_apply() {
    let t = TenantDef::new("drift", "silver");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let admin = ws.admin().await;
    admin
        .batch_execute(&format!(
            "DROP TABLE {s}.documents; ALTER ROLE {s} CONNECTION LIMIT 3;",
            s = t.pg_name()
        ))
        .await
        .unwrap();
    let plan = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains(&format!(
            "# {}/postgres_table.documents will be created (deleted outside tenantform)",
            t.id
        )),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("connection_limit = 3 -> 20"),
        "{}",
        plan.stdout
    );
    // Without refresh the engine believes its state.
    ws.run(&["plan", "--detailed-exitcode", "--refresh=false"])
        .code(0);
    ws.run(&["apply", "--auto-approve"]).ok();
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    let ct = ws.tenant_client(&t).await.unwrap();
    ct.execute("INSERT INTO documents (content) VALUES ('back')", &[])
        .await
        .expect("the recreated table is usable, grants and policy included");
}

async fn destroy_removes_everything_and_twice_is_fine(backend: Backend) {
    let keep = TenantDef::new("keep", "bronze");
    let gone = TenantDef::new("gone", "silver");
    let ws = Workspace::with_backend(&[keep.clone(), gone.clone()], backend).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let run = ws
        .run(&["destroy", "--tenant", &gone.id, "--auto-approve"])
        .ok();
    assert!(
        run.stdout.contains(&format!(
            "Destroy complete! Resources: {PER_TENANT} destroyed."
        )),
        "{}",
        run.all()
    );
    assert!(
        catalog(&ws, &gone).await.is_empty(),
        "nothing of the tenant is left"
    );
    assert!(ws.state_json(&gone.id).is_none(), "empty state is removed");
    assert_eq!(
        catalog(&ws, &keep).await.len(),
        5,
        "the other tenant is untouched"
    );
    ws.run(&["destroy", "--tenant", &gone.id, "--auto-approve"])
        .ok()
        .contains("nothing to destroy");

    // Resources already deleted by hand are fine too.
    ws.admin()
        .await
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", keep.pg_name()))
        .await
        .unwrap();
    ws.run(&["destroy", "--auto-approve"]).ok();
    assert!(catalog(&ws, &keep).await.is_empty());
}

async fn a_removed_spec_is_planned_as_deletes_and_protection_survives_it(backend: Backend) {
    let mut p = TenantDef::new("prot", "bronze");
    p.protected = true;
    let ws = Workspace::with_backend(&[p.clone()], backend).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    ws.run(&["destroy", "--auto-approve"])
        .code(1)
        .contains(&format!(
            "tenant {} is protected (protected = true in specs/tenants/{}.toml)",
            p.id, p.id
        ));
    ws.remove_tenant_spec(&p.id);
    ws.run(&["plan"])
        .code(1)
        .contains("recorded in its state; its spec file was removed");
    ws.run(&["apply", "--auto-approve"]).code(1);
    assert_eq!(catalog(&ws, &p).await.len(), 5, "nothing was deleted");

    // Lifting the flag takes an apply with the spec back.
    p.protected = false;
    ws.write_tenant(&p);
    let plan = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("protected: true -> false"),
        "{}",
        plan.stdout
    );
    ws.run(&["apply", "--auto-approve"]).ok();
    ws.remove_tenant_spec(&p.id);
    let plan = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    assert!(
        plan.stdout.contains("(no longer in the spec)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(&format!(
            "Plan: 0 to add, 0 to change, {PER_TENANT} to destroy."
        )),
        "{}",
        plan.stdout
    );
    ws.run(&["apply", "--auto-approve"]).ok();
    assert!(catalog(&ws, &p).await.is_empty());
}

async fn a_saved_plan_applies_once_and_is_refused_when_state_moved_on(backend: Backend) {
    let t = TenantDef::new("saved", "bronze");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    let file = ws.dir.path().join("tenants.plan");
    let file = file.to_str().unwrap();
    ws.run(&["plan", "--out", file]).ok();
    let json = ws.run(&["show", file, "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["summary"]["add"], PER_TENANT);
    ws.run(&["apply", file]).ok().contains("Apply complete!");
    // Applying the same plan again: the state it was made against is gone.
    ws.run(&["apply", file])
        .code(1)
        .contains("the saved plan is stale for tenant");

    ws.run(&[
        "plan",
        "--out",
        file,
        "--replace",
        &format!("{}/postgres_role.app", t.id),
    ])
    .ok();
    ws.run(&[
        "apply",
        "--auto-approve",
        "--replace",
        &format!("{}/postgres_schema.main", t.id),
    ])
    .ok();
    let before = ws.state_bytes(&t.id).unwrap();
    ws.run(&["apply", file]).code(1).contains("stale");
    assert_eq!(ws.state_bytes(&t.id).unwrap(), before, "nothing changed");
}

#[tokio::test]
async fn plan_output_formats_are_machine_readable() {
    let t = TenantDef::new("fmt", "silver");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    let run = ws.run(&["plan", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("plan --json is JSON");
    assert_eq!(v["format_version"], "1.0");
    assert_eq!(v["resource_changes"].as_array().unwrap().len(), PER_TENANT);
    assert!(
        v["resource_changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["change"]["actions"] == serde_json::json!(["create"]))
    );
    assert_eq!(v["tenants"][0]["new_tenant"], true);
    let md = ws.run(&["plan", "--markdown"]).ok();
    assert!(
        md.stdout.starts_with(&format!(
            "### tenantform plan: {PER_TENANT} to add, 0 to change, 0 to destroy"
        )),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout.contains(&format!(
            "| `{}` | silver | us-east-1 | {PER_TENANT} | 0 | 0 | ₹47,000 | new tenant |",
            t.id
        )),
        "{}",
        md.stdout
    );
    ws.run(&["apply", "--auto-approve"]).ok();
    let list = ws.run(&["state", "list"]).ok();
    assert_eq!(list.stdout.lines().count(), PER_TENANT, "{}", list.stdout);
    let show = ws
        .run(&["state", "show", &format!("{}/postgres_role.app", t.id)])
        .ok();
    // What state keeps of the password: its version.
    assert!(show.stdout.contains("password_version"), "{}", show.stdout);
    ws.run(&["state", "show", &format!("{}/postgres_role.nope", t.id)])
        .code(1)
        .contains("no resource");
}

/// `output`, `state rm` and `state mv` as a Terraform user expects them: outputs with
/// the password redacted unless asked for, a forgotten resource planned anew, a moved
/// one planned as a delete and a create until it is moved back, and every refused edit
/// leaving the state as it was.
async fn outputs_and_state_edits_behave_as_terraforms(backend: Backend) {
    let t = TenantDef::new("edit", "bronze");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let id = t.id.as_str();

    let all = ws.run(&["output", "--tenant", id]).ok();
    let schema = format!("tenant_{}", id.replace('-', "_"));
    assert!(
        all.stdout
            .contains(&format!("postgres_schema = \"{schema}\"")),
        "{}",
        all.stdout
    );
    // The passwords are not outputs: the application reads them from the secret.
    assert!(!all.stdout.contains("password"), "{}", all.stdout);
    let arn = ws
        .run(&["output", "--tenant", id, "credentials_secret_arn", "--raw"])
        .ok();
    assert!(
        arn.stdout
            .trim()
            .starts_with("arn:aws:secretsmanager:us-east-1:"),
        "{}",
        arn.stdout
    );
    let raw = ws
        .run(&["output", "--tenant", id, "postgres_schema", "--raw"])
        .ok();
    assert_eq!(raw.stdout.trim(), schema);
    ws.run(&[
        "output",
        "--tenant",
        id,
        "postgres_password",
        "--show-secrets",
    ])
    .code(1)
    .contains("in its credentials secret (output credentials_secret_arn)");
    let stored = ws.password(id).await;
    let json = ws
        .run(&["output", "--tenant", id, "--json", "--show-secrets"])
        .ok();
    assert!(!json.stdout.contains(&stored), "{}", json.stdout);
    ws.run(&["output", "--tenant", id, "nope"])
        .code(1)
        .contains("has no output \"nope\"");

    let serial = || ws.state_json(id).unwrap()["serial"].clone();
    let grant = format!("{id}/postgres_table_grant.documents");
    let renamed = format!("{id}/postgres_table_grant.renamed");
    let before = serial();
    // Refused edits write nothing.
    ws.run(&["state", "rm", &grant, &format!("{id}/postgres_role.nope")])
        .code(1)
        .contains("no resource")
        .contains(&format!(
            "Hint: `tenantform state list --tenant {id}` shows what exists"
        ));
    ws.run(&["state", "mv", &grant, &format!("{id}/postgres_role.app")])
        .code(1)
        .contains("keeps the resource's type");
    ws.run(&[
        "state",
        "mv",
        &grant,
        &format!("{id}/postgres_table_grant.embeddings"),
    ])
    .code(1)
    .contains("already in state");
    ws.run(&["state", "rm", &grant, "--dry-run"])
        .ok()
        .contains(&format!("Would remove {grant}"));
    assert_eq!(serial(), before, "nothing written");

    ws.run(&["state", "mv", &grant, &renamed])
        .ok()
        .contains("Successfully moved 1 object.");
    let moved = ws.run(&["plan", "--detailed-exitcode"]).code(2);
    moved.contains("Plan: 1 to add, 0 to change, 1 to destroy.");
    ws.run(&["state", "mv", &renamed, &grant]).ok();
    ws.run(&["plan", "--detailed-exitcode"]).code(0);

    ws.run(&["state", "rm", &grant])
        .ok()
        .contains(&format!("Removed {grant}"));
    assert!(ws.state_json(id).unwrap()["resources"]["postgres_table_grant.documents"].is_null());
    ws.run(&["plan", "--detailed-exitcode"])
        .code(2)
        .contains("Plan: 1 to add, 0 to change, 0 to destroy.");
    ws.run(&["apply", "--auto-approve"]).ok();
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A step that runs long says so every ten seconds, as Terraform does, between its
/// "Creating..." and its "Creation complete" (on stderr when stdout carries JSON).
#[tokio::test]
async fn a_long_step_shows_life_every_ten_seconds() {
    let t = TenantDef::new("beat", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    // CREATE SCHEMA takes 11 s, and nothing else is slowed.
    ws.slow_down_command("CREATE SCHEMA", 11.0).await;
    let run = ws.run(&["apply", "--auto-approve", "--json"]).ok();
    let address = format!("{}/postgres_schema.main", t.id);
    let lines: Vec<&str> = run.stderr.lines().collect();
    let at = |needle: String| {
        lines
            .iter()
            .position(|l| *l == needle)
            .unwrap_or_else(|| panic!("no line {needle:?} in:\n{}", run.stderr))
    };
    let started = at(format!("{address}: Creating..."));
    let beat = at(format!("{address}: Still creating... [10s elapsed]"));
    let done = lines
        .iter()
        .position(|l| l.starts_with(&format!("{address}: Creation complete after 1")))
        .unwrap_or_else(|| panic!("no completion in:\n{}", run.stderr));
    assert!(started < beat && beat < done, "{}", run.stderr);
    assert!(!run.stderr.contains("[20s elapsed]"), "{}", run.stderr);
    // The same heartbeat on the JSON stream: an apply_progress with its elapsed time.
    let progress: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|m| m["type"] == "apply_progress" && m["hook"]["resource"]["addr"] == address)
        .collect();
    assert_eq!(progress.len(), 1, "{}", run.stdout);
    assert_eq!(progress[0]["hook"]["elapsed_seconds"], 10);
    assert_eq!(progress[0]["hook"]["action"], "create");
    // Only steps that ran ten seconds or more had a heartbeat.
    for l in lines.iter().filter(|l| l.contains(": Still creating...")) {
        let address = l.split(": Still").next().unwrap();
        let took: f64 = lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{address}: Creation complete after ")))
            .and_then(|s| s.trim_end_matches('s').parse().ok())
            .unwrap_or_else(|| panic!("{address} did not complete:\n{}", run.stderr));
        assert!(took >= 10.0, "{address} took {took} s:\n{}", run.stderr);
    }
    // The apply report is the last message of the stream.
    let last = run.stdout.lines().last().unwrap_or_default();
    let last: serde_json::Value = serde_json::from_str(last).expect("stdout is JSON lines");
    assert_eq!(last["type"], "apply_report", "{}", run.stdout);
    assert_eq!(last["report"]["format_version"], "1.0", "{}", run.stdout);
}

on_both_backends!(
    outputs_and_state_edits_behave_as_terraforms,
    a_clean_plan_after_apply_and_a_second_apply_change_nothing,
    destroy_removes_everything_and_twice_is_fine,
    a_removed_spec_is_planned_as_deletes_and_protection_survives_it,
    a_saved_plan_applies_once_and_is_refused_when_state_moved_on,
);

/// The first-run mistakes with PostgreSQL name the server and the cause: a port with
/// nothing listening, a wrong password.
#[tokio::test]
async fn an_unreachable_or_refusing_database_is_named_with_its_cause() {
    let t = TenantDef::new("pg-unreachable", "bronze");
    let mut ws = Workspace::new(std::slice::from_ref(&t)).await;
    let port = free_port();
    ws.set_env("PGPORT", &port.to_string());
    let run = ws.run(&["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("cannot reach PostgreSQL: 127.0.0.1:{port}: "))
            && run.stderr.contains("refused"),
        "{}",
        run.stderr
    );

    let mut ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.set_env("PGPASSWORD", "not-the-password");
    let run = ws.run(&["plan"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("28P01") && run.stderr.contains("password authentication failed"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains("not-the-password"), "{}", run.all());
}
