//! Runs and workers against the real stack: `tenantform worker` processes claiming
//! provision runs from the platform database, serialized per tenant; workers killed
//! (`kill -9`) mid-run and taken over after their lease; a CLI `apply` and a run on the
//! same tenant; plans stored and applied later under the stale-plan rule; queue
//! positions and "blocked by".
//!
//! Sizes: `TENANTFORM_RUNS_TEST_REQUESTS` requests (default 30) on 3 workers; the
//! benchmark (`scripts/bench`) has the full figures.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// A child process killed when the test ends, passed or failed.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// `kill -9`, and wait for it to be gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Waits for the process to end and returns what it printed.
    fn output(mut self) -> Run {
        Run::from(self.0.take().expect("running").wait_with_output().unwrap())
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Requests the big tests submit at once.
fn requests() -> usize {
    std::env::var("TENANTFORM_RUNS_TEST_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

/// A workspace whose runs go to workers, with short leases so that takeovers happen
/// within seconds.
async fn workers_workspace(tenants: &[TenantDef], lease_secs: u64) -> Workspace {
    let ws = Workspace::new(tenants).await;
    ws.edit_platform(|p| {
        p.replace("executor = \"embedded\"", "executor = \"workers\"")
            .replace("lease_secs = 30 ", &format!("lease_secs = {lease_secs} "))
            .replace("heartbeat_secs = 10 ", "heartbeat_secs = 1 ")
            .replace("poll_secs = 5 ", "poll_secs = 1 ")
    });
    ws
}

/// `tenantform worker` in the background, its log in the workspace.
fn start_worker(ws: &Workspace, name: &str, concurrency: usize) -> KillOnDrop {
    let log = fs::File::create(ws.dir.path().join(format!("{name}.log"))).unwrap();
    let child = ws
        .command(&["worker", "--concurrency", &concurrency.to_string()])
        .env("TENANTFORM_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("worker starts");
    KillOnDrop(Some(child))
}

/// A Bronze tenant that needs no approval (India, a small budget, internal data).
fn bronze(prefix: &str) -> TenantDef {
    let mut t = TenantDef::new(prefix, "bronze");
    t.region = "ap-south-1".into();
    t.budget_inr = 200_000;
    t
}

/// Submits every request at once (one process each); each returns without waiting
/// for its provisioning.
fn submit_all(ws: &Workspace, tenants: &[TenantDef]) {
    let children: Vec<(String, Child)> = tenants
        .iter()
        .map(|t| {
            let file = ws.dir.path().join(format!("request-{}.toml", t.id));
            fs::write(&file, t.toml()).unwrap();
            let child = ws
                .command(&[
                    "request",
                    "submit",
                    file.to_str().unwrap(),
                    "--requester",
                    "runs@test.example",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (t.id.clone(), child)
        })
        .collect();
    for (id, child) in children {
        let run = Run::from(child.wait_with_output().unwrap()).ok();
        assert!(
            run.stdout.contains("provisioning run"),
            "{id}: submit returned without queuing a run:\n{}",
            run.all()
        );
    }
}

/// Request statuses by tenant.
async fn request_statuses(ws: &Workspace) -> BTreeMap<String, String> {
    ws.admin()
        .await
        .query("SELECT id, status FROM tenantform.requests", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Waits until every request of `tenants` is in one of `ends`; returns the statuses.
async fn wait_for_requests(
    ws: &Workspace,
    tenants: &[TenantDef],
    ends: &[&str],
    timeout: Duration,
) -> BTreeMap<String, String> {
    let t0 = Instant::now();
    loop {
        let statuses = request_statuses(ws).await;
        if tenants.iter().all(|t| {
            statuses
                .get(&t.id)
                .is_some_and(|s| ends.contains(&s.as_str()))
        }) {
            return statuses;
        }
        assert!(
            t0.elapsed() < timeout,
            "requests did not end within {timeout:?}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until every request of `tenants` is settled (active, rolled back or failed).
async fn wait_for_settled(ws: &Workspace, tenants: &[TenantDef]) -> BTreeMap<String, String> {
    let ends = ["active", "rolled_back", "failed"];
    wait_for_requests(ws, tenants, &ends, Duration::from_secs(420)).await
}

/// Samples the runs table until stopped: the most runs active at once, and every
/// moment a tenant had two active runs.
fn sample_active_runs(
    ws: &Workspace,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let database = ws.database.clone();
    tokio::spawn(async move {
        let db = admin(&database).await;
        let mut most = 0;
        let mut doubles = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let rows = db
                .query(
                    "SELECT tenant, count(*) FROM tenantform.runs \
                     WHERE status IN ('planning', 'applying', 'rolling_back') GROUP BY tenant",
                    &[],
                )
                .await
                .unwrap_or_default();
            most = most.max(rows.len());
            for r in rows {
                if r.get::<_, i64>(1) > 1 {
                    doubles.push(r.get(0));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (most, doubles)
    })
}

/// Runs whose events go back to an earlier attempt after a later one wrote: two
/// attempts of one run interleaved (a fenced write got through).
async fn interleaved_attempts(ws: &Workspace) -> Vec<String> {
    ws.admin()
        .await
        .query(
            "SELECT DISTINCT run_id::text FROM (SELECT run_id, attempt, \
               max(attempt) OVER (PARTITION BY run_id ORDER BY id) AS seen FROM tenantform.run_events) e \
             WHERE attempt < seen",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits until `n` steps of runs have finished (mid-apply, when a tenant has more).
async fn wait_for_finished_steps(db: &tokio_postgres::Client, n: i64) {
    let t0 = Instant::now();
    loop {
        let finished: i64 = db
            .query_one(
                "SELECT count(*) FROM tenantform.run_events WHERE kind = 'finished'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if finished >= n {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no step finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `runs start` of `operation` on `tenant` with `flags` (`--auto-apply`, `--rotate`);
/// the run's id.
fn start_run(ws: &Workspace, tenant: &str, operation: &str, flags: &[&str]) -> String {
    let mut args = vec![
        "runs",
        "start",
        "--tenant",
        tenant,
        "--operation",
        operation,
        "--json",
    ];
    args.extend_from_slice(flags);
    let out = ws.run(&args).ok();
    let run: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.all()));
    run["id"].as_str().unwrap().to_owned()
}

/// `runs show ID --json`.
fn show(ws: &Workspace, id: &str) -> Value {
    let run = ws.run(&["runs", "show", id, "--json"]).ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// The run once it is final (a request is active before its provisioning run's end is
/// written: the run's event log drains first), or as it is after 60 s.
async fn show_settled(ws: &Workspace, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = show(ws, id);
        let status: tenantform::runs::RunStatus = serde_json::from_value(run["status"].clone())
            .unwrap_or_else(|e| panic!("{e}: {run:#}"));
        if status.is_final() || Instant::now() > deadline {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// N Bronze requests submitted at once to 3 workers: every one ends active, each
/// tenant is provisioned by exactly one run in one attempt with one create per
/// resource, the runs spread over the workers, and no tenant ever has two active runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_three_workers_are_provisioned_once_each() {
    let tenants: Vec<TenantDef> = (0..requests()).map(|_| bronze("rw")).collect();
    let mut ws = workers_workspace(&[], 10).await;
    ws.tenants = tenants.clone();
    let _workers: Vec<KillOnDrop> = (0..3)
        .map(|i| start_worker(&ws, &format!("worker-{i}"), 1))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_active_runs(&ws, stop.clone());
    let t0 = Instant::now();
    submit_all(&ws, &tenants);
    let statuses = wait_for_settled(&ws, &tenants).await;
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (most_active, doubles) = sampler.await.unwrap();
    for t in &tenants {
        assert_eq!(
            statuses[&t.id],
            "active",
            "{}",
            ws.run(&["request", "status", &t.id]).all()
        );
    }
    eprintln!(
        "{} requests on 3 workers: all active after {:.1} s, at most {most_active} runs active at once",
        tenants.len(),
        elapsed.as_secs_f64()
    );
    assert!(
        doubles.is_empty(),
        "tenants with two active runs: {doubles:?}"
    );
    assert!(most_active > 1, "runs of different tenants ran in parallel");

    let db = ws.admin().await;
    // A request is active before its run's end is written: wait for every run's end.
    for row in db
        .query(
            "SELECT id::text FROM tenantform.runs WHERE operation = 'provision'",
            &[],
        )
        .await
        .unwrap()
    {
        show_settled(&ws, row.get(0)).await;
    }
    let runs = db
        .query(
            "SELECT tenant, count(*), max(attempt), bool_and(status = 'applied') FROM tenantform.runs \
             WHERE operation = 'provision' GROUP BY tenant",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), tenants.len());
    for r in &runs {
        let tenant: String = r.get(0);
        assert_eq!(r.get::<_, i64>(1), 1, "{tenant}: one provision run");
        assert_eq!(r.get::<_, i32>(2), 1, "{tenant}: one attempt");
        assert!(r.get::<_, bool>(3), "{tenant}: applied");
    }
    // Each tenant's resources were created once: one finished create per address.
    let creates = db
        .query(
            "SELECT r.tenant, count(*), count(DISTINCT e.address) FROM tenantform.run_events e \
             JOIN tenantform.runs r ON r.id = e.run_id \
             WHERE e.kind = 'finished' AND e.detail->>'step' = 'create' GROUP BY r.tenant",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(creates.len(), tenants.len());
    for r in &creates {
        let tenant: String = r.get(0);
        assert_eq!(r.get::<_, i64>(1) as usize, PER_TENANT, "{tenant}");
        assert_eq!(r.get::<_, i64>(2) as usize, PER_TENANT, "{tenant}");
    }
    // The runs spread over the workers.
    let workers: i64 = db
        .query_one(
            "SELECT count(DISTINCT detail->>'worker') FROM tenantform.run_events \
             WHERE kind = 'status' AND detail->>'to' = 'planning'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(workers >= 2, "runs were executed by {workers} worker(s)");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// The same with one worker killed (`kill -9`) three times while it holds a run, and
/// restarted each time: every request still ends active or rolled back, nothing is
/// left on any service of a rolled-back tenant, every active tenant matches its spec,
/// and no run's attempts ever interleaved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_survive_a_worker_killed_three_times() {
    let tenants: Vec<TenantDef> = (0..requests()).map(|_| bronze("rk")).collect();
    let mut ws = workers_workspace(&[], 3).await;
    ws.tenants = tenants.clone();
    let mut victim = start_worker(&ws, "victim-0", 1);
    let _others: Vec<KillOnDrop> = (1..3)
        .map(|i| start_worker(&ws, &format!("worker-{i}"), 1))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_active_runs(&ws, stop.clone());
    submit_all(&ws, &tenants);

    // Kill the victim each time it holds a run, and start it again.
    let db = ws.admin().await;
    let mut kills = 0;
    let t0 = Instant::now();
    while kills < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "the victim never held a run"
        );
        let pid = victim.pid() as i32;
        let holding: i64 = db
            .query_one(
                "SELECT count(*) FROM tenantform.runs WHERE status IN ('planning', 'applying', 'rolling_back') \
                 AND lease_owner LIKE '%:' || $1::int::text || ':%'",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if holding > 0 {
            // Let it get some way into its runs, then kill it.
            tokio::time::sleep(Duration::from_millis(700)).await;
            victim.kill();
            kills += 1;
            victim = start_worker(&ws, &format!("victim-{kills}"), 1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses = wait_for_settled(&ws, &tenants).await;
    stop.store(true, Ordering::SeqCst);
    let (_, doubles) = sampler.await.unwrap();
    assert!(
        doubles.is_empty(),
        "tenants with two active runs: {doubles:?}"
    );
    assert!(
        interleaved_attempts(&ws).await.is_empty(),
        "attempts of a run interleaved"
    );
    let taken_over: i64 = db
        .query_one(
            "SELECT count(*) FROM tenantform.runs WHERE attempt > 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(taken_over >= 1, "the kills left runs to take over");

    let mut rolled_back = 0;
    for t in &tenants {
        let status = statuses[&t.id].as_str();
        assert!(
            status == "active" || status == "rolled_back",
            "{}: {status}",
            t.id
        );
        let state = ws.state_json(&t.id);
        if status == "rolled_back" {
            rolled_back += 1;
            assert_eq!(leftovers(&ws, t).await, Vec::<String>::new(), "{}", t.id);
        } else {
            // Everything the tenant has is recorded as created: nothing is left half-way.
            let state = state.expect("state of an active tenant");
            let resources = state["resources"].as_object().unwrap();
            assert_eq!(resources.len(), PER_TENANT, "{}", t.id);
            assert!(
                resources.values().all(|r| r["status"] == "created"),
                "{}",
                t.id
            );
        }
    }
    eprintln!(
        "{} requests, a worker killed 3 times: {} active, {rolled_back} rolled back, {taken_over} run(s) taken over",
        tenants.len(),
        tenants.len() - rolled_back
    );
    // Every active tenant's resources exist as their specs say: a refreshed plan is
    // clean.
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A run whose worker is killed mid-apply is finished by another worker once the lease
/// expired (attempt 2), and converges: a second plan is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_apply_is_taken_over_and_converges() {
    let t = bronze("rt");
    let mut ws = workers_workspace(&[], 3).await;
    ws.tenants = vec![t.clone()];
    ws.slow_down_ddl(0.4).await;
    let mut first = start_worker(&ws, "first", 1);
    submit_all(&ws, std::slice::from_ref(&t));
    let db = ws.admin().await;
    // Mid-apply: some steps finished, the tenant not yet complete.
    wait_for_finished_steps(&db, 2).await;
    first.kill();
    ws.remove_slow_down().await;
    let _second = start_worker(&ws, "second", 1);
    wait_for_requests(
        &ws,
        std::slice::from_ref(&t),
        &["active"],
        Duration::from_secs(180),
    )
    .await;

    let run_id: String = db
        .query_one(
            "SELECT id::text FROM tenantform.runs WHERE tenant = $1",
            &[&t.id],
        )
        .await
        .unwrap()
        .get(0);
    let run = show_settled(&ws, &run_id).await;
    assert_eq!(run["status"], "applied", "{run:#}");
    assert_eq!(run["attempt"], 2, "{run:#}");
    let events = run["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["detail"]["takeover"] == true),
        "the takeover is in the events: {run:#}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["attempt"] == 1 && e["kind"] == "finished"),
        "{run:#}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["attempt"] == 2 && e["kind"] == "status"),
        "{run:#}"
    );
    let interleaved = interleaved_attempts(&ws).await;
    assert!(interleaved.is_empty(), "{interleaved:?}");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A worker stopped (SIGSTOP) past its lease mid-apply, with state in PostgreSQL: another
/// worker takes the run over (attempt 2) and, through the run's reference in the state
/// lock, the tenant's lock with it. When the stopped worker resumes, it finds itself
/// fenced and writes nothing more: no event of attempt 1 after attempt 2's, the run
/// applied once, and the tenant converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_is_fenced_out_when_it_resumes() {
    let t = bronze("rs");
    let mut ws = workers_workspace(&[], 3).await;
    ws.set_env("TENANTFORM_STATE_BACKEND", "postgres");
    ws.set_lease_ttl(2);
    ws.run(&["state", "list"]).ok();
    ws.tenants = vec![t.clone()];
    ws.slow_down_ddl(0.4).await;
    let first = start_worker(&ws, "stopped", 1);
    submit_all(&ws, std::slice::from_ref(&t));
    let db = ws.admin().await;
    wait_for_finished_steps(&db, 2).await;
    let stopped = first.0.as_ref().expect("running");
    signal(stopped, "STOP");
    // Past both leases (the run's 3 s, the state lock's 2 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    ws.remove_slow_down().await;
    let _second = start_worker(&ws, "second", 1);
    wait_for_requests(
        &ws,
        std::slice::from_ref(&t),
        &["active"],
        Duration::from_secs(180),
    )
    .await;
    signal(first.0.as_ref().expect("running"), "CONT");
    // Time for the resumed worker's next heartbeat and writes to be refused.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let run_id: String = db
        .query_one(
            "SELECT id::text FROM tenantform.runs WHERE tenant = $1",
            &[&t.id],
        )
        .await
        .unwrap()
        .get(0);
    let run = show_settled(&ws, &run_id).await;
    assert_eq!(run["status"], "applied", "{run:#}");
    assert_eq!(run["attempt"], 2, "{run:#}");
    assert!(
        interleaved_attempts(&ws).await.is_empty(),
        "a write of the stopped attempt got through after the takeover"
    );
    let log = fs::read_to_string(ws.dir.path().join("stopped.log")).unwrap();
    assert!(log.contains("taken over"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    ws.run(&["plan", "--detailed-exitcode"]).code(0);
}

/// A CLI `apply` and a run on the same tenant: the run waits for the CLI's lock and
/// shows it as "blocked by"; then, while a run holds the lock, the CLI fails at once
/// naming the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_apply_and_a_run_on_one_tenant_exclude_each_other() {
    let t = bronze("rl");
    let ws = workers_workspace(std::slice::from_ref(&t), 10).await;
    // Every DDL statement takes a second and the CLI's apply makes them one at a time:
    // it holds the lock for well over ten seconds, long enough to be seen holding it by
    // `runs show` processes on a loaded machine.
    ws.slow_down_ddl(1.0).await;
    let _worker = start_worker(&ws, "worker", 1);

    // The CLI applies first and holds the lock for a while.
    let cli = KillOnDrop(Some(ws.spawn(&[
        "apply",
        "--tenant",
        &t.id,
        "--auto-approve",
        "--parallelism",
        "1",
    ])));
    let lock = ws.state().join(format!("tenants/{}.lock", t.id));
    wait_until("the CLI to take the lock", Duration::from_secs(60), || {
        lock.exists()
    });
    let id = start_run(&ws, &t.id, "apply", &["--auto-apply"]);
    let cli_pid = cli.pid();
    let t0 = Instant::now();
    loop {
        let v = show(&ws, &id);
        if v["blocked_by"]["kind"] == "lock" {
            assert_eq!(v["status"], "planning", "{v:#}");
            assert_eq!(v["blocked_by"]["holder"]["pid"], cli_pid, "{v:#}");
            assert_eq!(v["blocked_by"]["holder"]["operation"], "apply", "{v:#}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the run never showed the CLI's lock as blocking it: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cli.output().ok();
    // The run got the lock after the CLI and found nothing left to do.
    let t0 = Instant::now();
    let ended = loop {
        let v = show(&ws, &id);
        if v["status"] == "planned_and_finished" || v["status"] == "errored" {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ended["status"], "planned_and_finished", "{ended:#}");

    // Now a run holds the lock (a destroy, slowed down), and the CLI is refused.
    let destroy_id = start_run(&ws, &t.id, "destroy", &["--auto-apply"]);
    wait_until(
        "the destroy run to take the lock",
        Duration::from_secs(60),
        || lock.exists() && show(&ws, &destroy_id)["status"] == "applying",
    );
    ws.run(&["apply", "--tenant", &t.id, "--auto-approve"])
        .code(1)
        .contains("is locked by destroy (")
        .contains(&format!("run {destroy_id} attempt 1"));
    let out = ws.run(&["runs", "show", &destroy_id, "--follow"]).ok();
    assert!(
        out.stdout.contains("status applying -> applied"),
        "{}",
        out.stdout
    );
}

/// A plan run stores its plan and ends `planned`; `runs apply` applies exactly that
/// plan; a second plan made before it is refused as stale. Queued runs show their
/// position and what blocks them, and a queued run can be canceled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_runs_are_applied_later_under_the_stale_plan_rule() {
    let a = bronze("rp");
    let b = bronze("rq");
    let ws = workers_workspace(&[a.clone(), b.clone()], 10).await;
    let start = |tenant: &str, operation: &str| start_run(&ws, tenant, operation, &[]);

    // No worker yet: the queue shows positions and who waits for whom.
    let p1 = start(&a.id, "plan");
    let p2 = start(&a.id, "plan");
    let d = start(&b.id, "drift");
    let doomed = start(&a.id, "drift");
    let (v1, v2, vd) = (show(&ws, &p1), show(&ws, &p2), show(&ws, &d));
    assert_eq!(v1["queue_position"], 1);
    assert!(v1["blocked_by"].is_null(), "{v1:#}");
    assert_eq!(v2["queue_position"], 2);
    assert_eq!(v2["blocked_by"]["kind"], "run");
    assert_eq!(v2["blocked_by"]["id"], p1.as_str());
    assert_eq!(vd["queue_position"], 3);
    assert!(
        vd["blocked_by"].is_null(),
        "another tenant's runs do not block"
    );
    ws.run(&["runs", "cancel", &doomed]).ok();
    assert_eq!(show(&ws, &doomed)["status"], "canceled");
    let list = ws.run(&["runs", "list"]).ok();
    assert!(
        list.stdout.contains(&format!("run {}", &p1[..8])),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains("Workers: none alive"),
        "{}",
        list.stdout
    );

    let _worker = start_worker(&ws, "worker", 2);
    let follow = ws.run(&["runs", "show", &p2, "--follow"]).ok();
    assert!(
        follow.stdout.contains("status planning -> planned"),
        "{}",
        follow.stdout
    );
    let (v1, v2) = (show(&ws, &p1), show(&ws, &p2));
    for v in [&v1, &v2] {
        assert_eq!(v["status"], "planned", "{v:#}");
        assert_eq!(v["has_saved_plan"], true);
        assert_eq!(v["result"]["plan"]["summary"]["add"], PER_TENANT, "{v:#}");
    }
    assert!(ws.state_json(&a.id).is_none(), "a plan changes nothing");
    assert_eq!(show(&ws, &d)["status"], "planned_and_finished");

    // Applying the first plan applies exactly it.
    let applied = ws.run(&["runs", "apply", &p1, "--wait"]).ok();
    assert!(
        applied.stdout.contains("applying -> applied"),
        "{}",
        applied.all()
    );
    let v1 = show(&ws, &p1);
    assert_eq!(v1["status"], "applied", "{v1:#}");
    assert_eq!(
        ws.state_json(&a.id).unwrap()["resources"]
            .as_object()
            .unwrap()
            .len(),
        PER_TENANT
    );
    // The second was made against the state before: it is stale now.
    ws.run(&["runs", "apply", &p2, "--wait"])
        .code(1)
        .contains("is errored")
        .contains(&format!("the saved plan is stale for tenant {}", a.id));
    assert_eq!(show(&ws, &p2)["status"], "errored");
    // Nothing is left to plan.
    let p3 = start(&a.id, "plan");
    ws.run(&["runs", "show", &p3, "--follow"]).ok();
    assert_eq!(
        show(&ws, &p3)["status"],
        "planned_and_finished",
        "nothing left to plan"
    );

    // A run may rotate the tenant's passwords: a plan or an apply, nothing else.
    let refused = ws.run(&[
        "runs",
        "start",
        "--tenant",
        &a.id,
        "--operation",
        "drift",
        "--rotate",
    ]);
    assert_ne!(refused.code, 0, "{}", refused.all());
    assert!(
        refused.all().contains(
            "rotate: a drift run does not rotate credentials; rotate in a plan or apply run"
        ),
        "{}",
        refused.all()
    );
    let p4 = start_run(&ws, &a.id, "plan", &["--rotate"]);
    ws.run(&["runs", "show", &p4, "--follow"]).ok();
    let v4 = show(&ws, &p4);
    assert_eq!(
        (&v4["status"], &v4["rotate"]),
        (&json!("planned"), &json!(true)),
        "{v4:#}"
    );
    // The role, the Redis user and the secret.
    assert_eq!(v4["result"]["plan"]["summary"]["change"], 3, "{v4:#}");
    assert!(
        ws.run(&["runs", "show", &p4])
            .ok()
            .stdout
            .contains("rotate:"),
        "the run's details say it rotates"
    );
    ws.run(&["runs", "discard", &p4]).ok();
}
