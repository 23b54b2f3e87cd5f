//! The executor's rules, against an in-memory provider and a state directory of each
//! test's own: ordering, the parallelism bound, skip, halt, rollback, interrupt,
//! checkpoints, and a differential test against a simple serial walk.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use tempfile::TempDir;
use tokio::sync::Notify;

use super::*;
use crate::plan::{
    Action, ActionReason, AttributeChange, PLAN_FORMAT_VERSION, PlanMode, ResourceChange,
    TenantPlan,
};
use crate::provider::{CreateMode, Provider, ProviderError};
use crate::resource::{Attributes, Resource, ResourceType};
use crate::state::{LocalStore, LockRequest, ResourceState, ResourceStatus};

// ---------------------------------------------------------------------------------
// The in-memory cloud

/// One provider call as the cloud saw it; `started` and `ended` are ticks of one
/// clock shared by all calls.
#[derive(Clone, Debug)]
struct Call {
    op: &'static str,
    address: ResourceAddress,
    started: u64,
    ended: u64,
}

type CreateHook = Box<dyn Fn(&ResourceAddress) + Send + Sync>;

/// A provider for every resource type, keeping what exists in memory. It records every
/// call, counts calls in flight, and can be told to fail or stall a call on an address.
#[derive(Default)]
struct Cloud {
    clock: AtomicU64,
    calls: Mutex<Vec<Call>>,
    existing: Mutex<BTreeSet<ResourceAddress>>,
    /// `(op, address)` pairs whose call fails.
    failing: Mutex<BTreeSet<(&'static str, ResourceAddress)>>,
    /// Calls on these addresses wait for the notification.
    stalls: Mutex<HashMap<ResourceAddress, Arc<Notify>>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Each call sleeps this long (simulated latency).
    latency: Duration,
    /// Each call yields a random number of times, to shuffle the order tasks run in.
    jitter: bool,
    /// Runs inside every create call, before it returns.
    during_create: Mutex<Option<CreateHook>>,
    /// The mode of every create call, in the order they started.
    modes: Mutex<Vec<(ResourceAddress, CreateMode)>>,
}

impl Cloud {
    fn new() -> Arc<Self> {
        Arc::new(Cloud::default())
    }

    fn with(latency: Duration, jitter: bool) -> Arc<Self> {
        Arc::new(Cloud {
            latency,
            jitter,
            ..Cloud::default()
        })
    }

    fn fail(&self, op: &'static str, address: &ResourceAddress) {
        self.failing.lock().unwrap().insert((op, address.clone()));
    }

    fn stall(&self, address: &ResourceAddress) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        self.stalls
            .lock()
            .unwrap()
            .insert(address.clone(), n.clone());
        n
    }

    fn exists(&self, address: &ResourceAddress) -> bool {
        self.existing.lock().unwrap().contains(address)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls as `op address`, in the order they started.
    fn started(&self) -> Vec<String> {
        let mut calls = self.calls();
        calls.sort_by_key(|c| c.started);
        calls
            .iter()
            .map(|c| format!("{} {}", c.op, c.address))
            .collect()
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// The start of a call: counts it, stalls or delays it, and says if it must fail.
    async fn enter(&self, op: &'static str, address: &ResourceAddress) -> (u64, bool) {
        let started = self.tick();
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let stall = self.stalls.lock().unwrap().get(address).cloned();
        if let Some(n) = stall {
            n.notified().await;
        }
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.jitter {
            for _ in 0..fastrand::usize(0..4) {
                tokio::task::yield_now().await;
            }
        }
        let fails = self
            .failing
            .lock()
            .unwrap()
            .contains(&(op, address.clone()));
        (started, fails)
    }

    fn leave(&self, op: &'static str, address: &ResourceAddress, started: u64) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let ended = self.tick();
        self.calls.lock().unwrap().push(Call {
            op,
            address: address.clone(),
            started,
            ended,
        });
    }

    fn injected(address: &ResourceAddress) -> ProviderError {
        ProviderError::Api {
            service: "cloud",
            code: "Injected".into(),
            message: format!("{address} fails by request"),
            retryable: false,
        }
    }
}

#[async_trait]
impl Provider for Cloud {
    async fn read(
        &self,
        address: &ResourceAddress,
        _current: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        Ok(self.exists(address).then(Attributes::new))
    }

    async fn create(
        &self,
        resource: &Resource,
        mode: CreateMode,
    ) -> Result<Attributes, ProviderError> {
        let address = &resource.address;
        self.modes.lock().unwrap().push((address.clone(), mode));
        let (started, fails) = self.enter("create", address).await;
        if let Some(hook) = &*self.during_create.lock().unwrap() {
            hook(address);
        }
        let result = if fails {
            Err(Cloud::injected(address))
        } else if !mode.is_resume() && self.exists(address) {
            Err(ProviderError::AlreadyExists {
                what: address.to_string(),
            })
        } else {
            self.existing.lock().unwrap().insert(address.clone());
            let mut computed = Attributes::new();
            computed.insert("id".into(), serde_json::json!(format!("id-{address}")));
            Ok(computed)
        };
        self.leave("create", address, started);
        result
    }

    async fn update(
        &self,
        resource: &Resource,
        _current: &Attributes,
        _changed: &[String],
    ) -> Result<Attributes, ProviderError> {
        let address = &resource.address;
        let (started, fails) = self.enter("update", address).await;
        self.leave("update", address, started);
        if fails {
            return Err(Cloud::injected(address));
        }
        Ok(Attributes::new())
    }

    async fn delete(
        &self,
        address: &ResourceAddress,
        _current: &Attributes,
    ) -> Result<(), ProviderError> {
        let (started, fails) = self.enter("delete", address).await;
        let result = if fails {
            Err(Cloud::injected(address))
        } else {
            self.existing.lock().unwrap().remove(address);
            Ok(())
        };
        self.leave("delete", address, started);
        result
    }
}

// ---------------------------------------------------------------------------------
// Plans

fn addr(tenant: &str, name: &str) -> ResourceAddress {
    ResourceAddress::new(&tenant.parse().unwrap(), ResourceType::PostgresSchema, name)
}

fn resource(address: &ResourceAddress, deps: &[&ResourceAddress], size: u32) -> Resource {
    let mut r = Resource::new(address.clone()).attr("size", size);
    r.depends_on = deps.iter().map(|d| (*d).clone()).collect();
    r
}

fn create(address: &ResourceAddress, deps: &[&ResourceAddress]) -> ResourceChange {
    ResourceChange {
        address: address.clone(),
        action: Action::Create,
        reason: ActionReason::New,
        before: None,
        after: Some(resource(address, deps, 1)),
        depends_on_before: Vec::new(),
        attribute_changes: Vec::new(),
    }
}

/// `size` 1 -> 2, in place, or by replacement.
fn change(address: &ResourceAddress, deps: &[&ResourceAddress], action: Action) -> ResourceChange {
    ResourceChange {
        address: address.clone(),
        action,
        reason: ActionReason::SpecChanged,
        before: Some(resource(address, deps, 1).attributes),
        after: Some(resource(address, deps, 2)),
        depends_on_before: deps.iter().map(|d| (*d).clone()).collect(),
        attribute_changes: vec![AttributeChange {
            name: "size".into(),
            before: Some(1.into()),
            after: Some(2.into()),
            forces_replacement: action == Action::Replace,
        }],
    }
}

fn delete(address: &ResourceAddress, deps: &[&ResourceAddress]) -> ResourceChange {
    ResourceChange {
        address: address.clone(),
        action: Action::Delete,
        reason: ActionReason::RemovedFromSpec,
        before: Some(resource(address, deps, 1).attributes),
        after: None,
        depends_on_before: deps.iter().map(|d| (*d).clone()).collect(),
        attribute_changes: Vec::new(),
    }
}

fn tenant(id: &str, new_tenant: bool, changes: Vec<ResourceChange>) -> TenantPlan {
    TenantPlan {
        tenant: id.parse().unwrap(),
        state_serial: None,
        state_lineage: None,
        new_tenant,
        spec: None,
        protected: false,
        protected_before: false,
        changes,
        cost: None,
    }
}

fn plan(tenants: Vec<TenantPlan>) -> Plan {
    Plan {
        format_version: PLAN_FORMAT_VERSION.into(),
        created_at: chrono::Utc::now(),
        mode: PlanMode::Normal,
        refreshed: false,
        policy: None,
        aws_account_id: None,
        tenants,
    }
}

// ---------------------------------------------------------------------------------
// The harness: a state directory, the cloud, and apply

/// A directory for a test's state. Memory-backed when the machine has `/dev/shm`, so
/// that the state store's fsyncs cost nothing in the tests that write thousands of
/// states; the store writes there exactly as it does on disk.
fn scratch_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

struct Harness {
    dir: TempDir,
    store: StateStore,
    cloud: Arc<Cloud>,
    providers: ProviderSet,
}

impl Harness {
    fn new(cloud: Arc<Cloud>) -> Self {
        let dir = scratch_dir();
        let store = StateStore::local(dir.path());
        let mut providers = ProviderSet::new();
        providers.register(ResourceType::ALL, cloud.clone());
        Harness {
            dir,
            store,
            cloud,
            providers,
        }
    }

    /// The state directory, read synchronously (from inside a provider call) by
    /// [`LocalStore`], the same code the store uses: what is on disk.
    fn disk(&self) -> LocalStore {
        LocalStore::new(self.dir.path())
    }

    /// Records `resources` (address, dependencies) as created in the tenant's state,
    /// and makes them exist in the cloud. Returns the serial written.
    async fn seed(&self, id: &str, resources: &[(&ResourceAddress, &[&ResourceAddress])]) -> u64 {
        let t: TenantId = id.parse().unwrap();
        let lock = self
            .store
            .lock(&t, &LockRequest::new("seed", Duration::ZERO))
            .await
            .unwrap();
        let mut state = TenantState::new(t);
        for (a, deps) in resources {
            state.resources.insert(
                a.local(),
                ResourceState {
                    resource_type: a.resource_type,
                    name: a.name.clone(),
                    status: ResourceStatus::Created,
                    attributes: resource(a, deps, 1).attributes,
                    depends_on: deps.iter().map(|d| (*d).clone()).collect(),
                    create_token: None,
                },
            );
            self.cloud.existing.lock().unwrap().insert((*a).clone());
        }
        self.store.write(&lock, &mut state).await.unwrap();
        state.serial
    }

    async fn runs(&self, plan: &Plan) -> BTreeMap<TenantId, TenantRun> {
        let mut runs = BTreeMap::new();
        for t in &plan.tenants {
            let lock = self
                .store
                .lock(&t.tenant, &LockRequest::new("apply", Duration::ZERO))
                .await
                .unwrap();
            let state = self.store.load(&t.tenant).await.unwrap();
            runs.insert(t.tenant.clone(), TenantRun::new(lock, state));
        }
        runs
    }

    async fn apply(&self, plan: &Plan, options: &ApplyOptions) -> Result<ApplyReport, ApplyError> {
        let runs = self.runs(plan).await;
        apply(plan, runs, &self.providers, &self.store, options, None).await
    }

    /// `type.name status` of each resource on disk.
    fn on_disk(&self, id: &str) -> Vec<String> {
        self.disk()
            .load(&id.parse().unwrap())
            .unwrap()
            .map(|s| {
                s.resources
                    .iter()
                    .map(|(k, r)| format!("{k} {:?}", r.status))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn parallelism(n: usize) -> ApplyOptions {
    ApplyOptions {
        parallelism: n,
        ..ApplyOptions::default()
    }
}

/// `address outcome` of each step of a tenant, in report order.
fn outcomes(report: &ApplyReport, id: &str) -> Vec<String> {
    steps_of(&tenant_report(report, id).steps)
}

fn steps_of(steps: &[StepRecord]) -> Vec<String> {
    steps
        .iter()
        .map(|s| {
            let outcome = match &s.outcome {
                StepOutcome::Done => "done".to_owned(),
                StepOutcome::Failed { code, .. } => format!("failed {code}"),
                StepOutcome::Skipped => "skipped".to_owned(),
            };
            format!("{} {} {outcome}", s.step, s.address.local())
        })
        .collect()
}

fn tenant_report<'r>(report: &'r ApplyReport, id: &str) -> &'r TenantReport {
    report
        .tenants
        .iter()
        .find(|t| t.tenant.as_str() == id)
        .unwrap()
}

/// Asserts that every create started after each of its dependencies' creates ended.
fn assert_creates_follow_dependencies(plan: &Plan, calls: &[Call]) {
    let created: HashMap<&ResourceAddress, &Call> = calls
        .iter()
        .filter(|c| c.op == "create")
        .map(|c| (&c.address, c))
        .collect();
    for change in plan.changes() {
        let (Some(call), Some(after)) = (created.get(&change.address), &change.after) else {
            continue;
        };
        for dep in &after.depends_on {
            let dep_call = created.get(dep).unwrap_or_else(|| {
                panic!(
                    "{} was created, its dependency {dep} was not",
                    change.address
                )
            });
            assert!(
                dep_call.ended < call.started,
                "{} started (tick {}) before its dependency {dep} ended (tick {})",
                change.address,
                call.started,
                dep_call.ended
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Rules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_start_only_after_their_dependencies_finished_and_were_checkpointed() {
    let (a, b, c, d, e) = (
        addr("acme", "a"),
        addr("acme", "b"),
        addr("acme", "c"),
        addr("acme", "d"),
        addr("acme", "e"),
    );
    let h = Harness::new(Cloud::with(Duration::from_millis(2), true));
    // While a create runs, each of its dependencies is `created` on disk.
    let disk = h.disk();
    let p = plan(vec![tenant(
        "acme",
        true,
        vec![
            create(&a, &[]),
            create(&b, &[&a]),
            create(&c, &[&a]),
            create(&d, &[&b, &c]),
            create(&e, &[]),
        ],
    )]);
    let deps: HashMap<ResourceAddress, Vec<ResourceAddress>> = p
        .changes()
        .map(|c| (c.address.clone(), c.after.clone().unwrap().depends_on))
        .collect();
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = violations.clone();
    *h.cloud.during_create.lock().unwrap() = Some(Box::new(move |address| {
        let state = disk.load(&address.tenant).unwrap().unwrap();
        for dep in &deps[address] {
            let status = state.get(dep).map(|r| r.status);
            if status != Some(ResourceStatus::Created) {
                seen.lock()
                    .unwrap()
                    .push(format!("{address} runs while {dep} is {status:?} on disk"));
            }
        }
    }));

    let report = h.apply(&p, &parallelism(4)).await.unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(violations.lock().unwrap().clone(), Vec::<String>::new());
    assert_creates_follow_dependencies(&p, &h.cloud.calls());
    assert_eq!(h.cloud.calls().len(), 5);
    assert_eq!(report.mutating_calls, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_parallelism_steps_in_flight() {
    let h = Harness::new(Cloud::with(Duration::from_millis(5), false));
    let tenants = ["t1", "t2", "t3"]
        .iter()
        .map(|t| {
            let changes = (0..8)
                .map(|i| create(&addr(t, &format!("r{i}")), &[]))
                .collect();
            tenant(t, true, changes)
        })
        .collect();
    let p = plan(tenants);
    let report = h.apply(&p, &parallelism(3)).await.unwrap();
    assert!(report.succeeded());
    assert_eq!(h.cloud.calls().len(), 24);
    assert_eq!(
        h.cloud.max_in_flight.load(Ordering::SeqCst),
        3,
        "the bound is reached and never passed"
    );
}

#[tokio::test]
async fn with_parallelism_one_steps_start_in_address_order_delete_before_create_before_update() {
    let (a, b, c, d) = (
        addr("alpha", "a"),
        addr("alpha", "b"),
        addr("alpha", "c"),
        addr("alpha", "d"),
    );
    let (z, y) = (addr("beta", "z"), addr("beta", "y"));
    let h = Harness::new(Cloud::new());
    h.seed("alpha", &[(&a, &[]), (&b, &[]), (&c, &[])]).await;
    let p = plan(vec![
        // Listed out of order on purpose: the order is the addresses'.
        tenant("beta", true, vec![create(&z, &[]), create(&y, &[&z])]),
        tenant(
            "alpha",
            false,
            vec![
                create(&d, &[]),
                delete(&c, &[]),
                change(&b, &[], Action::Replace),
                change(&a, &[], Action::Update),
            ],
        ),
    ]);
    let report = h.apply(&p, &parallelism(1)).await.unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        h.cloud.started(),
        [
            "update alpha/postgres_schema.a",
            "delete alpha/postgres_schema.b",
            "create alpha/postgres_schema.b",
            "delete alpha/postgres_schema.c",
            "create alpha/postgres_schema.d",
            // y comes before z, but waits for it.
            "create beta/postgres_schema.z",
            "create beta/postgres_schema.y",
        ]
    );
    assert_eq!(
        outcomes(&report, "alpha"),
        [
            "update postgres_schema.a done",
            "delete postgres_schema.b done",
            "create postgres_schema.b done",
            "delete postgres_schema.c done",
            "create postgres_schema.d done",
        ],
        "the report lists steps in the same order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_skips_its_dependents_while_independent_steps_and_other_tenants_go_on() {
    let (base, a, b, c, x) = (
        addr("old", "base"),
        addr("old", "a"),
        addr("old", "b"),
        addr("old", "c"),
        addr("old", "x"),
    );
    let (p1, p2) = (addr("other", "p1"), addr("other", "p2"));
    let h = Harness::new(Cloud::with(Duration::ZERO, true));
    h.seed("old", &[(&base, &[])]).await;
    h.cloud.fail("create", &a);
    let p = plan(vec![
        tenant(
            "old",
            false,
            vec![
                create(&a, &[]),
                create(&b, &[&a]),
                create(&c, &[&b]),
                create(&x, &[]),
            ],
        ),
        tenant("other", true, vec![create(&p1, &[]), create(&p2, &[&p1])]),
    ]);
    let report = h.apply(&p, &parallelism(2)).await.unwrap();
    let old = tenant_report(&report, "old");
    assert_eq!(old.outcome, TenantOutcome::Failed);
    assert!(
        old.rollback.is_empty(),
        "an existing tenant is not rolled back"
    );
    assert_eq!(
        outcomes(&report, "old"),
        [
            "create postgres_schema.a failed Injected",
            "create postgres_schema.b skipped",
            "create postgres_schema.c skipped",
            "create postgres_schema.x done",
        ]
    );
    assert_eq!(
        tenant_report(&report, "other").outcome,
        TenantOutcome::Applied
    );
    assert_eq!(
        h.on_disk("old"),
        [
            // The failed create's outcome is unknown: it stays `creating`.
            "postgres_schema.a Creating",
            "postgres_schema.base Created",
            "postgres_schema.x Created",
        ]
    );
    assert!(!report.succeeded());
    assert_eq!(
        old.first_error().unwrap(),
        "old/postgres_schema.a: cloud refused the request (Injected): old/postgres_schema.a fails by request"
    );
}

#[tokio::test]
async fn a_failed_new_tenant_halts_and_is_rolled_back_in_reverse_dependency_order() {
    let (a, b, c, d) = (
        addr("fresh", "a"),
        addr("fresh", "b"),
        addr("fresh", "c"),
        addr("fresh", "d"),
    );
    let (z1, z2) = (addr("zeta", "z1"), addr("zeta", "z2"));
    let h = Harness::new(Cloud::new());
    h.cloud.fail("create", &c);
    let p = plan(vec![
        tenant(
            "fresh",
            true,
            vec![
                create(&a, &[]),
                create(&b, &[&a]),
                create(&c, &[&b]),
                create(&d, &[]),
            ],
        ),
        tenant("zeta", true, vec![create(&z1, &[]), create(&z2, &[])]),
    ]);
    let report = h.apply(&p, &parallelism(1)).await.unwrap();
    assert_eq!(
        h.cloud.started(),
        [
            "create fresh/postgres_schema.a",
            "create fresh/postgres_schema.b",
            "create fresh/postgres_schema.c",
            // d would come next: the tenant is halted, so it never starts.
            "create zeta/postgres_schema.z1",
            "create zeta/postgres_schema.z2",
            // c's create may have done something: it is deleted first.
            "delete fresh/postgres_schema.c",
            "delete fresh/postgres_schema.b",
            "delete fresh/postgres_schema.a",
        ]
    );
    let fresh = tenant_report(&report, "fresh");
    assert_eq!(fresh.outcome, TenantOutcome::RolledBack);
    assert_eq!(
        outcomes(&report, "fresh"),
        [
            "create postgres_schema.a done",
            "create postgres_schema.b done",
            "create postgres_schema.c failed Injected",
            "create postgres_schema.d skipped",
        ]
    );
    assert_eq!(
        steps_of(&fresh.rollback),
        [
            "delete postgres_schema.a done",
            "delete postgres_schema.b done",
            "delete postgres_schema.c done",
        ]
    );
    assert_eq!(fresh.state_serial, None);
    assert!(!h.disk().path_of(&fresh.tenant).exists(), "no state left");
    assert_eq!(
        tenant_report(&report, "zeta").outcome,
        TenantOutcome::Applied
    );
    assert_eq!(report.mutating_calls, 8);
}

#[tokio::test]
async fn a_taken_name_leaves_no_record_and_the_rollback_leaves_it_alone() {
    let (a, b, c) = (addr("taken", "a"), addr("taken", "b"), addr("taken", "c"));
    let h = Harness::new(Cloud::new());
    h.cloud.existing.lock().unwrap().insert(b.clone());
    let p = plan(vec![tenant(
        "taken",
        true,
        vec![create(&a, &[]), create(&b, &[]), create(&c, &[&a])],
    )]);
    let report = h.apply(&p, &parallelism(1)).await.unwrap();
    let t = tenant_report(&report, "taken");
    assert_eq!(t.outcome, TenantOutcome::RolledBack);
    assert_eq!(
        outcomes(&report, "taken"),
        [
            "create postgres_schema.a done",
            "create postgres_schema.b failed AlreadyExists",
            "create postgres_schema.c skipped",
        ]
    );
    assert_eq!(steps_of(&t.rollback), ["delete postgres_schema.a done"]);
    assert!(h.cloud.exists(&b), "what is not ours survives");
    assert!(!h.cloud.exists(&a));
}

#[tokio::test]
async fn without_rollback_a_new_tenant_goes_on_past_a_failure_and_keeps_what_it_made() {
    let (a, b, c) = (addr("keep", "a"), addr("keep", "b"), addr("keep", "c"));
    let h = Harness::new(Cloud::new());
    h.cloud.fail("create", &a);
    let p = plan(vec![tenant(
        "keep",
        true,
        vec![create(&a, &[]), create(&b, &[&a]), create(&c, &[])],
    )]);
    let options = ApplyOptions {
        parallelism: 1,
        rollback: false,
        ..ApplyOptions::default()
    };
    let report = h.apply(&p, &options).await.unwrap();
    let t = tenant_report(&report, "keep");
    assert_eq!(t.outcome, TenantOutcome::Failed);
    assert!(t.rollback.is_empty());
    assert_eq!(
        outcomes(&report, "keep"),
        [
            "create postgres_schema.a failed Injected",
            "create postgres_schema.b skipped",
            "create postgres_schema.c done",
        ]
    );
    assert_eq!(
        h.on_disk("keep"),
        ["postgres_schema.a Creating", "postgres_schema.c Created"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_starts_nothing_new_and_checkpoints_the_steps_in_flight() {
    let names = ["a", "b", "c", "d", "e", "f"];
    let addresses: Vec<ResourceAddress> = names.iter().map(|n| addr("intr", n)).collect();
    let h = Arc::new(Harness::new(Cloud::new()));
    let release_a = h.cloud.stall(&addresses[0]);
    let release_b = h.cloud.stall(&addresses[1]);
    let mut changes: Vec<ResourceChange> =
        addresses.iter().take(5).map(|a| create(a, &[])).collect();
    changes.push(create(&addresses[5], &[&addresses[0]]));
    let p = plan(vec![tenant("intr", true, changes)]);
    let options = parallelism(2);
    let cancel = options.cancel.clone();

    let run = {
        let (h, p) = (h.clone(), p.clone());
        tokio::spawn(async move { h.apply(&p, &options).await })
    };
    while h.cloud.in_flight.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    cancel.cancel();
    // Give the coordinator a moment to see the interrupt before the calls end.
    tokio::time::sleep(Duration::from_millis(20)).await;
    release_a.notify_one();
    release_b.notify_one();
    let report = run.await.unwrap().unwrap();

    assert!(report.interrupted);
    let t = tenant_report(&report, "intr");
    assert_eq!(t.outcome, TenantOutcome::Interrupted, "not rolled back");
    assert!(t.rollback.is_empty());
    assert_eq!(
        outcomes(&report, "intr"),
        [
            "create postgres_schema.a done",
            "create postgres_schema.b done",
            "create postgres_schema.c skipped",
            "create postgres_schema.d skipped",
            "create postgres_schema.e skipped",
            "create postgres_schema.f skipped",
        ]
    );
    assert_eq!(h.cloud.calls().len(), 2, "nothing new started");
    assert_eq!(
        h.on_disk("intr"),
        ["postgres_schema.a Created", "postgres_schema.b Created"],
        "the steps in flight finished and were checkpointed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_recorded_as_creating_on_disk_before_its_call() {
    let h = Harness::new(Cloud::with(Duration::ZERO, true));
    let disk = h.disk();
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = violations.clone();
    *h.cloud.during_create.lock().unwrap() = Some(Box::new(move |address| {
        let status = disk
            .load(&address.tenant)
            .unwrap()
            .and_then(|s| s.get(address).map(|r| r.status));
        if status != Some(ResourceStatus::Creating) {
            seen.lock()
                .unwrap()
                .push(format!("{address} is {status:?} on disk during its create"));
        }
    }));
    let tenants = ["one", "two"]
        .iter()
        .map(|t| {
            let r: Vec<ResourceAddress> = (0..6).map(|i| addr(t, &format!("r{i}"))).collect();
            let changes = (0..6)
                .map(|i| {
                    if i < 2 {
                        create(&r[i], &[])
                    } else {
                        create(&r[i], &[&r[i - 2]])
                    }
                })
                .collect();
            tenant(t, true, changes)
        })
        .collect();
    let report = h.apply(&plan(tenants), &parallelism(4)).await.unwrap();
    assert!(report.succeeded());
    assert_eq!(h.cloud.calls().len(), 12);
    assert_eq!(violations.lock().unwrap().clone(), Vec::<String>::new());
}

#[tokio::test]
async fn a_creating_record_holds_its_creates_token_and_the_resumed_create_gets_it_back() {
    let (base, a) = (addr("old", "base"), addr("old", "a"));
    let h = Harness::new(Cloud::new());
    h.seed("old", &[(&base, &[])]).await;
    h.cloud.fail("create", &a);
    let p = plan(vec![tenant("old", false, vec![create(&a, &[])])]);
    h.apply(&p, &parallelism(1)).await.unwrap();
    async fn record(h: &Harness, a: &ResourceAddress) -> ResourceState {
        let state = h.store.load(&a.tenant).await.unwrap().unwrap();
        state.get(a).cloned().unwrap()
    }
    let failed = record(&h, &a).await;
    assert_eq!(failed.status, ResourceStatus::Creating);
    let token = failed
        .create_token
        .expect("a create of unknown outcome keeps its token on disk");
    h.cloud.failing.lock().unwrap().clear();
    let report = h.apply(&p, &parallelism(1)).await.unwrap();
    assert!(report.succeeded());
    assert_eq!(
        h.cloud.modes.lock().unwrap().clone(),
        [
            (a.clone(), CreateMode::Fresh(token)),
            (a.clone(), CreateMode::Resume(token)),
        ],
        "the resumed create looks for the object by the token the first one wrote"
    );
    let done = record(&h, &a).await;
    assert_eq!(done.status, ResourceStatus::Created);
    assert_eq!(done.create_token, None, "a created record needs no token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_written_at_most_once_per_checkpoint_of_the_steps() {
    // Serial 1 process: a create writes twice (`creating`, done), an update or a
    // delete once. In parallel, writes of one tenant may be shared, never added.
    for n in [1, 4] {
        let h = Harness::new(Cloud::new());
        let names: Vec<ResourceAddress> = (0..5).map(|i| addr("ww", &format!("r{i}"))).collect();
        let p = plan(vec![tenant(
            "ww",
            true,
            names.iter().map(|a| create(a, &[])).collect(),
        )]);
        let report = h.apply(&p, &parallelism(n)).await.unwrap();
        let serial = tenant_report(&report, "ww").state_serial.unwrap();
        if n == 1 {
            assert_eq!(serial, 10, "two writes per create");
        } else {
            assert!((2..=10).contains(&serial), "{serial} writes for 5 creates");
        }

        let (x, y, u1, u2) = (
            addr("vv", "x"),
            addr("vv", "y"),
            addr("vv", "u1"),
            addr("vv", "u2"),
        );
        let before = h
            .seed("vv", &[(&x, &[]), (&y, &[]), (&u1, &[]), (&u2, &[])])
            .await;
        let p = plan(vec![tenant(
            "vv",
            false,
            vec![
                delete(&x, &[]),
                delete(&y, &[]),
                change(&u1, &[], Action::Update),
                change(&u2, &[], Action::Update),
            ],
        )]);
        let report = h.apply(&p, &parallelism(n)).await.unwrap();
        let serial = tenant_report(&report, "vv").state_serial.unwrap();
        if n == 1 {
            assert_eq!(serial, before + 4, "one write per update and per delete");
        } else {
            assert!(serial > before && serial <= before + 4, "{serial}");
        }
    }
}

#[tokio::test]
async fn a_failed_state_write_stops_the_apply_after_the_steps_in_flight() {
    let (a, b, c) = (addr("brk", "a"), addr("brk", "b"), addr("brk", "c"));
    let h = Harness::new(Cloud::new());
    // While b is created, the state directory becomes unwritable: a file stands where
    // the tenants' directory was.
    let dir = h.dir.path().to_owned();
    *h.cloud.during_create.lock().unwrap() = Some(Box::new(move |address| {
        if address.name == "b" {
            std::fs::rename(dir.join("tenants"), dir.join("moved")).unwrap();
            std::fs::write(dir.join("tenants"), b"not a directory").unwrap();
        }
    }));
    let p = plan(vec![tenant(
        "brk",
        true,
        vec![create(&a, &[]), create(&b, &[&a]), create(&c, &[&b])],
    )]);
    let err = h.apply(&p, &parallelism(1)).await.unwrap_err();
    assert!(matches!(err, ApplyError::Checkpoint(_)), "{err}");
    assert!(
        err.to_string().contains("cannot record progress in state"),
        "{err}"
    );
    assert_eq!(
        h.cloud.started(),
        [
            "create brk/postgres_schema.a",
            "create brk/postgres_schema.b"
        ],
        "nothing starts after the failed write, and no rollback runs"
    );
}

// ---------------------------------------------------------------------------------
// Differential: the parallel walk against a simple serial one

/// A random plan: 1 to 3 tenants with up to 40 creates in all, each depending on
/// random earlier resources of its tenant; about one in ten fails.
fn random_plan(rng: &mut fastrand::Rng) -> (Plan, BTreeSet<ResourceAddress>) {
    let total = rng.usize(1..=40);
    let tenant_count = rng.usize(1..=3).min(total);
    let density = rng.f64() * 0.25;
    let mut tenants = Vec::new();
    let mut failing = BTreeSet::new();
    for t in 0..tenant_count {
        let id = format!("rand{t}");
        let n = total / tenant_count + usize::from(t < total % tenant_count);
        let addresses: Vec<ResourceAddress> = (0..n)
            .map(|i| addr(&id, &format!("r{:02}", rng.usize(..100) * 100 + i)))
            .collect();
        let mut changes = Vec::new();
        for (i, a) in addresses.iter().enumerate() {
            let deps: Vec<&ResourceAddress> = addresses[..i]
                .iter()
                .filter(|_| rng.f64() < density)
                .collect();
            changes.push(create(a, &deps));
            if rng.f64() < 0.1 {
                failing.insert(a.clone());
            }
        }
        rng.shuffle(&mut changes);
        tenants.push(tenant(&id, false, changes));
    }
    (plan(tenants), failing)
}

/// The outcome of each create when walked one at a time in a topological order: it
/// fails if it is to fail, is skipped if a dependency did not succeed, succeeds
/// otherwise.
fn serial_outcomes(
    plan: &Plan,
    failing: &BTreeSet<ResourceAddress>,
) -> BTreeMap<ResourceAddress, &'static str> {
    let graph = ActionGraph::build(plan).unwrap();
    let order = petgraph::algo::toposort(&graph.graph, None).unwrap();
    let mut out: BTreeMap<ResourceAddress, &'static str> = BTreeMap::new();
    for n in order {
        let change = graph.graph[n].change(plan);
        let deps = &change.after.as_ref().unwrap().depends_on;
        let outcome = if deps.iter().any(|d| out[d] != "done") {
            "skipped"
        } else if failing.contains(&change.address) {
            "failed"
        } else {
            "done"
        };
        out.insert(change.address.clone(), outcome);
    }
    out
}

/// Over 200 random plans, the parallel walk (random parallelism, calls finishing in
/// random order, injected failures) makes each call once, never before a dependency
/// finished, and ends with the serial walk's outcome for every step and the matching
/// state on disk. Then deleting everything again runs every delete once and in reverse
/// dependency order, and leaves no state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_plans_apply_like_a_serial_walk() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_a991);
    for round in 0..200 {
        let (p, failing) = random_plan(&mut rng);
        let par = rng.usize(1..=8);
        let h = Harness::new(Cloud::with(Duration::ZERO, true));
        for a in &failing {
            h.cloud.fail("create", a);
        }
        let report = h.apply(&p, &parallelism(par)).await.unwrap();

        let expected = serial_outcomes(&p, &failing);
        let mut got: BTreeMap<ResourceAddress, &'static str> = BTreeMap::new();
        for s in report.tenants.iter().flat_map(|t| &t.steps) {
            let outcome = match s.outcome {
                StepOutcome::Done => "done",
                StepOutcome::Failed { .. } => "failed",
                StepOutcome::Skipped => "skipped",
            };
            assert!(
                got.insert(s.address.clone(), outcome).is_none(),
                "round {round}: {} twice",
                s.address
            );
        }
        assert_eq!(got, expected, "round {round}, parallelism {par}");

        let calls = h.cloud.calls();
        let mut called: Vec<&ResourceAddress> = calls.iter().map(|c| &c.address).collect();
        called.sort();
        let mut run: Vec<&ResourceAddress> = expected
            .iter()
            .filter(|(_, o)| **o != "skipped")
            .map(|(a, _)| a)
            .collect();
        run.sort();
        assert_eq!(
            called, run,
            "round {round}: each step that runs is called once"
        );
        assert_creates_follow_dependencies(&p, &calls);
        assert!(h.cloud.max_in_flight.load(Ordering::SeqCst) <= par);
        for t in &p.tenants {
            let on_disk: Vec<String> = h.on_disk(t.tenant.as_str());
            let want: Vec<String> = expected
                .iter()
                .filter(|(a, _)| a.tenant == t.tenant)
                .filter_map(|(a, o)| match *o {
                    "done" => Some(format!("{} Created", a.local())),
                    "failed" => Some(format!("{} Creating", a.local())),
                    _ => None,
                })
                .collect();
            let mut want = want;
            want.sort();
            assert_eq!(on_disk, want, "round {round}: state of {}", t.tenant);
        }

        // Delete everything that state holds, all tenants in one plan.
        let mut tenants = Vec::new();
        for t in &p.tenants {
            if let Some(state) = h.store.load(&t.tenant).await.unwrap() {
                tenants.extend(rollback::rollback_plan(&state).tenants);
            }
        }
        let destroy = Plan {
            tenants,
            ..plan(Vec::new())
        };
        h.cloud.calls.lock().unwrap().clear();
        let report = h.apply(&destroy, &parallelism(par)).await.unwrap();
        assert!(report.succeeded(), "round {round}: {report:?}");
        let deleted: HashMap<&ResourceAddress, Call> = HashMap::new();
        let calls = h.cloud.calls();
        let mut deleted = deleted;
        for c in &calls {
            assert_eq!(c.op, "delete");
            assert!(
                deleted.insert(&c.address, c.clone()).is_none(),
                "round {round}: deleted twice"
            );
        }
        assert_eq!(
            deleted.len(),
            run.len(),
            "round {round}: what ran is deleted"
        );
        for change in p.changes() {
            let Some(mine) = deleted.get(&change.address) else {
                continue;
            };
            for dep in &change.after.as_ref().unwrap().depends_on {
                if let Some(theirs) = deleted.get(dep) {
                    assert!(
                        mine.ended < theirs.started,
                        "round {round}: {dep} deleted before its dependent {}",
                        change.address
                    );
                }
            }
        }
        for t in &p.tenants {
            assert!(
                !h.disk().path_of(&t.tenant).exists(),
                "round {round}: no state left"
            );
        }
    }
}
