//! The engine under faults, against a real PostgreSQL: a run killed at any moment,
//! two runs on one tenant, an interrupt, bad input, damaged state, a step that fails.

mod support;

use std::fs;
use std::time::Duration;

use support::*;

/// Resource statuses in the tenant's state file: (local address, status).
fn statuses(ws: &Workspace, id: &str) -> Vec<(String, String)> {
    let Some(state) = ws.state_json(id) else {
        return Vec::new();
    };
    state["resources"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, r)| (k.clone(), r["status"].as_str().unwrap().to_owned()))
        .collect()
}

/// Creates in flight of the resources whose DDL `slow_down_ddl` makes slow: the moment
/// to kill a run in the middle of a create.
fn ddl_in(ws: &Workspace, id: &str, status: &str) -> usize {
    statuses(ws, id)
        .iter()
        .filter(|(k, s)| s == status && (k.starts_with("postgres_") || k.starts_with("vector_")))
        .count()
}

fn count_status(ws: &Workspace, id: &str, status: &str) -> usize {
    statuses(ws, id).iter().filter(|(_, s)| s == status).count()
}

/// What exists in the database for a tenant: schema, role, tables, policies.
async fn objects(ws: &Workspace, t: &TenantDef) -> Vec<String> {
    let c = ws.admin().await;
    let rows = c
        .query(
            "SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = $1 \
             UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname = $1 \
             UNION ALL SELECT 'table ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                       WHERE n.nspname = $1 AND c.relkind = 'r' \
             UNION ALL SELECT 'policy ' || policyname FROM pg_policies WHERE schemaname = $1 \
             ORDER BY 1",
            &[&t.pg_name()],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

fn complete(t: &TenantDef) -> Vec<String> {
    let n = t.pg_name();
    let mut v = vec![
        "policy tenant_isolation".to_owned(),
        format!("role {n}"),
        format!("schema {n}"),
        "table documents".to_owned(),
        "table embeddings".to_owned(),
    ];
    v.sort();
    v
}

/// A run killed with SIGKILL at several moments of its work (while a create is in
/// flight, part way, nearly done) leaves a state from which the next apply converges:
/// every resource exists once, state says `created` for each, and a plan is clean.
#[tokio::test]
async fn apply_killed_at_any_moment_converges_on_the_next_run() {
    // Kill when the state shows this many created database objects (of 8) and the
    // create of another one in flight.
    let kill_points = [0usize, 3, 6];
    let tenants: Vec<TenantDef> = kill_points
        .iter()
        .map(|k| TenantDef::new(&format!("kill{k}"), "bronze"))
        .collect();
    let ws = Workspace::new(&tenants).await;
    ws.slow_down_ddl(0.4).await;

    for (t, &k) in tenants.iter().zip(&kill_points) {
        let child = ws.spawn(&[
            "apply",
            "--auto-approve",
            "--tenant",
            &t.id,
            "--parallelism",
            "1",
        ]);
        let t0 = std::time::Instant::now();
        let mut child = child;
        while !(ddl_in(&ws, &t.id, "created") >= k && ddl_in(&ws, &t.id, "creating") >= 1) {
            if t0.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
                child.kill().ok();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "{}: never had {k} created and a database object being created; state: {:?}\n{}",
                    t.id,
                    statuses(&ws, &t.id),
                    Run::from(out).all()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the run was killed");
        assert!(
            count_status(&ws, &t.id, "creating") >= 1,
            "{}: state records the create that was in flight: {:?}",
            t.id,
            statuses(&ws, &t.id)
        );
    }

    ws.remove_slow_down().await;
    let run = ws.run(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("Apply complete!"), "{}", run.all());
    for t in &tenants {
        assert_eq!(objects(&ws, t).await, complete(t), "{}", t.id);
        let s = statuses(&ws, &t.id);
        assert_eq!(s.len(), PER_TENANT, "{}: {s:?}", t.id);
        assert!(s.iter().all(|(_, st)| st == "created"), "{}: {s:?}", t.id);
        // The tenant's own credentials work: the password in state is the role's.
        let c = ws
            .tenant_client(t)
            .await
            .expect("tenant connects with the password in state");
        c.execute(
            &format!(
                "INSERT INTO {}.documents (content) VALUES ('after crash')",
                t.pg_name()
            ),
            &[],
        )
        .await
        .unwrap();
    }
    ws.run(&["plan", "--detailed-exitcode"])
        .code(0)
        .contains("No changes");
}

/// A second run on a locked tenant fails at once naming the holder; with
/// `--lock-timeout` it waits for the holder and then finds nothing to do.
async fn a_second_run_names_the_lock_holder_or_waits_for_it(backend: Backend) {
    let t = TenantDef::new("lock", "silver");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    ws.slow_down_ddl(0.3).await;

    // One step at a time keeps the holder busy for seconds, long enough for the two
    // refused runs below (each of which, with PostgreSQL state, logs in first).
    let first = ws.spawn(&["apply", "--auto-approve", "--parallelism", "1"]);
    let pid = first.id();
    wait_until(
        "the first run to start creating",
        Duration::from_secs(60),
        || count_status(&ws, &t.id, "creating") + count_status(&ws, &t.id, "created") >= 1,
    );

    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let second = ws.run(&["apply", "--auto-approve"]).code(1);
    let msg = second.stderr.clone();
    assert!(
        msg.contains(&format!("tenant {} is locked by apply", t.id)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("pid {pid} on {}", host.trim())),
        "{msg}"
    );
    assert!(msg.contains("since 20"), "{msg}");
    assert!(
        msg.contains(&format!("tenantform force-unlock {}", t.id)),
        "{msg}"
    );
    // Destroy is refused the same way, and nothing it would do happened.
    ws.run(&["destroy", "--auto-approve"])
        .code(1)
        .contains("is locked by apply");

    let waiter = ws.spawn(&["apply", "--auto-approve", "--lock-timeout", "2m"]);
    let first = finish(first).ok();
    assert!(
        first.stdout.contains(&format!("{PER_TENANT} added")),
        "{}",
        first.all()
    );
    let waiter = finish(waiter).ok();
    assert!(
        waiter.stdout.contains("No changes"),
        "the waiter found the work done:\n{}",
        waiter.all()
    );
    assert_eq!(objects(&ws, &t).await, complete(&t));
}

/// force-unlock breaks a lock held by a live but stuck process, only with the right id.
async fn force_unlock_breaks_a_stuck_holder_with_its_lock_id(backend: Backend) {
    let t = TenantDef::new("stuck", "bronze");
    let ws = Workspace::with_backend(std::slice::from_ref(&t), backend).await;
    // The lease of the stopped holder must not run out during the test: it is alive.
    ws.set_lease_ttl(900);
    ws.slow_down_ddl(0.3).await;

    let stuck = ws.spawn(&["apply", "--auto-approve", "--parallelism", "1"]);
    wait_until("the run to hold the lock", Duration::from_secs(60), || {
        count_status(&ws, &t.id, "creating") + count_status(&ws, &t.id, "created") >= 1
    });
    signal(&stuck, "STOP");

    let refused = ws.run(&["apply", "--auto-approve"]).code(1);
    let lock_id = refused
        .stderr
        .split("lock id ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("the message gives the lock id")
        .to_owned();

    ws.run(&[
        "force-unlock",
        &t.id,
        "00000000-0000-0000-0000-000000000000",
    ])
    .code(1)
    .contains("lock id");
    // The holder is stopped, not gone: without --force (and no terminal to ask on)
    // its lock stays, and the refusal says why.
    ws.run(&["force-unlock", &t.id, &lock_id])
        .code(1)
        .contains("is alive")
        .contains("stopped, not gone")
        .contains("--force");
    ws.run(&["apply", "--auto-approve"])
        .code(1)
        .contains(&lock_id);
    ws.run(&["force-unlock", "--force", &t.id, &lock_id])
        .ok()
        .contains(&format!("Broke the lock of tenant {}", t.id));

    // The stuck run is gone for good; the next run takes the lock and converges.
    let mut stuck = stuck;
    stuck.kill().unwrap();
    signal(&stuck, "CONT");
    let _ = stuck.wait();
    ws.remove_slow_down().await;
    ws.run(&["apply", "--auto-approve"])
        .ok()
        .contains("Apply complete!");
    assert_eq!(objects(&ws, &t).await, complete(&t));
    ws.run(&["force-unlock", &t.id, &lock_id])
        .code(1)
        .contains("not locked");
}

/// Ctrl-C: no new step starts, the steps in flight finish and are saved, exit 130.
#[tokio::test]
async fn interrupt_saves_state_and_exits_130() {
    let t = TenantDef::new("sigint", "gold");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.slow_down_ddl(0.5).await;

    let child = ws.spawn(&["apply", "--auto-approve", "--parallelism", "1"]);
    wait_until("one resource created", Duration::from_secs(60), || {
        count_status(&ws, &t.id, "created") >= 1
    });
    signal(&child, "INT");
    let run = finish(child).code(130);
    assert!(run.all().contains("Interrupt received"), "{}", run.all());
    assert!(
        run.stdout
            .contains(&format!("Tenant {} was interrupted", t.id)),
        "{}",
        run.all()
    );

    let s = statuses(&ws, &t.id);
    assert!(
        !s.is_empty() && s.len() < PER_TENANT + 1,
        "part of the work was done (a Gold tenant has {} resources): {s:?}",
        PER_TENANT + 1
    );
    assert!(
        s.iter().all(|(_, st)| st == "created"),
        "steps in flight finished and were saved: {s:?}"
    );
    assert!(
        !ws.state().join(format!("tenants/{}.lock", t.id)).exists(),
        "lock released"
    );

    ws.remove_slow_down().await;
    let run = ws.run(&["apply", "--auto-approve"]).ok();
    assert!(
        run.stdout
            .contains(&format!("{} added", PER_TENANT + 1 - s.len())),
        "{}",
        run.all()
    );
    assert_eq!(objects(&ws, &t).await, complete(&t));
}

/// Every kind of bad spec is an error naming the file, line, field and fix, and nothing
/// is changed: an applied tenant's state and objects stay as they were.
#[tokio::test]
async fn bad_specs_are_rejected_with_file_line_field_and_fix_and_change_nothing() {
    let good = TenantDef::new("good", "silver");
    let ws = Workspace::new(std::slice::from_ref(&good)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let state_before = fs::read(ws.state_file(&good.id)).unwrap();
    let objects_before = objects(&ws, &good).await;

    let base = TenantDef::new("bad", "bronze");
    let valid = base.toml();
    let with = |key: &str, value: &str| base.toml_with(key, value);
    let file = format!("{}.toml", base.id);
    let duplicate = format!("tenant id \"{}\" is already declared in", good.id);
    // (file name, content, expected line:field, words of the message)
    let cases: Vec<(String, String, &str, &str)> = vec![
        (
            file.clone(),
            with("tier", "\"platinum\""),
            ":3:",
            "field `tier`: unknown tier \"platinum\"; use one of the tiers in platform.toml: bronze, gold, silver",
        ),
        (
            "Bad_Id.toml".into(),
            with("id", "\"Bad_Id\""),
            ":1:",
            "field `id`: tenant id \"Bad_Id\" must start with a lowercase letter",
        ),
        (
            file.clone(),
            with("region", "\"mars-1\""),
            ":4:",
            "field `region`: region \"mars-1\" is not allowed on this platform; use one of:",
        ),
        (
            file.clone(),
            with("budget_inr", "-5"),
            ":5:",
            "field `budget_inr`: budget -5 is negative",
        ),
        (
            file.clone(),
            format!("{valid}colour = \"red\"\n"),
            ":10:",
            "unknown field `colour`",
        ),
        (
            file.clone(),
            with("tier", ""),
            ":3:",
            "fix the TOML syntax at this place",
        ),
        (
            file.clone(),
            with("data_classification", "\"phi\"").replace("us-east-1", "eu-west-1"),
            ":4:",
            "data residency: \"phi\" data may not be stored in eu-west-1",
        ),
        (
            file.clone(),
            with("data_classification", "\"secret\""),
            ":8:",
            "field `data_classification`: unknown data classification \"secret\"",
        ),
        (
            format!("{}-copy.toml", good.id),
            good.toml(),
            ":1:",
            &duplicate,
        ),
        (
            file.clone(),
            with(
                "id",
                &format!("\"{}\"", TenantDef::new("other", "bronze").id),
            ),
            ":1:",
            "does not match the file name",
        ),
    ];
    for (name, content, place, words) in &cases {
        let path = ws.specs().join("tenants").join(name);
        fs::write(&path, content).unwrap();
        for args in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
            let run = ws.run(args).code(1);
            let expected_place = format!("{}{place}", path.display());
            assert!(
                run.stderr.contains(&expected_place) && run.stderr.contains(words),
                "{args:?} with {name}: expected {expected_place:?} and {words:?} in:\n{}",
                run.stderr
            );
            assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
            assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        }
        fs::remove_file(&path).unwrap();
    }
    // Several problems at once are all reported.
    let path = ws.specs().join("tenants").join(&file);
    fs::write(
        &path,
        with("tier", "\"platinum\"").replace("budget_inr = 500000", "budget_inr = -1"),
    )
    .unwrap();
    let run = ws.run(&["validate"]).code(1).contains("2 problems");
    assert!(
        run.stderr.contains("budget_inr") && run.stderr.contains("tier"),
        "{}",
        run.stderr
    );
    fs::remove_file(&path).unwrap();

    assert_eq!(
        fs::read(ws.state_file(&good.id)).unwrap(),
        state_before,
        "state untouched"
    );
    assert_eq!(
        objects(&ws, &good).await,
        objects_before,
        "objects untouched"
    );
    assert!(
        !ws.state_file(&base.id).exists(),
        "no state for the bad tenant"
    );
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A state file that is not JSON, or was written by a newer version, is an error
/// naming the file, and the file is left exactly as it was.
#[tokio::test]
async fn damaged_or_newer_state_is_a_clear_error_and_is_never_overwritten() {
    let t = TenantDef::new("damaged", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.run(&["apply", "--auto-approve"]).ok();
    let path = ws.state_file(&t.id);
    let good = fs::read_to_string(&path).unwrap();

    let newer = good.replacen("\"format_version\": 1", "\"format_version\": 99", 1);
    assert_ne!(newer, good, "the state file names its format version");
    let truncated = good[..good.len() / 2].to_owned();
    for (content, words) in [
        (truncated.as_str(), "invalid JSON"),
        ("", "invalid JSON"),
        (
            newer.as_str(),
            "format version 99, newer than this tenantform understands",
        ),
    ] {
        fs::write(&path, content).unwrap();
        for args in [
            &["plan"][..],
            &["apply", "--auto-approve"],
            &["destroy", "--auto-approve"],
            &["show"],
        ] {
            let run = ws.run(args).code(1);
            assert!(
                run.stderr.contains(&path.display().to_string()) && run.stderr.contains(words),
                "{args:?}: expected the path and {words:?} in:\n{}",
                run.stderr
            );
            assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
            assert_eq!(
                fs::read_to_string(&path).unwrap(),
                content,
                "{args:?} left the file alone"
            );
        }
    }
    assert_eq!(objects(&ws, &t).await, complete(&t), "nothing was deleted");
    fs::write(&path, &good).unwrap();
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A step that fails part way through a new tenant rolls back everything this run
/// created for it, and nothing else; the next apply, with the fault gone, succeeds.
#[tokio::test]
async fn a_failed_step_rolls_the_new_tenant_back_completely() {
    let t = TenantDef::new("rollback", "silver");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.admin()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_policies() RETURNS event_trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'policies are refused by an injected fault'; END $$; \
             CREATE EVENT TRIGGER refuse_policies ON ddl_command_end WHEN TAG IN ('CREATE POLICY') \
             EXECUTE FUNCTION refuse_policies();",
        )
        .await
        .unwrap();

    let run = ws.run(&["apply", "--auto-approve"]).code(1);
    let out = run.all();
    assert!(out.contains("rolling back"), "{out}");
    assert!(
        out.contains(&format!(
            "Tenant {} failed and was rolled back completely",
            t.id
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}/postgres_row_security.documents", t.id)),
        "names the failed resource: {out}"
    );
    assert!(
        out.contains("policies are refused by an injected fault"),
        "{out}"
    );
    assert_eq!(
        objects(&ws, &t).await,
        Vec::<String>::new(),
        "nothing of the tenant is left"
    );
    assert!(
        statuses(&ws, &t.id).is_empty(),
        "state holds nothing: {:?}",
        statuses(&ws, &t.id)
    );

    ws.admin()
        .await
        .batch_execute("DROP EVENT TRIGGER refuse_policies")
        .await
        .unwrap();
    ws.run(&["apply", "--auto-approve"])
        .ok()
        .contains(&format!("{PER_TENANT} added"));
    assert_eq!(objects(&ws, &t).await, complete(&t));
}

/// A name already taken by something the engine does not manage is an error that says
/// so; the rollback removes what this run made and leaves the foreign object alone.
#[tokio::test]
async fn a_name_taken_by_someone_else_fails_and_the_foreign_object_survives() {
    let t = TenantDef::new("taken", "bronze");
    let ws = Workspace::new(std::slice::from_ref(&t)).await;
    ws.admin()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {} NOLOGIN CONNECTION LIMIT 3; COMMENT ON ROLE {} IS 'owned by another team'",
            t.pg_name(),
            t.pg_name()
        ))
        .await
        .unwrap();

    let run = ws.run(&["apply", "--auto-approve"]).code(1);
    let out = run.all();
    assert!(
        out.contains("already exists and is not managed by tenantform"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}/postgres_role.app", t.id)),
        "{out}"
    );
    assert!(out.contains("rolled back completely"), "{out}");

    let row = ws
        .admin()
        .await
        .query_one(
            "SELECT r.rolcanlogin, r.rolconnlimit, shobj_description(r.oid, 'pg_authid') \
             FROM pg_roles r WHERE rolname = $1",
            &[&t.pg_name()],
        )
        .await
        .expect("the foreign role still exists");
    assert!(!row.get::<_, bool>(0), "untouched: still NOLOGIN");
    assert_eq!(row.get::<_, i32>(1), 3, "untouched: its connection limit");
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("owned by another team")
    );
    assert_eq!(
        objects(&ws, &t).await,
        vec![format!("role {}", t.pg_name())],
        "only the foreign role is left"
    );
    assert!(statuses(&ws, &t.id).is_empty());
}

on_both_backends!(
    a_second_run_names_the_lock_holder_or_waits_for_it,
    force_unlock_breaks_a_stuck_holder_with_its_lock_id,
);
