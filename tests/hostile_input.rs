//! Input that tries to reach past its tenant or past what a service accepts: a state
//! file naming another tenant's objects, a state with a dependency cycle, spec values a
//! service would refuse, platform values taken on trust. Each is refused before anything
//! runs, with the file, the field and a fix, and nothing changes.

mod support;

use std::fs;

use support::{TenantDef, Workspace};

/// Counts the rows that say B is intact: its role, its grants and its RLS policy.
async fn tenant_objects(ws: &Workspace, t: &TenantDef) -> Vec<i64> {
    let admin = ws.admin().await;
    let mut counts = Vec::new();
    for sql in [
        "SELECT count(*) FROM pg_roles WHERE rolname = $1",
        "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = $1",
        "SELECT count(*) FROM pg_policies WHERE schemaname = $1",
    ] {
        let row = admin.query_one(sql, &[&t.pg_name()]).await.unwrap();
        counts.push(row.get(0));
    }
    counts
}

/// A's state edited to carry B's role name: apply, plan and destroy of A are refused,
/// naming the file, the resource, the attribute, the expected and the found value, and
/// B keeps its role, grants and policy while A's state stays byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_naming_another_tenants_role_is_refused_and_nothing_changes() {
    let a = TenantDef::new("statea", "bronze");
    let b = TenantDef::new("stateb", "bronze");
    let ws = Workspace::new(&[a.clone(), b.clone()]).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let b_before = tenant_objects(&ws, &b).await;
    assert!(
        b_before[0] == 1 && b_before[1] > 0 && b_before[2] == 1,
        "{b_before:?}"
    );

    let path = ws.state_file(&a.id);
    let original = fs::read_to_string(&path).unwrap();
    let edited = original.replace(
        &format!("\"{}\"", a.pg_name()),
        &format!("\"{}\"", b.pg_name()),
    );
    assert_ne!(edited, original);
    fs::write(&path, &edited).unwrap();

    for args in [
        &["apply", "--tenant", &a.id, "--auto-approve"][..],
        &["plan", "--tenant", &a.id],
        &["destroy", "--tenant", &a.id, "--auto-approve"],
    ] {
        let run = ws.run(args).code(1);
        for needle in [
            path.display().to_string(),
            format!("{}/postgres_role.app name", a.id),
            format!("expected {}", a.pg_name()),
            format!("found {}", b.pg_name()),
            "nothing was changed".into(),
        ] {
            assert!(
                run.stderr.contains(&needle),
                "{args:?}: {needle:?} in:\n{}",
                run.stderr
            );
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), edited, "{args:?}");
    }
    assert_eq!(tenant_objects(&ws, &b).await, b_before, "B is intact");

    // Restored, A plans clean again.
    fs::write(&path, &original).unwrap();
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A `depends_on` cycle in a state file is found when the state is loaded, by every
/// command, naming the file and the resources in the cycle; the file is not touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_with_a_dependency_cycle_is_refused_when_loaded() {
    let t = TenantDef::new("cycle", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let path = ws.state_file(&t.id);
    let mut state = ws.state_json(&t.id).unwrap();
    state["resources"]["postgres_schema.main"]["depends_on"] =
        serde_json::json!([format!("{}/postgres_table.documents", t.id)]);
    let content = serde_json::to_string_pretty(&state).unwrap();
    fs::write(&path, &content).unwrap();
    for args in [
        &["plan"][..],
        &["destroy", "--auto-approve"],
        &["state", "list"],
    ] {
        let run = ws.run(args).code(1);
        for needle in [
            path.display().to_string(),
            "dependency cycle".into(),
            format!("{}/postgres_schema.main", t.id),
            format!("{}/postgres_table.documents", t.id),
        ] {
            assert!(
                run.stderr.contains(&needle),
                "{args:?}: {needle:?} in:\n{}",
                run.stderr
            );
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), content);
    }
}

/// A tenant file with values that a service would refuse: a NUL in the name (PostgreSQL
/// refuses it in the schema comment), a NUL and a semicolon in the cost center, one of
/// 300 characters (AWS tags take 256), escape sequences in the name. `validate` reports
/// each, with escapes instead of the raw characters.
#[tokio::test]
async fn values_a_service_would_refuse_are_caught_by_validate() {
    let ws = Workspace::new(&[]).await;
    let t = TenantDef::new("values", "bronze");
    let long = "C".repeat(300);
    for (key, value, says) in [
        ("name", r#""Evil\u0000Corp""#, r"\u{0}"),
        ("name", r#""Red\u001b[31m Corp""#, r"\u{1b}"),
        ("cost_center", r#""CC\u0000-1""#, r"\u{0}"),
        ("cost_center", r#""CC;1""#, "refuses in a tag value"),
        ("cost_center", &format!("{long:?}"), "300 characters"),
        ("owner_email", r#""a\u0007@b.example""#, r"\u{7}"),
    ] {
        fs::write(
            ws.specs().join(format!("tenants/{}.toml", t.id)),
            t.toml_with(key, value),
        )
        .unwrap();
        let run = ws.run(&["validate"]).code(1);
        let err = &run.stderr;
        assert!(err.contains(&format!("field `{key}`")), "{key}: {err}");
        assert!(err.contains(says), "{key} {value}: {says:?} in {err}");
        assert!(
            !err.contains('\0') && !err.contains('\u{1b}') && !err.contains('\u{7}'),
            "raw control characters in {err:?}"
        );
    }
}

/// Type errors name the key, not the value, and do not echo a 309-digit number.
#[tokio::test]
async fn type_errors_name_the_field() {
    let ws = Workspace::new(&[]).await;
    let t = TenantDef::new("types", "bronze");
    let huge = "9".repeat(309);
    for value in ["1.5", huge.as_str(), "\"lots\""] {
        let toml = t
            .toml()
            .replace("budget_inr = 500000", &format!("budget_inr = {value}"));
        fs::write(ws.specs().join(format!("tenants/{}.toml", t.id)), toml).unwrap();
        let run = ws.run(&["validate"]).code(1);
        assert!(
            run.stderr.contains("field `budget_inr`"),
            "{value}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains(&huge), "{}", run.stderr);
        assert!(
            run.stderr.contains(":5:"),
            "the line of budget_inr: {}",
            run.stderr
        );
    }
}

/// Platform values taken unchecked before: every one is reported at once, each with
/// the file, the line, the field and a fix, and none is blamed on a tenant file.
#[tokio::test]
async fn platform_values_are_checked_all_at_once() {
    let t = TenantDef::new("platform", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    let edits: &[(&str, &str, &str)] = &[
        (
            "dir = \"../dashboards\"",
            "dir = \"/etc\"",
            "dashboards.dir",
        ),
        (
            "service_principal = \"ecs-tasks.amazonaws.com\"",
            "service_principal = \"ecs\\\"}], \\\"x\\\": [{\\\"\"",
            "aws.service_principal",
        ),
        (
            "s3_glacier_days = 60",
            "s3_glacier_days = 45",
            "tiers.silver.s3_glacier_days",
        ),
        (
            "latency_queries = 20",
            "latency_queries = 0",
            "validation.latency_queries",
        ),
        (
            "postgres_schema = \"tenant_{id_}\"",
            "postgres_schema = \"pg_{id_}\"",
            "naming.postgres_schema",
        ),
        (
            "postgres_role = \"tenant_{id_}\"",
            "postgres_role = \"tenant_with_a_very_long_fixed_prefix_for_roles_{id_}\"",
            "naming.postgres_role",
        ),
        (
            "allowed_jurisdictions = [\"in\"]",
            "allowed_jurisdictions = []",
            "data_classifications.india-resident.allowed_jurisdictions",
        ),
        ("[tiers.bronze]", "[tiers.\"\"]", "tiers."),
        ("[regions.ap-south-1]", "[regions.\"\"]", "regions."),
    ];
    ws.edit_platform(|p| {
        let mut p = p;
        for (from, to, _) in edits {
            assert!(p.contains(from), "{from}");
            p = p.replacen(from, to, 1);
        }
        p
    });
    let run = ws.run(&["validate"]).code(1);
    let platform = ws.platform_path().display().to_string();
    let lines: Vec<&str> = run.stderr.lines().collect();
    for (_, _, field) in edits {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("field `{field}")))
            .unwrap_or_else(|| panic!("no problem for {field} in:\n{}", run.stderr));
        // file:line:column: field `...`: message; fix
        assert!(
            line.trim_start().starts_with(&format!("{platform}:")),
            "{line}"
        );
        let after_file = &line.trim_start()[platform.len() + 1..];
        assert!(
            after_file.starts_with(|c: char| c.is_ascii_digit()),
            "no line: {line}"
        );
        assert!(line.contains("; "), "no fix: {line}");
    }
    assert!(
        !run.stderr.contains(&format!("{}.toml", t.id)),
        "a platform problem blamed on the tenant:\n{}",
        run.stderr
    );
}
