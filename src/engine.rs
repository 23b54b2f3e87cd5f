//! [`Engine`]: the library's front door. Loads specs and state, plans, applies,
//! destroys, and answers questions about state. The CLI and the HTTP server are thin
//! layers over it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::adopt::{
    self, AdoptError, AdoptOptions, Adoption, AdoptionReport, TerraformState, map_terraform_state,
};
use crate::apply::{self, ApplyOptions, ApplyReport, ProgressSink, TenantRun};
use crate::blueprint::tenant_blueprint;
use crate::connect::aws::AwsClients;
use crate::connect::postgres::PostgresConfig;
use crate::connect::redis::RedisConfig;
use crate::drift::{self, DriftReport};
use crate::environment::Environment;
use crate::error::Error;
use crate::outputs::{Output, tenant_outputs};
use crate::plan::cost::CostEstimate;
use crate::plan::graph::ActionGraph;
use crate::plan::identity::{self, TenantIdentity};
use crate::plan::{
    PLAN_FORMAT_VERSION, Plan, PlanMode, TenantInput, TenantPlan, plan_tenant, saved,
};
use crate::policy::{PolicyReport, PolicySet};
/// Whether a refresh reads in bulk ([`EngineConfig::bulk_read`]).
pub use crate::provider::BulkRead;
use crate::provider::dashboard::DashboardProvider;
use crate::provider::elasticache::ElasticacheProvider;
use crate::provider::iam::IamProvider;
use crate::provider::postgres::PostgresProvider;
use crate::provider::redis::RedisProvider;
use crate::provider::s3::S3Provider;
use crate::provider::secret::SecretProvider;
use crate::provider::settings::TenantSettingsProvider;
use crate::provider::vector::PgvectorProvider;
use crate::provider::{Provider, ProviderSet, ReadOptions, ReadRequest};
use crate::resource::{
    Attributes, Family, ResourceAddress, ResourceType, TenantId, attr_str, schema,
};
use crate::show::{
    ResourceList, ResourceView, StateDocument, StateHistory, TenantView, TenantsView,
};
use crate::spec::RegisteredSpec;
use crate::spec::{Specs, StateBackendKind, VectorBackend};
use crate::state::encryption::{Binding, Expected};
use crate::state::{
    Encryption, LockInfo, LockRequest, MigrationReport, ResourceState, ResourceStatus, RunRef,
    StateEditError, StateError, StateStore, StateVersion, TenantState,
};

/// Where the engine finds its input and keeps its state, and how hard it works.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Holds `platform.toml` and `tenants/*.toml`.
    pub specs_dir: PathBuf,
    /// Holds `tenants/<id>.json`.
    pub state_dir: PathBuf,
    /// Provider calls in flight at once, for refresh and apply.
    pub parallelism: usize,
    /// How long to wait for a tenant's lock before giving up.
    pub lock_timeout: Duration,
    /// Rego policies every plan is checked against (`--policy DIR`); `None`: those of
    /// `[policy] dir` in platform.toml, if any.
    pub policy_dir: Option<PathBuf>,
    /// The run this engine acts for, recorded with every lock it takes (and so with
    /// every state version written under it).
    pub run: Option<RunRef>,
    /// Where the variables platform.toml names (and `PG*`, `USER`, ...) are read:
    /// the process environment unless the embedding service gives its own.
    pub environment: Environment,
    /// Whether refresh reads the families that can in bulk (see [`BulkRead`]); the
    /// answers are the same either way.
    pub bulk_read: BulkRead,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            specs_dir: "specs".into(),
            state_dir: "state".into(),
            parallelism: 10,
            lock_timeout: Duration::ZERO,
            policy_dir: None,
            run: None,
            environment: Environment::process(),
            bulk_read: BulkRead::Auto,
        }
    }
}

/// What to plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Only these tenants; empty means every tenant with a spec or a state.
    pub tenants: Vec<TenantId>,
    /// Read managed resources back first, so that drift shows up.
    pub refresh: bool,
    pub mode: PlanMode,
    /// Resources to replace even if unchanged.
    pub replace: Vec<ResourceAddress>,
    /// Tenants whose generated secrets (passwords) are set anew (`--rotate`); each
    /// must have a spec and be among the planned tenants.
    pub rotate: Vec<TenantId>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            tenants: Vec::new(),
            refresh: true,
            mode: PlanMode::Normal,
            replace: Vec::new(),
            rotate: Vec::new(),
        }
    }
}

/// The engine. Cheap to create; providers and the state store connect on first use.
pub struct Engine {
    config: EngineConfig,
    store: tokio::sync::OnceCell<StateStore>,
    providers: tokio::sync::OnceCell<ProviderSet>,
    /// Where the registry's tenant specs are read; `None`: the platform's database.
    registry: Option<PostgresConfig>,
    registry_client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl Engine {
    /// An engine for `config`. Connects to nothing yet: the state store and providers are
    /// set up on first use, so this cannot fail.
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            store: tokio::sync::OnceCell::new(),
            providers: tokio::sync::OnceCell::new(),
            registry: None,
            registry_client: tokio::sync::Mutex::new(None),
        }
    }

    /// The engine with `store` as its state, instead of the one platform.toml chooses.
    pub fn with_state_store(self, store: StateStore) -> Self {
        self.store
            .set(store)
            .unwrap_or_else(|_| unreachable!("fresh cell"));
        self
    }

    /// Reads the registry's tenant specs from this database instead of the one the
    /// platform file names (a library user or a test with its own database).
    pub fn with_registry(mut self, pg: PostgresConfig) -> Self {
        self.registry = Some(pg);
        self
    }

    /// An engine that uses `providers` instead of those the platform file describes
    /// (to wrap them, or to point them elsewhere).
    pub fn with_providers(config: EngineConfig, providers: ProviderSet) -> Self {
        let engine = Self::new(config);
        engine
            .providers
            .set(providers)
            .unwrap_or_else(|_| unreachable!("fresh cell"));
        engine
    }

    /// The configuration the engine was made with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Where the tenants' state is: the backend `[state]` of platform.toml chooses (or
    /// `TENANTFORM_STATE_BACKEND`), set up once.
    pub async fn state_store(&self) -> Result<&StateStore, Error> {
        self.store
            .get_or_try_init(|| async {
                let platform = crate::spec::load_platform(&self.config.specs_dir)?;
                Ok::<_, Error>(StateStore::open(
                    &platform,
                    &self.config.state_dir,
                    &self.config.environment,
                )?)
            })
            .await
    }

    /// Runs `work`, then waits until the locks it dropped are released, so that the
    /// next operation (maybe another process, right after this one exits) finds them
    /// free instead of waiting for their leases to expire.
    async fn settled<T>(&self, work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let result = work.await;
        if let Some(store) = self.store.get() {
            store.settle().await;
        }
        result
    }

    fn lock_request(&self, operation: &str) -> LockRequest {
        LockRequest {
            operation: operation.to_owned(),
            timeout: self.config.lock_timeout,
            run: self.config.run,
            user: self.config.environment.get("USER"),
        }
    }

    /// Loads and validates every spec: the files, and the tenants provisioned from a
    /// request, whose specs live in the registry (a file of the same id wins; see
    /// [`Specs::add_registered`]). Reading the registry is not optional: a plan without
    /// those tenants would delete them.
    pub async fn specs(&self) -> Result<Specs, Error> {
        let mut specs = Specs::load(&self.config.specs_dir)?;
        let registered = self.registered_specs(&specs).await?;
        specs.add_registered(&registered)?;
        Ok(specs)
    }

    async fn registered_specs(&self, specs: &Specs) -> Result<Vec<RegisteredSpec>, Error> {
        let unreadable = |detail: String| Error::RegisteredSpecs(detail);
        let mut client = self.registry_client.lock().await;
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            let pg = match &self.registry {
                Some(pg) => pg.clone(),
                None => PostgresConfig::resolve(&specs.platform.postgres, &self.config.environment)
                    .map_err(|e| unreadable(e.to_string()))?,
            };
            *client = Some(
                pg.connect_as("tenantform registry")
                    .await
                    .map_err(|e| unreadable(e.to_string()))?,
            );
        }
        let c = client.as_ref().expect("connected above");
        registered_specs(c).await.map_err(unreadable)
    }

    /// The providers the platform file describes, set up once.
    pub async fn providers(&self, specs: &Specs) -> Result<&ProviderSet, Error> {
        self.providers
            .get_or_try_init(|| async {
                let pg =
                    PostgresConfig::resolve(&specs.platform.postgres, &self.config.environment)?;
                let aws = Arc::new(AwsClients::load(&specs.platform.aws).await);
                let set = platform_providers(
                    &specs.platform,
                    pg,
                    aws,
                    self.config.parallelism,
                    &self.config.environment,
                )?;
                Ok::<_, Error>(set)
            })
            .await
    }

    /// The tenants a run covers: those with a spec or a state, or the ones named.
    pub async fn select_tenants(
        &self,
        specs: &Specs,
        only: &[TenantId],
    ) -> Result<Vec<TenantId>, Error> {
        let mut all: BTreeSet<TenantId> = specs.tenants.keys().cloned().collect();
        all.extend(self.state_store().await?.tenants().await?);
        if only.is_empty() {
            return Ok(all.into_iter().collect());
        }
        let mut chosen = BTreeSet::new();
        for t in only {
            if !all.contains(t) {
                return Err(Error::UnknownTenant(t.clone()));
            }
            chosen.insert(t.clone());
        }
        Ok(chosen.into_iter().collect())
    }

    /// The policies plans are checked against: [`EngineConfig::policy_dir`], else
    /// `[policy] dir` of the platform; `None` when neither is set. Loading parses
    /// every file, so a broken policy fails here, before anything else runs.
    pub fn policies(&self, specs: &Specs) -> Result<Option<PolicySet>, Error> {
        let dir = self
            .config
            .policy_dir
            .clone()
            .or_else(|| specs.platform.policy.resolved_dir.clone());
        Ok(dir.map(|d| PolicySet::load(&d)).transpose()?)
    }

    /// Plans without taking locks: a plan changes nothing. With policies configured,
    /// the plan carries their results ([`Plan::policy`]); a mandatory violation is
    /// reported there, not as an error (see [`crate::policy::PolicyReport::enforce`]).
    pub async fn plan(&self, options: &PlanOptions) -> Result<Plan, Error> {
        let specs = self.specs().await?;
        let policies = self.policies(&specs)?;
        let tenants = self.select_tenants(&specs, &options.tenants).await?;
        check_rotation(&specs, &tenants, options)?;
        if !options.refresh {
            // Nothing to read back: one state in memory at a time, so that a plan over
            // thousands of tenants holds the plan and not every state besides.
            let replace: BTreeSet<ResourceAddress> = options.replace.iter().cloned().collect();
            let no_refresh = BTreeMap::new();
            let mut plans = Vec::with_capacity(tenants.len());
            for t in &tenants {
                let state = self.load_checked(&specs, t).await?;
                plans.push(plan_one(
                    &specs,
                    t,
                    state.as_ref(),
                    &no_refresh,
                    options,
                    &replace,
                )?);
            }
            return with_policy_results(policies.as_ref(), assemble(options, plans)?);
        }
        let mut states = BTreeMap::new();
        for t in &tenants {
            states.insert(t.clone(), self.load_checked(&specs, t).await?);
        }
        let plan = self.plan_with(&specs, &states, options).await?;
        with_policy_results(policies.as_ref(), plan)
    }

    /// A tenant's state, checked to name only that tenant's objects (see
    /// [`crate::plan::identity`]): a state edited to name another tenant's role must
    /// not make apply drop it.
    async fn load_checked(
        &self,
        specs: &Specs,
        tenant: &TenantId,
    ) -> Result<Option<TenantState>, Error> {
        let store = self.state_store().await?;
        let state = store.load(tenant).await?;
        if let Some(state) = &state {
            check_identity(store, specs, state)?;
        }
        Ok(state)
    }

    async fn plan_with(
        &self,
        specs: &Specs,
        states: &BTreeMap<TenantId, Option<TenantState>>,
        options: &PlanOptions,
    ) -> Result<Plan, Error> {
        let refreshed = if options.refresh {
            self.refresh(specs, states).await?
        } else {
            BTreeMap::new()
        };
        self.plan_from(specs, states, &refreshed, options).await
    }

    /// The plan of `states` given what was `refreshed` (read back) of them.
    async fn plan_from(
        &self,
        specs: &Specs,
        states: &BTreeMap<TenantId, Option<TenantState>>,
        refreshed: &BTreeMap<TenantId, BTreeMap<String, Option<Attributes>>>,
        options: &PlanOptions,
    ) -> Result<Plan, Error> {
        let replace: BTreeSet<ResourceAddress> = options.replace.iter().cloned().collect();
        let no_refresh = BTreeMap::new();
        let mut tenants = Vec::with_capacity(states.len());
        for (id, state) in states {
            let read = refreshed.get(id).unwrap_or(&no_refresh);
            tenants.push(plan_one(
                specs,
                id,
                state.as_ref(),
                read,
                options,
                &replace,
            )?);
        }
        let mut plan = assemble(options, tenants)?;
        if options.refresh {
            plan.aws_account_id = self.aws_account_id(specs, &plan).await?;
        }
        Ok(plan)
    }

    /// The AWS account of the resources in `plan`, asked of their providers (one STS
    /// call, remembered), so that the plan shows real ARNs; `None` when no provider of
    /// the plan is in AWS or the account cannot be told (the plan then shows the
    /// placeholder, and apply reports why).
    async fn aws_account_id(&self, specs: &Specs, plan: &Plan) -> Result<Option<String>, Error> {
        let types: BTreeSet<ResourceType> =
            plan.changes().map(|c| c.address.resource_type).collect();
        for provider in self.providers(specs).await?.serving(types) {
            if let Some(account) = provider.aws_account_id().await {
                return Ok(Some(account));
            }
        }
        Ok(None)
    }

    /// Reads every created resource of `states` back from its endpoint: every family
    /// at once, each in as few calls as its API allows (see
    /// [`crate::provider::Provider::read_many`]), at most `parallelism` calls in
    /// flight per service. Per tenant and local address: `None` if the resource is
    /// gone, else its attributes (unreadable ones, like a password, kept from state).
    pub async fn refresh(
        &self,
        specs: &Specs,
        states: &BTreeMap<TenantId, Option<TenantState>>,
    ) -> Result<BTreeMap<TenantId, BTreeMap<String, Option<Attributes>>>, Error> {
        let reads: Vec<(&TenantId, &String, ResourceAddress, &ResourceState)> = states
            .iter()
            .filter_map(|(t, s)| s.as_ref().map(|s| (t, s)))
            .flat_map(|(t, s)| {
                s.resources
                    .iter()
                    .filter(|(_, r)| r.status == ResourceStatus::Created)
                    .map(move |(k, r)| (t, k, ResourceAddress::new(t, r.resource_type, &r.name), r))
            })
            .collect();
        let mut out: BTreeMap<TenantId, BTreeMap<String, Option<Attributes>>> = BTreeMap::new();
        if reads.is_empty() {
            return Ok(out);
        }
        let providers = self.providers(specs).await?;
        let requests: Vec<ReadRequest<'_>> = reads
            .iter()
            .map(|(_, _, address, r)| (address, &r.attributes))
            .collect();
        let options = ReadOptions {
            parallelism: self.config.parallelism.max(1),
            bulk: self.config.bulk_read,
        };
        let answers = providers.read_many(&requests, options).await;
        for ((tenant, key, address, r), answer) in reads.iter().zip(answers) {
            let read = answer.map_err(|source| Error::Refresh {
                address: address.clone(),
                source: Box::new(source),
            })?;
            out.entry((*tenant).clone())
                .or_default()
                .insert((*key).clone(), read.map(|a| merge_unreadable(a, r)));
        }
        Ok(out)
    }

    /// Locks the tenants in sorted order (so that two runs never wait on each other
    /// in a cycle) and loads their state. Returns the runs and the tenants that have a
    /// stored state.
    ///
    /// The one place where tenant locks are taken, for a CLI command and for a run
    /// alike. An engine that acts for a run ([`EngineConfig::run`]) names the run and
    /// its attempt in the lock, so that with PostgreSQL state a later attempt takes the
    /// lock over and every state write of an earlier attempt is refused.
    async fn lock_tenants(
        &self,
        specs: &Specs,
        tenants: &[TenantId],
        operation: &str,
    ) -> Result<(BTreeMap<TenantId, TenantRun>, BTreeSet<TenantId>), Error> {
        let store = self.state_store().await?;
        let request = self.lock_request(operation);
        let mut sorted = tenants.to_vec();
        sorted.sort();
        let mut runs = BTreeMap::new();
        let mut stored = BTreeSet::new();
        for t in sorted {
            let lock = store.lock(&t, &request).await?;
            let state = self.load_checked(specs, &t).await?;
            if state.is_some() {
                stored.insert(t.clone());
            }
            runs.insert(t, TenantRun::new(lock, state));
        }
        Ok((runs, stored))
    }

    /// Applies a saved plan: locks its tenants, checks that every state is still the one
    /// the plan was made against, and executes it.
    pub async fn apply_plan(
        &self,
        plan: &Plan,
        options: &ApplyOptions,
        progress: Option<ProgressSink>,
    ) -> Result<ApplyReport, Error> {
        self.settled(self.apply_plan_locked(plan, options, progress))
            .await
    }

    async fn apply_plan_locked(
        &self,
        plan: &Plan,
        options: &ApplyOptions,
        progress: Option<ProgressSink>,
    ) -> Result<ApplyReport, Error> {
        let tenants: Vec<TenantId> = plan.tenants.iter().map(|t| t.tenant.clone()).collect();
        let specs = self.specs().await?;
        // A saved plan is input too: what it creates must carry the tenant's own names.
        for t in &plan.tenants {
            let identity =
                TenantIdentity::of(&t.tenant, specs.tenants.get(&t.tenant), &specs.platform);
            let foreign = t.changes.iter().filter(|c| c.address.tenant != t.tenant);
            if let Some(c) = foreign.clone().next() {
                return Err(Error::PlanFile {
                    path: "(the saved plan)".into(),
                    detail: format!(
                        "the changes of tenant {} include {}, a resource of another tenant; plan again",
                        t.tenant, c.address
                    ),
                });
            }
            let mismatches = identity.mismatches(
                t.changes
                    .iter()
                    .filter_map(|c| c.after.as_ref().map(|r| (c.address.clone(), &r.attributes))),
            );
            if !mismatches.is_empty() {
                return Err(Error::NotTheTenants {
                    what: "the saved plan".into(),
                    tenant: t.tenant.clone(),
                    mismatches,
                });
            }
        }
        let (runs, stored) = self.lock_tenants(&specs, &tenants, "apply").await?;
        for t in &plan.tenants {
            let state = &runs[&t.tenant].state;
            let exists = stored.contains(&t.tenant);
            check_plan_fresh(t, exists.then_some(state))?;
        }
        // The policies as they are now, which may be stricter than when it was saved;
        // a plan made with `--policy DIR` is checked against DIR again.
        let policies = match self.policies(&specs)? {
            Some(p) => Some(p),
            None => plan
                .policy
                .as_ref()
                .map(|r| PolicySet::load(&r.dir))
                .transpose()?,
        };
        if let Some(policies) = policies {
            evaluate_policies(&policies, plan)?.enforce()?;
        }
        let providers = self.providers(&specs).await?;
        let store = self.state_store().await?;
        Ok(apply::apply(plan, runs, providers, store, options, progress).await?)
    }

    /// Locks, plans, asks `confirm`, and applies: `apply` and `destroy` without a saved
    /// plan. Returns the plan, and the report unless there was nothing to do or
    /// `confirm` said no. A mandatory policy violation is an error
    /// ([`Error::Policy`]) before `confirm` is asked and before anything is changed;
    /// advisory ones are in the returned plan's [`Plan::policy`].
    pub async fn plan_and_apply(
        &self,
        plan_options: &PlanOptions,
        apply_options: &ApplyOptions,
        confirm: impl FnOnce(&Plan) -> bool,
        progress: Option<ProgressSink>,
    ) -> Result<(Plan, Option<ApplyReport>), Error> {
        self.settled(self.plan_and_apply_locked(plan_options, apply_options, confirm, progress))
            .await
    }

    async fn plan_and_apply_locked(
        &self,
        plan_options: &PlanOptions,
        apply_options: &ApplyOptions,
        confirm: impl FnOnce(&Plan) -> bool,
        progress: Option<ProgressSink>,
    ) -> Result<(Plan, Option<ApplyReport>), Error> {
        let specs = self.specs().await?;
        let policies = self.policies(&specs)?;
        let tenants = self.select_tenants(&specs, &plan_options.tenants).await?;
        check_rotation(&specs, &tenants, plan_options)?;
        let operation = match plan_options.mode {
            PlanMode::Normal => "apply",
            PlanMode::Destroy => "destroy",
        };
        let (runs, stored) = self.lock_tenants(&specs, &tenants, operation).await?;
        let states: BTreeMap<TenantId, Option<TenantState>> = runs
            .iter()
            .map(|(t, r)| (t.clone(), stored.contains(t).then(|| r.state.clone())))
            .collect();
        let plan = self.plan_with(&specs, &states, plan_options).await?;
        let plan = with_policy_results(policies.as_ref(), plan)?;
        if let Some(report) = &plan.policy {
            report.enforce()?;
        }
        if !plan.has_changes() {
            self.remove_empty_states(runs, &stored).await?;
            return Ok((plan, None));
        }
        if !confirm(&plan) {
            return Ok((plan, None));
        }
        let providers = self.providers(&specs).await?;
        let store = self.state_store().await?;
        let report = apply::apply(&plan, runs, providers, store, apply_options, progress).await?;
        Ok((plan, Some(report)))
    }

    /// Removes the state of each locked tenant that holds no resource. An apply removes
    /// such a state when it ends, but a run stopped dead between its last delete's
    /// checkpoint and that removal leaves one behind: the next run, finding nothing to
    /// do, finishes the job, so that a destroyed tenant has no state.
    async fn remove_empty_states(
        &self,
        runs: BTreeMap<TenantId, TenantRun>,
        stored: &BTreeSet<TenantId>,
    ) -> Result<(), Error> {
        let store = self.state_store().await?;
        for (tenant, run) in runs {
            if run.state.resources.is_empty() && stored.contains(&tenant) {
                store.remove(&run.lock, &run.state).await?;
            }
        }
        Ok(())
    }

    /// Writes a plan for a later `apply PLANFILE` (mode 0600: it names resources).
    /// Sealed with the state's key when `[encryption]` configures one.
    pub fn save_plan(&self, plan: &Plan, path: &Path) -> Result<(), Error> {
        let platform = crate::spec::load_platform(&self.config.specs_dir)?;
        let encryption = Encryption::from_platform(&platform, &self.config.environment)
            .map_err(StateError::from)?;
        let bytes = saved::encode(plan);
        let what = format!("plan file {}", path.display());
        let stored = encryption
            .seal(&what, Binding::plan(), &bytes)
            .map_err(StateError::from)?;
        crate::state::write_atomically(path, &stored).map_err(|e| Error::PlanFile {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Reads a plan written by [`Engine::save_plan`].
    pub fn load_plan(&self, path: &Path) -> Result<Plan, Error> {
        // The parser's messages quote the file's content: never pass a control character on.
        let err = |detail: String| Error::PlanFile {
            path: path.to_owned(),
            detail: crate::spec::printable(&detail).into_owned(),
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        // Without a platform file there is no `[encryption]`: a plain plan still reads.
        let encryption = match crate::spec::load_platform(&self.config.specs_dir) {
            Ok(platform) => Encryption::from_platform(&platform, &self.config.environment)
                .map_err(StateError::from)?,
            Err(_) => Encryption::plain(),
        };
        let what = format!("plan file {}", path.display());
        let expected = Expected {
            content: "plan",
            ..Expected::default()
        };
        let (bytes, _) = encryption
            .open(&what, &expected, &bytes)
            .map_err(StateError::from)?;
        let plan = saved::decode(&bytes).map_err(err)?;
        ActionGraph::build(&plan).map_err(|e| err(e.to_string()))?;
        Ok(plan)
    }

    /// The state of every selected tenant that has one.
    pub async fn states(&self, only: &[TenantId]) -> Result<Vec<TenantState>, Error> {
        let store = self.state_store().await?;
        let mut out = Vec::new();
        let ids = if only.is_empty() {
            store.tenants().await?
        } else {
            only.to_vec()
        };
        for t in ids {
            match store.load(&t).await? {
                Some(s) => out.push(s),
                None if only.is_empty() => {}
                None => return Err(Error::UnknownTenant(t)),
            }
        }
        Ok(out)
    }

    /// One resource as state records it.
    pub async fn state_resource(&self, address: &ResourceAddress) -> Result<ResourceState, Error> {
        self.state_store()
            .await?
            .load(&address.tenant)
            .await?
            .and_then(|s| s.get(address).cloned())
            .ok_or_else(|| StateEditError::NotInState(address.clone()).into())
    }

    /// A tenant's outputs (see [`crate::outputs`]).
    pub fn outputs(&self, state: &TenantState) -> BTreeMap<String, Output> {
        // Connection settings only: the platform file is enough.
        let specs = Specs::load(&self.config.specs_dir).ok();
        let pg = specs.as_ref().and_then(|s| {
            PostgresConfig::resolve(&s.platform.postgres, &self.config.environment).ok()
        });
        let redis = specs
            .as_ref()
            .and_then(|s| RedisConfig::resolve(&s.platform.redis, &self.config.environment).ok());
        tenant_outputs(state, pg.as_ref(), redis.as_ref())
    }

    /// `show`: the selected tenants (every tenant with a state if none is named), with
    /// their resources and outputs; sensitive outputs redacted unless `show_secrets`.
    pub async fn tenants_view(
        &self,
        only: &[TenantId],
        show_secrets: bool,
    ) -> Result<TenantsView, Error> {
        let tenants = self
            .states(only)
            .await?
            .iter()
            .map(|s| TenantView::new(s, &self.outputs(s), show_secrets))
            .collect();
        Ok(TenantsView { tenants })
    }

    /// `state list`: every resource address in the selected tenants' state.
    pub async fn resource_list(&self, only: &[TenantId]) -> Result<ResourceList, Error> {
        Ok(ResourceList::of(&self.states(only).await?))
    }

    /// `state show`: one resource as state records it; sensitive attributes redacted
    /// unless `show_secrets`.
    pub async fn resource_view(
        &self,
        address: &ResourceAddress,
        show_secrets: bool,
    ) -> Result<ResourceView, Error> {
        let r = self.state_resource(address).await?;
        Ok(ResourceView::new(address, &r, show_secrets))
    }

    /// Reads every managed resource of the selected tenants back and reports what
    /// differs from state (drift) and what the specs ask for that is not applied yet.
    /// Changes nothing and takes no lock.
    pub async fn drift(&self, only: &[TenantId]) -> Result<DriftReport, Error> {
        let specs = self.specs().await?;
        let tenants = self.select_tenants(&specs, only).await?;
        let mut states = BTreeMap::new();
        for t in &tenants {
            states.insert(t.clone(), self.load_checked(&specs, t).await?);
        }
        let refreshed = self.refresh(&specs, &states).await?;
        self.drift_of(&specs, &states, &refreshed).await
    }

    async fn drift_of(
        &self,
        specs: &Specs,
        states: &BTreeMap<TenantId, Option<TenantState>>,
        refreshed: &BTreeMap<TenantId, BTreeMap<String, Option<Attributes>>>,
    ) -> Result<DriftReport, Error> {
        // Planned without refresh, the plan holds spec changes only.
        let pending = self
            .plan_with(
                specs,
                states,
                &PlanOptions {
                    refresh: false,
                    ..PlanOptions::default()
                },
            )
            .await;
        let pending: BTreeMap<TenantId, TenantPlan> = match pending {
            Ok(plan) => plan
                .tenants
                .into_iter()
                .map(|t| (t.tenant.clone(), t))
                .collect(),
            // A plan error (say, a protected tenant whose spec was removed) must not
            // hide drift: report drift without pending changes.
            Err(e) => {
                tracing::warn!(error = %e, "cannot list pending spec changes");
                BTreeMap::new()
            }
        };
        let no_refresh = BTreeMap::new();
        let tenants = states
            .iter()
            .map(|(id, state)| {
                drift::tenant_drift(
                    id,
                    state.as_ref(),
                    refreshed.get(id).unwrap_or(&no_refresh),
                    pending.get(id),
                )
            })
            .collect();
        Ok(DriftReport {
            format_version: drift::DRIFT_FORMAT_VERSION.into(),
            created_at: Utc::now(),
            tenants,
        })
    }

    /// Accepts reality into state (Terraform's refresh-only apply): under the tenants'
    /// locks, reads everything back, shows the drift to `confirm`, and if it says yes,
    /// records it: deleted resources leave state, changed ones get their real
    /// attributes. Returns the report and whether state was written.
    pub async fn refresh_state(
        &self,
        only: &[TenantId],
        confirm: impl FnOnce(&DriftReport) -> bool,
    ) -> Result<(DriftReport, bool), Error> {
        self.settled(self.refresh_state_locked(only, confirm)).await
    }

    async fn refresh_state_locked(
        &self,
        only: &[TenantId],
        confirm: impl FnOnce(&DriftReport) -> bool,
    ) -> Result<(DriftReport, bool), Error> {
        let specs = self.specs().await?;
        let tenants = self.select_tenants(&specs, only).await?;
        let (mut runs, stored) = self.lock_tenants(&specs, &tenants, "refresh").await?;
        let states: BTreeMap<TenantId, Option<TenantState>> = runs
            .iter()
            .map(|(t, r)| (t.clone(), stored.contains(t).then(|| r.state.clone())))
            .collect();
        let refreshed = self.refresh(&specs, &states).await?;
        let report = self.drift_of(&specs, &states, &refreshed).await?;
        if !report.has_drift() || !confirm(&report) {
            return Ok((report, false));
        }
        for t in report.tenants.iter().filter(|t| !t.drift.is_empty()) {
            let run = runs.get_mut(&t.tenant).expect("locked tenant");
            let read = &refreshed[&t.tenant];
            for d in &t.drift {
                let key = d.address.local();
                match read.get(&key) {
                    Some(Some(actual)) => {
                        if let Some(r) = run.state.resources.get_mut(&key) {
                            r.attributes = actual.clone();
                        }
                    }
                    _ => {
                        run.state.resources.remove(&key);
                    }
                }
            }
            let store = self.state_store().await?;
            store.write(&run.lock, &mut run.state).await?;
        }
        Ok((report, true))
    }

    /// Adopts an existing resource into its tenant's state, so that apply manages it
    /// instead of colliding with it. `id` is the real object's identity (see
    /// [`import_id`]); it must be the one the tenant's spec declares at `address`.
    pub async fn import(
        &self,
        address: &ResourceAddress,
        id: &str,
    ) -> Result<ResourceState, Error> {
        self.settled(self.import_locked(address, id)).await
    }

    async fn import_locked(
        &self,
        address: &ResourceAddress,
        id: &str,
    ) -> Result<ResourceState, Error> {
        let specs = self.specs().await?;
        let tenant = &address.tenant;
        let spec = specs
            .tenants
            .get(tenant)
            .ok_or_else(|| Error::UnknownTenant(tenant.clone()))?;
        let blueprint = tenant_blueprint(spec, &specs.platform);
        let desired = blueprint
            .resources
            .iter()
            .find(|r| &r.address == address)
            .ok_or_else(|| Error::ImportNotInSpec {
                address: address.clone(),
                known: blueprint
                    .resources
                    .iter()
                    .map(|r| r.address.local())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let expected = import_id(desired);
        if id != expected {
            return Err(Error::ImportIdMismatch {
                address: address.clone(),
                given: id.to_owned(),
                expected,
            });
        }
        let (mut runs, _) = self
            .lock_tenants(&specs, std::slice::from_ref(tenant), "import")
            .await?;
        let run = runs.get_mut(tenant).expect("locked tenant");
        if let Some(existing) = run.state.resources.get(&address.local())
            && existing.status == ResourceStatus::Created
        {
            return Err(Error::ImportAlreadyManaged(address.clone()));
        }
        let providers = self.providers(&specs).await?;
        let read = providers
            .get(address.resource_type)?
            .read(address, &desired.attributes)
            .await
            .map_err(|source| Error::Refresh {
                address: address.clone(),
                source: Box::new(source),
            })?
            .ok_or_else(|| Error::ImportNotFound {
                address: address.clone(),
                id: id.to_owned(),
            })?;
        let resource = ResourceState {
            resource_type: address.resource_type,
            name: address.name.clone(),
            status: ResourceStatus::Created,
            attributes: read,
            depends_on: desired.depends_on.clone(),
            create_token: None,
        };
        run.state
            .resources
            .insert(address.local(), resource.clone());
        let store = self.state_store().await?;
        store.write(&run.lock, &mut run.state).await?;
        Ok(resource)
    }

    /// Takes over tenants that Terraform manages (`tenantform adopt`; see
    /// [`crate::adopt`]): reads the Terraform state at `from` (a local path, or
    /// `s3://BUCKET/KEY` through the S3 API with the platform's `[aws]` settings), maps its
    /// tenant module instances onto the tenants' addresses, and, under the tenants'
    /// locks, writes them into candidate states, reads every adopted object back and
    /// plans. The states are written only when nothing was refused (no delete and no
    /// replace of an adopted resource, no object another state holds) and not
    /// `dry_run`; otherwise nothing is written and the report says why. Terraform's
    /// state file is only read.
    pub async fn adopt(&self, from: &str, options: &AdoptOptions) -> Result<AdoptionReport, Error> {
        self.settled(self.adopt_locked(from, options)).await
    }

    async fn adopt_locked(
        &self,
        from: &str,
        options: &AdoptOptions,
    ) -> Result<AdoptionReport, Error> {
        let unreadable = |problem: String| AdoptError::Read {
            file: from.to_owned(),
            problem,
        };
        // A local file is checked before any service is asked anything.
        let local = match from.strip_prefix("s3://") {
            None => {
                let bytes = std::fs::read(from).map_err(|e| unreadable(e.to_string()))?;
                Some(TerraformState::parse(&bytes, from)?)
            }
            Some(_) => None,
        };
        let specs = self.specs().await?;
        let terraform = match (local, from.strip_prefix("s3://")) {
            (Some(terraform), _) => terraform,
            // Where the old setup kept it: read with the platform's AWS settings.
            (None, location) => {
                let (bucket, key) = location
                    .and_then(|l| l.split_once('/'))
                    .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                    .ok_or_else(|| unreadable("write an S3 location as s3://BUCKET/KEY".into()))?;
                let bytes = AwsClients::load(&specs.platform.aws)
                    .await
                    .get_object(bucket, key)
                    .await
                    .map_err(|e| unreadable(e.to_string()))?;
                TerraformState::parse(&bytes, from)?
            }
        };
        let mut adoption = map_terraform_state(&terraform, from, &specs, options)?;
        let refused = |adoption: Adoption| AdoptionReport {
            adoption,
            plan: None,
            dry_run: options.dry_run,
            committed: false,
        };
        if !adoption.refusals.is_empty() || adoption.tenants.is_empty() {
            return Ok(refused(adoption));
        }
        // Who holds what is read under the adopted tenants' locks, so that their own
        // states cannot change before the commit, and read again just before it.
        let tenants: Vec<TenantId> = adoption.tenants.keys().cloned().collect();
        let (mut runs, _) = self.lock_tenants(&specs, &tenants, "adopt").await?;
        let store = self.state_store().await?;
        adoption
            .refusals
            .extend(self.adoption_conflicts(&adoption, &runs).await?);
        if !adoption.refusals.is_empty() {
            return Ok(refused(adoption));
        }
        // Candidate states: each adopted object recorded with what the spec names it,
        // then read back from its endpoint; the plan diffs what was read.
        // The record of where they came from goes in now: the plan tells an adopted
        // object's differences from a spec change by it.
        let now = Utc::now();
        let mut states = BTreeMap::new();
        for (tenant, objects) in &adoption.tenants {
            let mut state = runs[tenant].state.clone();
            state.adopted_from = Some(adoption.record_for(tenant, now));
            for o in objects {
                let s = schema(o.address.resource_type);
                let attributes: Attributes = o
                    .desired
                    .attributes
                    .iter()
                    .filter(|(k, _)| s.attribute(k).is_some_and(|a| !a.computed))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                state.resources.insert(
                    o.address.local(),
                    ResourceState {
                        resource_type: o.address.resource_type,
                        name: o.address.name.clone(),
                        status: ResourceStatus::Created,
                        attributes,
                        depends_on: o.desired.depends_on.clone(),
                        create_token: None,
                    },
                );
            }
            states.insert(tenant.clone(), Some(state));
        }
        let refreshed = self.refresh(&specs, &states).await?;
        for (tenant, state) in states.iter_mut() {
            let state = state.as_mut().expect("a candidate state");
            for (key, read) in refreshed.get(tenant).into_iter().flatten() {
                if let (Some(read), Some(r)) = (read, state.resources.get_mut(key)) {
                    r.attributes = read.clone();
                }
            }
        }
        let plan_options = PlanOptions {
            tenants: tenants.clone(),
            ..PlanOptions::default()
        };
        let plan = self
            .plan_from(&specs, &states, &refreshed, &plan_options)
            .await?;
        adoption
            .refusals
            .extend(adopt::plan_refusals(&adoption, &plan, &refreshed));
        if adoption.refusals.is_empty() {
            // Another tenant's state may have been written while the objects were read
            // back: what it holds now decides, right before anything is written.
            adoption
                .refusals
                .extend(self.adoption_conflicts(&adoption, &runs).await?);
        }
        let committed = adoption.refusals.is_empty() && !options.dry_run;
        if committed {
            for (tenant, state) in states {
                let run = runs.get_mut(&tenant).expect("locked tenant");
                run.state = state.expect("a candidate state");
                store.write(&run.lock, &mut run.state).await?;
            }
        }
        Ok(AdoptionReport {
            adoption,
            plan: Some(plan),
            dry_run: options.dry_run,
            committed,
        })
    }

    /// The objects of `adoption` that a stored state holds now ([`adopt::conflicts`]):
    /// the adopted tenants' states as loaded under their locks (`runs`), every other
    /// tenant's as stored (read as it is: another tenant's state that names an object
    /// of an adopted one is exactly what must be found, not an error).
    async fn adoption_conflicts(
        &self,
        adoption: &Adoption,
        runs: &BTreeMap<TenantId, TenantRun>,
    ) -> Result<Vec<adopt::Refusal>, Error> {
        let store = self.state_store().await?;
        let mut stored: Vec<TenantState> = runs.values().map(|r| r.state.clone()).collect();
        for t in store.tenants().await? {
            if runs.contains_key(&t) {
                continue;
            }
            if let Some(state) = store.load(&t).await? {
                stored.push(state);
            }
        }
        Ok(adopt::conflicts(adoption, &stored))
    }

    /// Deletes everything a tenant's state holds, in reverse dependency order, whatever
    /// its protection: the undo of a provisioning that failed after the apply (a failed
    /// validation). Returns the report; state keeps what could not be deleted.
    pub async fn roll_back_tenant(
        &self,
        tenant: &TenantId,
        progress: Option<ProgressSink>,
    ) -> Result<ApplyReport, Error> {
        self.settled(self.roll_back_tenant_locked(tenant, progress))
            .await
    }

    async fn roll_back_tenant_locked(
        &self,
        tenant: &TenantId,
        progress: Option<ProgressSink>,
    ) -> Result<ApplyReport, Error> {
        let specs = self.specs().await?;
        let (runs, _) = self
            .lock_tenants(&specs, std::slice::from_ref(tenant), "rollback")
            .await?;
        let plan = apply::rollback::rollback_plan(&runs[tenant].state);
        let providers = self.providers(&specs).await?;
        let options = ApplyOptions {
            parallelism: self.config.parallelism,
            rollback: false,
            ..ApplyOptions::default()
        };
        let store = self.state_store().await?;
        Ok(apply::apply(&plan, runs, providers, store, &options, progress).await?)
    }

    /// Who holds a tenant's lock, if anyone.
    pub async fn lock_holder(&self, tenant: &TenantId) -> Result<Option<LockInfo>, Error> {
        Ok(self.state_store().await?.lock_holder(tenant).await?)
    }

    /// Breaks a tenant's lock; `lock_id` must be the holder's id.
    pub async fn force_unlock(&self, tenant: &TenantId, lock_id: &str) -> Result<LockInfo, Error> {
        Ok(self
            .state_store()
            .await?
            .force_unlock(tenant, lock_id)
            .await?)
    }

    /// The versions of a tenant's state that are kept, newest first.
    pub async fn state_history(&self, tenant: &TenantId) -> Result<Vec<StateVersion>, Error> {
        Ok(self.state_store().await?.history(tenant).await?)
    }

    /// `state history`: [`Engine::state_history`] as a view.
    pub async fn history_view(&self, tenant: &TenantId) -> Result<StateHistory, Error> {
        Ok(StateHistory {
            tenant: tenant.clone(),
            versions: self.state_history(tenant).await?,
        })
    }

    /// `state pull`: a tenant's whole state document; sensitive attributes redacted
    /// unless `show_secrets`.
    pub async fn state_document(
        &self,
        tenant: &TenantId,
        show_secrets: bool,
    ) -> Result<StateDocument, Error> {
        let state = self
            .states(std::slice::from_ref(tenant))
            .await?
            .pop()
            .ok_or_else(|| Error::UnknownTenant(tenant.clone()))?;
        Ok(StateDocument::new(state, show_secrets))
    }

    /// Recovers version `serial` of a tenant's state: under the tenant's lock, writes
    /// its content as the next serial. Changes no resource; `plan` then shows what
    /// apply would do from there.
    pub async fn restore_state(
        &self,
        tenant: &TenantId,
        serial: u64,
    ) -> Result<TenantState, Error> {
        self.settled(async {
            let store = self.state_store().await?;
            let lock = store
                .lock(tenant, &self.lock_request("state rollback"))
                .await?;
            let restored = store.restore(&lock, serial).await;
            lock.release().await?;
            Ok(restored?)
        })
        .await
    }

    /// `state rm`: forgets `addresses` without touching the resources, which go on
    /// existing unmanaged (a later plan would create them anew; `import` adopts them
    /// again). Every tenant named is locked and edited, each as its next serial, or
    /// none is when an address is not in state. With `dry_run`, only checks.
    pub async fn remove_from_state(
        &self,
        addresses: &[ResourceAddress],
        dry_run: bool,
    ) -> Result<Vec<ResourceAddress>, Error> {
        let tenants: BTreeSet<TenantId> = addresses.iter().map(|a| a.tenant.clone()).collect();
        let mut removed = Vec::new();
        self.edit_states(&tenants, "state rm", dry_run, |state| {
            let mine: Vec<ResourceAddress> = addresses
                .iter()
                .filter(|a| a.tenant == state.tenant)
                .cloned()
                .collect();
            removed.extend(crate::state::remove_resources(state, &mine)?);
            Ok(())
        })
        .await?;
        Ok(removed)
    }

    /// `state mv`: records the resource at `from` under `to` (see
    /// [`crate::state::move_resource`]), under the tenant's lock, as its next serial.
    pub async fn move_in_state(
        &self,
        from: &ResourceAddress,
        to: &ResourceAddress,
        dry_run: bool,
    ) -> Result<(), Error> {
        let tenants = BTreeSet::from([from.tenant.clone()]);
        self.edit_states(&tenants, "state mv", dry_run, |state| {
            Ok(crate::state::move_resource(state, from, to)?)
        })
        .await
    }

    /// Locks `tenants` (in order), applies `edit` to each one's state, and writes them
    /// all only when every edit succeeded. A tenant without state has nothing to edit.
    async fn edit_states(
        &self,
        tenants: &BTreeSet<TenantId>,
        operation: &str,
        dry_run: bool,
        mut edit: impl FnMut(&mut TenantState) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.settled(async {
            let specs = self.specs().await?;
            let names: Vec<TenantId> = tenants.iter().cloned().collect();
            let (mut runs, _) = self.lock_tenants(&specs, &names, operation).await?;
            for run in runs.values_mut() {
                edit(&mut run.state)?;
            }
            if dry_run {
                return Ok(());
            }
            let store = self.state_store().await?;
            for run in runs.values_mut() {
                store.write(&run.lock, &mut run.state).await?;
            }
            Ok(())
        })
        .await
    }

    /// Moves every tenant's state to the `to` backend from the other one (both
    /// configured as platform.toml says), with serials, lineages and history, under
    /// every tenant's lock; nothing is moved when a tenant is locked or the destination
    /// holds a diverging state (see [`crate::state::migrate`]).
    pub async fn migrate_state(&self, to: StateBackendKind) -> Result<MigrationReport, Error> {
        let platform = crate::spec::load_platform(&self.config.specs_dir)?;
        let from = match to {
            StateBackendKind::Local => StateBackendKind::Postgres,
            StateBackendKind::Postgres => StateBackendKind::Local,
        };
        let source = StateStore::open_kind(
            from,
            &platform,
            &self.config.state_dir,
            &self.config.environment,
        )?;
        let target = StateStore::open_kind(
            to,
            &platform,
            &self.config.state_dir,
            &self.config.environment,
        )?;
        let report =
            crate::state::migrate(&source, &target, &self.lock_request("state migrate")).await;
        source.settle().await;
        target.settle().await;
        Ok(report?)
    }

    /// Writes every tenant's state again under the current `[encryption]` key (see
    /// [`StateStore::rekey`]); the tenants written.
    pub async fn rekey_states(&self) -> Result<Vec<TenantId>, Error> {
        let store = self.state_store().await?;
        Ok(store.rekey(&self.lock_request("state rekey")).await?)
    }
}

/// Whether the plan of one tenant was made against `current`, its state now (`None`:
/// the tenant has no state): else the stale-plan error, for a saved plan must never be
/// applied over changes it did not see.
pub fn check_plan_fresh(
    plan: &crate::plan::TenantPlan,
    current: Option<&TenantState>,
) -> Result<(), Error> {
    let current = current.map(|s| (s.serial, s.lineage));
    let planned = plan.state_serial.zip(plan.state_lineage);
    if current == planned {
        return Ok(());
    }
    let describe = |s: Option<(u64, uuid::Uuid)>| match s {
        None => "no state".to_owned(),
        Some((serial, lineage)) => format!("serial {serial} of lineage {lineage}"),
    };
    Err(Error::StalePlan {
        tenant: plan.tenant.clone(),
        planned: describe(planned),
        current: describe(current),
    })
}

/// Refuses a state that names another tenant's objects (see [`crate::plan::identity`]):
/// a state edited to name another tenant's role must not make apply drop it.
fn check_identity(store: &StateStore, specs: &Specs, state: &TenantState) -> Result<(), Error> {
    let tenant = &state.tenant;
    let mismatches = identity::state_mismatches(state, specs.tenants.get(tenant), &specs.platform);
    if mismatches.is_empty() {
        return Ok(());
    }
    Err(Error::NotTheTenants {
        what: store.state_name(tenant),
        tenant: tenant.clone(),
        mismatches,
    })
}

/// The specs of every tenant provisioned from a request (none before the registry
/// exists). The lifecycle writes them (`tenantform.tenant_specs`, a table of its
/// registry); the engine only reads them, so that it does not depend on the lifecycle.
async fn registered_specs(client: &tokio_postgres::Client) -> Result<Vec<RegisteredSpec>, String> {
    let failed = |e: tokio_postgres::Error| crate::connect::postgres::db_error(&e).to_string();
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('tenantform.tenant_specs') IS NOT NULL",
            &[],
        )
        .await
        .map_err(failed)?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT tenant, source, exported_at IS NOT NULL FROM tenantform.tenant_specs ORDER BY tenant",
            &[],
        )
        .await
        .map_err(failed)?;
    Ok(rows
        .iter()
        .map(|r| RegisteredSpec {
            tenant: r.get(0),
            source: r.get(1),
            exported: r.get(2),
        })
        .collect())
}

/// Refuses a rotation that would not happen: of a tenant without a spec (it has no
/// blueprint to keep secrets for), outside the run's tenants, or in a destroy.
fn check_rotation(specs: &Specs, tenants: &[TenantId], options: &PlanOptions) -> Result<(), Error> {
    for tenant in &options.rotate {
        let why = if options.mode == PlanMode::Destroy {
            "a destroy deletes the tenant's secrets; rotate in a plan or apply without --destroy"
                .to_owned()
        } else if !specs.tenants.contains_key(tenant) {
            format!("there is no specs/tenants/{tenant}.toml, so no tenant to rotate secrets of")
        } else if !tenants.contains(tenant) {
            format!("the run is limited with --tenant and leaves it out; add --tenant {tenant}")
        } else {
            continue;
        };
        return Err(Error::RotateTarget {
            tenant: tenant.clone(),
            why,
        });
    }
    Ok(())
}

/// One tenant's plan: its blueprint diffed against its state and what was read back.
fn plan_one(
    specs: &Specs,
    id: &TenantId,
    state: Option<&TenantState>,
    refreshed: &BTreeMap<String, Option<Attributes>>,
    options: &PlanOptions,
    replace: &BTreeSet<ResourceAddress>,
) -> Result<crate::plan::TenantPlan, Error> {
    let spec = specs.tenants.get(id);
    let blueprint = spec.map(|s| tenant_blueprint(s, &specs.platform));
    let mut tenant_plan = plan_tenant(
        TenantInput {
            tenant: id,
            spec,
            blueprint: blueprint.as_ref(),
            state,
            refreshed,
            rotate: options.rotate.contains(id),
        },
        options.mode,
        replace,
    )?;
    if options.mode == PlanMode::Normal
        && let Some(spec) = spec
    {
        let applied = state.and_then(|s| s.applied_spec.as_ref());
        tenant_plan.cost = CostEstimate::of(spec, &specs.platform, applied);
    }
    Ok(tenant_plan)
}

/// What `policies` say about `plan`. Their input is the plan's JSON view, as
/// `plan --json` prints it, without the results of an earlier evaluation.
fn evaluate_policies(policies: &PolicySet, plan: &Plan) -> Result<PolicyReport, Error> {
    let mut input = crate::plan::render::json(plan);
    if let Some(doc) = input.as_object_mut() {
        doc.remove("policy");
        doc.remove("policy_results");
    }
    Ok(policies.evaluate(&input)?)
}

/// `plan` with the results of `policies` in it, if there are policies.
fn with_policy_results(policies: Option<&PolicySet>, mut plan: Plan) -> Result<Plan, Error> {
    if let Some(policies) = policies {
        plan.policy = Some(evaluate_policies(policies, &plan)?);
    }
    Ok(plan)
}

/// The plan of `tenants`, checked for dependency cycles.
fn assemble(options: &PlanOptions, tenants: Vec<crate::plan::TenantPlan>) -> Result<Plan, Error> {
    let plan = Plan {
        format_version: PLAN_FORMAT_VERSION.into(),
        created_at: Utc::now(),
        mode: options.mode,
        refreshed: options.refresh,
        tenants,
        policy: None,
        aws_account_id: None,
    };
    ActionGraph::build(&plan)?;
    Ok(plan)
}

/// The providers a platform file describes, with the PostgreSQL admin connection and
/// the AWS clients given (a library user or a test may point them elsewhere, or wrap
/// the result with [`ProviderSet::map`]).
///
/// The one place that builds a provider per resource family: a family added to the
/// table in `resource/mod.rs` does not compile until it has its arm here.
pub fn platform_providers(
    platform: &crate::spec::PlatformSpec,
    pg: PostgresConfig,
    aws: Arc<AwsClients>,
    parallelism: usize,
    environment: &Environment,
) -> Result<ProviderSet, Error> {
    let pg_config = pg.clone();
    let pg = Arc::new(PostgresProvider::new(pg, parallelism.clamp(1, 32))?);
    let mut set = ProviderSet::new();
    for &family in Family::ALL {
        let provider: Arc<dyn Provider> = match family {
            Family::Postgres => pg.clone(),
            Family::S3 => Arc::new(S3Provider::new(aws.clone())),
            Family::Iam => Arc::new(IamProvider::new(aws.clone())),
            Family::Elasticache => Arc::new(ElasticacheProvider::new(
                aws.clone(),
                Duration::from_secs(platform.aws.cache_wait_timeout_secs),
            )),
            Family::Settings => Arc::new(TenantSettingsProvider::new(pg.clone())),
            Family::Redis => Arc::new(RedisProvider::new(RedisConfig::resolve(
                &platform.redis,
                environment,
            )?)?),
            // The vector namespace's provider is the backend the platform names.
            Family::Vector => match platform.vector.backend {
                VectorBackend::Pgvector => Arc::new(PgvectorProvider::new(pg.clone())),
            },
            Family::Secret => Arc::new(SecretProvider::new(
                aws.clone(),
                pg_config.clone(),
                RedisConfig::resolve(&platform.redis, environment)?,
            )),
            Family::Dashboard => Arc::new(DashboardProvider::new(
                &platform.dashboards.grafana_token_env,
                environment,
            )?),
        };
        set.register(family.types(), provider);
    }
    Ok(set)
}

/// The identity of a real object, as `import` takes it: the dotted join of whichever of
/// its `bucket`, `schema`, `table`, `name` and `role` attributes it has, e.g.
/// `tenant_acme` for a schema, `tenant_acme.documents` for a table, `rag-acme-documents`
/// for a bucket.
pub fn import_id(resource: &crate::resource::Resource) -> String {
    ["bucket", "schema", "table", "name", "role"]
        .iter()
        .filter_map(|k| attr_str(&resource.attributes, k))
        .collect::<Vec<_>>()
        .join(".")
}

/// A read-back, completed with the attributes the provider cannot read (kept from state).
fn merge_unreadable(mut read: Attributes, recorded: &ResourceState) -> Attributes {
    let s = schema(recorded.resource_type);
    for a in s.attributes.iter().filter(|a| !a.readable) {
        if let Some(v) = recorded.attributes.get(a.name) {
            read.insert(a.name.to_owned(), v.clone());
        }
    }
    read
}
