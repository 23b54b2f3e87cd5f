//! The crash harness: `tenantform apply` of new tenants and `tenantform destroy`,
//! stopped dead part way, each followed by a plain run that must converge.
//!
//! Two ways to stop a run:
//!
//! - **Failpoints, every k.** The binary cargo builds for these tests has the
//!   `failpoints` feature (see Cargo.toml), and `FAILPOINTS=apply::checkpoint=…` makes
//!   it abort right after its k-th state checkpoint (`src/apply/drain.rs`). A
//!   calibration run counts a plain apply's and a plain destroy's checkpoints; then
//!   every k of both is tried. The state then holds exactly k writes more than before,
//!   which the harness checks, so the kill point is known, not guessed.
//! - **SIGKILL at random moments**, seeded, of the same binary without any failpoint
//!   armed, anywhere in its run (start-up, planning, a provider call, a state write).
//!
//! After every stop and every plain run the harness takes an inventory of what exists
//! on the services for the tenant (PostgreSQL schema, role, tables, row security
//! policies, grants, settings row; the Redis ACL user; the S3 bucket and its policy;
//! the IAM policy, role and attachment; dashboard files), counted by the resource type
//! that accounts for each object, and checks:
//!
//! - **no orphan**: after a stop, per type, no more objects exist than state lists
//!   (as `created` or `creating`): whatever may exist, state names;
//! - **convergence**: the next plain apply succeeds, exactly the complete tenant
//!   exists (no duplicate) and state lists it, every resource `created`;
//!   the next plain destroy succeeds and nothing of the tenant is left, state included;
//! - **serials only grow**: within a state's lineage every serial seen is at least the
//!   one seen before, and the backup's is not above the current one.
//!
//! `CRASH_TRIALS` sets the number of random kills (default 6), `CRASH_SEED` their seed,
//! `CRASH_WORKERS` how many tenants run trials side by side (default 4),
//! `CRASH_PARALLELISM` the runs' `--parallelism` (default 1 for the failpoints, so that
//! checkpoint k is the same in every run; the engine's default for the kills). Each test
//! prints its figures (`crash figures: …`); `scripts/crash-trials` runs longer.

mod support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use support::*;

/// Objects of one tenant, counted by the resource type that accounts for them.
type Inventory = BTreeMap<String, usize>;

/// What exists on the services for `t`.
async fn inventory(ws: &Workspace, t: &TenantDef) -> Inventory {
    let n = t.pg_name();
    let db = ws.admin().await;
    let row = db
        .query_one(
            "SELECT \
             (SELECT count(*) FROM pg_namespace WHERE nspname = $1), \
             (SELECT count(*) FROM pg_roles WHERE rolname = $1), \
             (SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace \
               WHERE s.nspname = $1 AND c.relkind = 'r' AND c.relname = 'documents'), \
             (SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace \
               WHERE s.nspname = $1 AND c.relkind = 'r' AND c.relname <> 'documents'), \
             (SELECT count(*) FROM pg_policies WHERE schemaname = $1), \
             (SELECT count(*) FROM pg_namespace s, pg_roles r \
               WHERE s.nspname = $1 AND r.rolname = $1 AND has_schema_privilege(r.oid, s.oid, 'USAGE')), \
             (SELECT count(*) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace, pg_roles r \
               WHERE s.nspname = $1 AND r.rolname = $1 AND c.relkind = 'r' \
                 AND has_table_privilege(r.oid, c.oid, 'SELECT')), \
             to_regclass('tenantform.tenant_settings') IS NOT NULL",
            &[&n],
        )
        .await
        .expect("inventory query");
    let count = |i: usize| row.get::<_, i64>(i) as usize;
    let mut found = Inventory::new();
    let mut put = |kind: &str, k: usize| {
        if k > 0 {
            found.insert(kind.to_owned(), k);
        }
    };
    put("postgres_schema", count(0));
    put("postgres_role", count(1));
    put("postgres_table", count(2));
    put("vector_namespace", count(3));
    put("postgres_row_security", count(4));
    put("postgres_schema_grant", count(5));
    put("postgres_table_grant", count(6));
    if row.get::<_, bool>(7) {
        let settings: i64 = db
            .query_one(
                "SELECT count(*) FROM tenantform.tenant_settings WHERE tenant = $1",
                &[&t.id],
            )
            .await
            .unwrap()
            .get(0);
        put("tenant_settings", settings as usize);
    }

    put(
        "redis_acl_user",
        acl_users().await.iter().filter(|u| **u == n).count(),
    );

    let bucket = format!("rag-{}-documents", t.id);
    let s3 = s3_client(&t.region).await;
    let buckets = s3.list_buckets().send().await.expect("ListBuckets");
    let buckets = buckets
        .buckets()
        .iter()
        .filter(|b| b.name() == Some(bucket.as_str()))
        .count();
    put("s3_bucket", buckets);
    if buckets > 0 && s3.get_bucket_policy().bucket(&bucket).send().await.is_ok() {
        put("s3_bucket_policy", 1);
    }

    let iam = iam_client().await;
    let role = format!("rag-{}-app", t.id);
    let policy = format!("rag-{}-documents-access", t.id);
    let policies = iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .max_items(1000)
        .send()
        .await
        .expect("ListPolicies");
    put(
        "iam_policy",
        policies
            .policies()
            .iter()
            .filter(|p| p.policy_name() == Some(policy.as_str()))
            .count(),
    );
    if iam.get_role().role_name(&role).send().await.is_ok() {
        put("iam_role", 1);
        let attached = iam
            .list_attached_role_policies()
            .role_name(&role)
            .send()
            .await
            .expect("ListAttachedRolePolicies");
        put(
            "iam_role_policy_attachment",
            attached.attached_policies().len(),
        );
    }

    put("secret", usize::from(credentials_secret_exists(t).await));

    // Any file of the tenant's name counts, a temp file left by a write included.
    let dashboards = std::fs::read_dir(ws.dashboards())
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .contains(&format!("tenant-{}", t.id))
                })
                .count()
        })
        .unwrap_or(0);
    put("grafana_dashboard", dashboards);
    found
}

/// Redis's ACL users. Patient, and tried again on an error: on a loaded machine a
/// connection or a reply can take longer than the client's default waits, and the
/// inventory must not fail for that.
async fn acl_users() -> Vec<String> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    let mut tries = 0;
    loop {
        tries += 1;
        let users = async {
            let mut c = redis::Client::open(env("REDIS_URL"))?
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis_cmd(&mut c, &["ACL", "USERS"]).await
        };
        match users.await {
            Ok(users) => return redis::from_redis_value(users).unwrap(),
            Err(e) if tries < 5 => {
                eprintln!("ACL USERS failed ({e}); trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("ACL USERS failed {tries} times: {e}"),
        }
    }
}

/// A tenant's state as the harness reads it.
struct Seen {
    lineage: String,
    serial: u64,
    /// By resource type: how many resources state lists (any status).
    listed: Inventory,
    /// Resources not `created`.
    unfinished: usize,
}

fn seen(ws: &Workspace, id: &str) -> Option<Seen> {
    let state = ws.state_json(id)?;
    let resources = state["resources"].as_object().unwrap();
    let mut listed = Inventory::new();
    for key in resources.keys() {
        let kind = key.split_once('.').expect("type.name").0;
        *listed.entry(kind.to_owned()).or_default() += 1;
    }
    Some(Seen {
        lineage: state["lineage"].as_str().unwrap().to_owned(),
        serial: state["serial"].as_u64().unwrap(),
        listed,
        unfinished: resources
            .values()
            .filter(|r| r["status"] != "created")
            .count(),
    })
}

/// The serial of the tenant's backup (the version before the last write), with its
/// lineage.
fn backup_serial(ws: &Workspace, id: &str) -> Option<(String, u64)> {
    let path = ws.state().join(format!("tenants/{id}.json.backup"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((v["lineage"].as_str()?.to_owned(), v["serial"].as_u64()?))
}

/// Types of which more objects exist than `bound` allows, `bound` being `what`:
/// against what state lists, orphans; against a complete tenant, duplicates.
fn excess(found: &Inventory, bound: &Inventory, what: &str) -> Vec<String> {
    found
        .iter()
        .filter(|(k, n)| bound.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, n)| format!("{k}: {n} exist, {what} {}", bound.get(k).unwrap_or(&0)))
        .collect()
}

fn orphans(found: &Inventory, listed: &Inventory) -> Vec<String> {
    excess(found, listed, "state lists")
}

fn duplicates(found: &Inventory, complete: &Inventory) -> Vec<String> {
    excess(found, complete, "a tenant has")
}

/// How a stopped run ended.
#[derive(Debug, PartialEq)]
enum Stop {
    /// Stopped dead (aborted at the failpoint, or killed).
    Killed,
    /// It finished before the stop came.
    Completed,
}

/// The figures of one test, printed at its end.
#[derive(Default)]
struct Figures {
    trials: usize,
    kill_points: usize,
    completed_first: usize,
    converged: usize,
    orphans: usize,
    duplicates: usize,
    serial_regressions: usize,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.trials += o.trials;
        self.kill_points += o.kill_points;
        self.completed_first += o.completed_first;
        self.converged += o.converged;
        self.orphans += o.orphans;
        self.duplicates += o.duplicates;
        self.serial_regressions += o.serial_regressions;
    }

    fn print(&self, what: &str, started: Instant) {
        println!(
            "crash figures ({what}): trials {}, kill points {}, finished before the kill {}, \
             converged {}, orphans {}, duplicates {}, serial regressions {}, {:.0} s",
            self.trials,
            self.kill_points,
            self.completed_first,
            self.converged,
            self.orphans,
            self.duplicates,
            self.serial_regressions,
            started.elapsed().as_secs_f64()
        );
    }

    fn assert_clean(&self) {
        assert_eq!(self.trials, self.converged, "every trial converges");
        assert_eq!(self.orphans, 0, "no orphan");
        assert_eq!(self.duplicates, 0, "no duplicate");
        assert_eq!(self.serial_regressions, 0, "serials only grow");
    }
}

/// One tenant's trials, run one after another.
struct Trials<'a> {
    ws: &'a Workspace,
    t: &'a TenantDef,
    /// The objects of a complete tenant, by type.
    complete: &'a Inventory,
    /// The last (lineage, serial) seen of the tenant's state.
    last: Option<(String, u64)>,
    /// `--parallelism` of every run; the engine's default when `None`.
    parallelism: Option<u64>,
    figures: Figures,
}

/// `apply` or `destroy` of tenant `t`, at `parallelism` when given.
fn run_args(command: &str, t: &TenantDef, parallelism: Option<u64>) -> Vec<String> {
    let mut args: Vec<String> = [command, "--auto-approve", "--tenant", &t.id]
        .map(String::from)
        .into();
    if let Some(p) = parallelism {
        args.extend(["--parallelism".to_owned(), p.to_string()]);
    }
    args
}

async fn output(cmd: std::process::Command) -> Output {
    let mut cmd = cmd;
    tokio::task::spawn_blocking(move || cmd.output().expect("tenantform runs"))
        .await
        .unwrap()
}

impl<'a> Trials<'a> {
    fn new(
        ws: &'a Workspace,
        t: &'a TenantDef,
        complete: &'a Inventory,
        parallelism: Option<u64>,
    ) -> Self {
        Trials {
            ws,
            t,
            complete,
            last: None,
            parallelism,
            figures: Figures::default(),
        }
    }

    fn command(&self, args: &[String]) -> std::process::Command {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ws.command(&args)
    }

    /// A plain run that must succeed.
    async fn plain(&mut self, args: &[String]) -> Duration {
        let t0 = Instant::now();
        let run = Run::from(output(self.command(args)).await);
        assert_eq!(
            run.code,
            0,
            "{}: {args:?} failed:\n{}",
            self.t.id,
            run.all()
        );
        t0.elapsed()
    }

    /// A run stopped after its `k`-th checkpoint by the failpoint.
    async fn at_checkpoint(&mut self, args: &[String], k: u64) -> Stop {
        let before = seen(self.ws, &self.t.id).map_or(0, |s| s.serial);
        let mut cmd = self.command(args);
        let armed = if k == 1 {
            "apply::checkpoint=return".to_owned()
        } else {
            format!("apply::checkpoint={}*off->return", k - 1)
        };
        cmd.env("FAILPOINTS", armed);
        let out = output(cmd).await;
        if out.status.success() {
            return Stop::Completed;
        }
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{}: {args:?} at checkpoint {k} ended otherwise than at the failpoint:\n{}",
            self.t.id,
            Run::from(out).all()
        );
        // Exactly k writes since the last state seen: the kill point is the one meant.
        if let Some(s) = seen(self.ws, &self.t.id) {
            assert_eq!(
                s.serial,
                before + k,
                "{}: killed after checkpoint {k} of {args:?}",
                self.t.id
            );
        }
        Stop::Killed
    }

    /// A run killed with SIGKILL `after` its start.
    async fn killed_after(&mut self, args: &[String], after: Duration) -> Stop {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("tenantform starts");
        tokio::time::sleep(after).await;
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
        }
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        if finished {
            assert!(
                status.success(),
                "{}: {args:?} failed on its own",
                self.t.id
            );
            Stop::Completed
        } else {
            Stop::Killed
        }
    }

    /// After a stop: state names whatever may exist, and its serial did not go back.
    async fn check_stopped(&mut self, stop: &Stop) {
        match stop {
            Stop::Killed => self.figures.kill_points += 1,
            Stop::Completed => self.figures.completed_first += 1,
        }
        let found = inventory(self.ws, self.t).await;
        let state = seen(self.ws, &self.t.id);
        let listed = state.as_ref().map(|s| s.listed.clone()).unwrap_or_default();
        let o = orphans(&found, &listed);
        if !o.is_empty() {
            eprintln!("{}: ORPHANS after a stop: {o:?}", self.t.id);
            self.figures.orphans += o.len();
        }
        self.check_serial(state.as_ref());
        let d = duplicates(&found, self.complete);
        if !d.is_empty() {
            eprintln!("{}: DUPLICATES after a stop: {d:?}", self.t.id);
            self.figures.duplicates += d.len();
        }
    }

    fn check_serial(&mut self, state: Option<&Seen>) {
        let Some(s) = state else {
            return;
        };
        if let Some((lineage, serial)) = &self.last
            && *lineage == s.lineage
            && s.serial < *serial
        {
            eprintln!(
                "{}: SERIAL went back from {serial} to {}",
                self.t.id, s.serial
            );
            self.figures.serial_regressions += 1;
        }
        // Equal when a run died between linking the backup and renaming the new
        // state into place: both are then the current version.
        if let Some((lineage, serial)) = backup_serial(self.ws, &self.t.id)
            && lineage == s.lineage
            && serial > s.serial
        {
            eprintln!(
                "{}: SERIAL of the backup {serial} is above the state's {}",
                self.t.id, s.serial
            );
            self.figures.serial_regressions += 1;
        }
        self.last = Some((s.lineage.clone(), s.serial));
    }

    /// After a plain apply: exactly the complete tenant exists, and state lists it, all
    /// `created` (what a clean plan of the tenant needs; read from the services, which
    /// a plan without refresh would not do).
    async fn check_applied(&mut self) -> bool {
        let found = inventory(self.ws, self.t).await;
        let state = seen(self.ws, &self.t.id).expect("an applied tenant has state");
        self.check_serial(Some(&state));
        let d = duplicates(&found, self.complete);
        self.figures.duplicates += d.len();
        let o = orphans(&found, &state.listed);
        self.figures.orphans += o.len();
        let ok = found == *self.complete && state.listed == *self.complete && state.unfinished == 0;
        if !ok {
            eprintln!(
                "{}: NOT CONVERGED after apply: found {found:?}, state {:?} ({} unfinished)",
                self.t.id, state.listed, state.unfinished,
            );
        }
        ok
    }

    /// After a plain destroy: nothing of the tenant exists, and it has no state.
    async fn check_destroyed(&mut self) -> bool {
        let found = inventory(self.ws, self.t).await;
        let state = seen(self.ws, &self.t.id);
        self.check_serial(state.as_ref());
        let ok = found.is_empty() && state.is_none();
        if !ok {
            eprintln!(
                "{}: NOT CONVERGED after destroy: found {found:?}, state {:?}",
                self.t.id,
                state.map(|s| s.listed)
            );
        }
        // A destroyed tenant's next state starts a new lineage.
        self.last = None;
        ok
    }

    /// One trial: apply stopped by `stop_apply`, plain apply, destroy stopped by
    /// `stop_destroy`, plain destroy. Counts as converged when both plain runs did.
    async fn trial(&mut self, stop_apply: Option<Stopper>, stop_destroy: Option<Stopper>) {
        self.figures.trials += 1;
        let apply = run_args("apply", self.t, self.parallelism);
        let destroy = run_args("destroy", self.t, self.parallelism);
        if let Some(s) = stop_apply {
            let stop = s.run(self, &apply).await;
            self.check_stopped(&stop).await;
        }
        self.plain(&apply).await;
        let applied = self.check_applied().await;
        if let Some(s) = stop_destroy {
            let stop = s.run(self, &destroy).await;
            self.check_stopped(&stop).await;
        }
        self.plain(&destroy).await;
        let destroyed = self.check_destroyed().await;
        if applied && destroyed {
            self.figures.converged += 1;
        }
    }
}

/// How a trial stops a run.
#[derive(Clone, Copy)]
enum Stopper {
    Checkpoint(u64),
    Kill(Duration),
}

impl Stopper {
    async fn run(self, trials: &mut Trials<'_>, args: &[String]) -> Stop {
        match self {
            Stopper::Checkpoint(k) => trials.at_checkpoint(args, k).await,
            Stopper::Kill(after) => trials.killed_after(args, after).await,
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// A plain apply and destroy of one tenant: the complete tenant's objects, how many
/// checkpoints each run makes, and how long each takes.
struct Calibration {
    complete: Inventory,
    apply_checkpoints: u64,
    destroy_checkpoints: u64,
    apply_time: Duration,
    destroy_time: Duration,
}

async fn calibrate(ws: &Workspace, t: &TenantDef, parallelism: Option<u64>) -> Calibration {
    let empty = Inventory::new();
    let mut trials = Trials::new(ws, t, &empty, parallelism);
    let apply_time = trials.plain(&run_args("apply", t, parallelism)).await;
    let state = seen(ws, &t.id).expect("state after apply");
    let complete = inventory(ws, t).await;
    assert_eq!(
        complete, state.listed,
        "a plain apply makes exactly what state lists"
    );
    assert_eq!(state.listed.values().sum::<usize>(), PER_TENANT);
    let destroy_time = trials.plain(&run_args("destroy", t, parallelism)).await;
    assert!(
        inventory(ws, t).await.is_empty(),
        "a plain destroy leaves nothing"
    );
    let (_, last) = backup_serial(ws, &t.id).expect("the removed state is kept as the backup");
    Calibration {
        complete,
        apply_checkpoints: state.serial,
        destroy_checkpoints: last - state.serial,
        apply_time,
        destroy_time,
    }
}

fn tenants(prefix: &str) -> Vec<TenantDef> {
    (0..env_number("CRASH_WORKERS", 4))
        .map(|i| TenantDef::new(&format!("{prefix}{i}"), "bronze"))
        .collect()
}

/// Every k: an apply of a new tenant aborted right after its k-th state checkpoint,
/// then a destroy aborted after its k-th, each followed by a plain run that converges.
#[tokio::test]
async fn runs_stopped_after_every_checkpoint_converge_with_nothing_orphaned() {
    let started = Instant::now();
    let tenants = tenants("fp");
    let ws = Workspace::new(&tenants).await;
    // One step at a time: every run makes the same checkpoints in the same order, so
    // that checkpoint k of the calibration is checkpoint k of every trial.
    let parallelism = Some(env_number("CRASH_PARALLELISM", 1));
    let cal = calibrate(&ws, &tenants[0], parallelism).await;
    assert!(
        cal.apply_checkpoints >= PER_TENANT as u64 && cal.destroy_checkpoints >= 1,
        "calibration counted {} apply and {} destroy checkpoints",
        cal.apply_checkpoints,
        cal.destroy_checkpoints
    );
    let last = cal.apply_checkpoints.max(cal.destroy_checkpoints);
    let workers = tenants.len() as u64;
    let runs = tenants.iter().enumerate().map(|(i, t)| {
        let cal = &cal;
        let ws = &ws;
        async move {
            let mut trials = Trials::new(ws, t, &cal.complete, parallelism);
            let mut k = 1 + i as u64;
            while k <= last {
                let apply = (k <= cal.apply_checkpoints).then_some(Stopper::Checkpoint(k));
                let destroy = (k <= cal.destroy_checkpoints).then_some(Stopper::Checkpoint(k));
                trials.trial(apply, destroy).await;
                k += workers;
            }
            trials.figures
        }
    });
    let mut figures = Figures::default();
    for f in join_all(runs).await {
        figures.add(&f);
    }
    println!(
        "checkpoints of a plain run: apply {}, destroy {}",
        cal.apply_checkpoints, cal.destroy_checkpoints
    );
    figures.print("failpoint after every checkpoint", started);
    // With several steps in flight, writes that come together are shared, so a run may
    // make fewer checkpoints than the calibration did and finish before its k.
    if parallelism == Some(1) {
        assert_eq!(
            figures.kill_points as u64,
            cal.apply_checkpoints + cal.destroy_checkpoints,
            "every checkpoint was a kill point ({} runs finished first)",
            figures.completed_first
        );
    }
    figures.assert_clean();
}

/// SIGKILL at seeded random moments of apply and destroy; each followed by a plain
/// run that converges.
#[tokio::test]
async fn runs_killed_at_random_moments_converge_with_nothing_orphaned() {
    let started = Instant::now();
    let count = env_number("CRASH_TRIALS", 6);
    let seed = env_number("CRASH_SEED", 19);
    let tenants = tenants("kill");
    let ws = Workspace::new(&tenants).await;
    let parallelism = std::env::var("CRASH_PARALLELISM")
        .ok()
        .map(|_| env_number("CRASH_PARALLELISM", 1));
    let cal = calibrate(&ws, &tenants[0], parallelism).await;
    let mut rng = fastrand::Rng::with_seed(seed);
    // Up to a little past a plain run's length: some runs finish before the kill.
    let mut moment = |d: Duration| d.mul_f64(rng.f64() * 1.1);
    let mut plans: Vec<Vec<(Stopper, Stopper)>> = vec![Vec::new(); tenants.len()];
    for i in 0..count as usize {
        plans[i % tenants.len()].push((
            Stopper::Kill(moment(cal.apply_time)),
            Stopper::Kill(moment(cal.destroy_time)),
        ));
    }
    let runs = tenants.iter().zip(plans).map(|(t, plan)| {
        let cal = &cal;
        let ws = &ws;
        async move {
            let mut trials = Trials::new(ws, t, &cal.complete, parallelism);
            for (apply, destroy) in plan {
                trials.trial(Some(apply), Some(destroy)).await;
            }
            trials.figures
        }
    });
    let mut figures = Figures::default();
    for f in join_all(runs).await {
        figures.add(&f);
    }
    println!(
        "seed {seed}; a plain apply took {:.2} s, a plain destroy {:.2} s",
        cal.apply_time.as_secs_f64(),
        cal.destroy_time.as_secs_f64()
    );
    figures.print("SIGKILL at random moments", started);
    figures.assert_clean();
}
