//! Fuzz targets for every loader of outside input: a tenant spec, the platform file, a
//! state file, a saved plan and a Terraform state to adopt from. Each asserts, for any
//! input: no panic, and either a value or an error that names the file; the state and
//! plan loaders never change the file they read; no error shows a control character as
//! it is.
//!
//! Under `cargo test` / `cargo nextest` each target is a bounded property test (bolero's
//! random engine): the committed seed corpus in `tests/__fuzz__/<target>/corpus/`, then
//! random inputs for `FUZZ_SECONDS` seconds (or `BOLERO_RANDOM_TEST_TIME_MS`). Half of
//! the random inputs are seeds with random edits (bytes replaced, inserted, removed, or
//! tokens that have broken parsers before), so that they get past the first line.
//! `scripts/fuzz SECONDS` runs them longer (bolero's random engine, or libFuzzer through
//! cargo-bolero with `FUZZ_ENGINE=libfuzzer`).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tenantform::plan::identity::TenantIdentity;
use tenantform::plan::{PlanMode, TenantInput, plan_tenant};
use tenantform::spec::{PlatformSpec, Specs, TenantSpec, is_unprintable};
use tenantform::state::LocalStore;
use tenantform::{Engine, EngineConfig, TenantId};

/// Seconds of random inputs per target in the bounded run.
const FUZZ_SECONDS: u64 = 3;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example_specs() -> &'static Specs {
    static SPECS: OnceLock<Specs> = OnceLock::new();
    SPECS.get_or_init(|| Specs::load(&repo().join("specs")).expect("the example specs are valid"))
}

/// The committed corpus of a target: the seeds that random edits start from.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = repo().join("tests/__fuzz__").join(target).join("corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Tokens that have broken parsers and services before.
const TOKENS: &[&str] = &[
    "\\u0000",
    "\0",
    "\u{1b}[31m",
    "\u{202E}",
    "1e309",
    "1.5",
    "-1",
    "9223372036854775808",
    "0",
    "[]",
    "{}",
    "\"\"",
    "\"",
    "=",
    "\n",
    "[tiers.\"\"]",
    "pg_",
    "../../../../etc",
    "/etc",
    "{id}",
    "\"tenant_other\"",
    "null",
    "true",
    "\"depends_on\": [\"acme/postgres_schema.main\"]",
    "\"format_version\": 99",
];

/// The input of one iteration: the bytes themselves, or (first byte >= 0x80) a seed with
/// the edits the remaining bytes describe.
fn input<'a>(data: &'a [u8], seeds: &[Vec<u8>]) -> Cow<'a, [u8]> {
    let Some((&mode, rest)) = data.split_first() else {
        return Cow::Borrowed(data);
    };
    if mode < 0x80 {
        return Cow::Borrowed(data);
    }
    let Some((&which, edits)) = rest.split_first() else {
        return Cow::Borrowed(data);
    };
    let mut doc = seeds[usize::from(which) % seeds.len()].clone();
    for e in edits.chunks_exact(4) {
        let at = (usize::from(e[1]) << 8 | usize::from(e[2])) % (doc.len() + 1);
        match e[0] % 4 {
            0 if at < doc.len() => doc[at] = e[3],
            1 => doc.insert(at, e[3]),
            2 if at < doc.len() => {
                doc.remove(at);
            }
            _ => {
                let token = TOKENS[usize::from(e[3]) % TOKENS.len()].as_bytes();
                doc.splice(at..at, token.iter().copied());
            }
        }
    }
    Cow::Owned(doc)
}

/// Runs one target: every seed as it is, then what `fuzz` feeds it (bolero's engine,
/// started in the test itself so that the target has the test's name), through the
/// seed editor; prints how many inputs it tried.
fn run_target(
    target: &str,
    check: impl FnMut(&[u8]),
    fuzz: impl FnOnce(&(dyn Fn(&[u8]) + std::panic::RefUnwindSafe)),
) {
    let seeds = seeds(target);
    let executions = AtomicU64::new(0);
    let started = Instant::now();
    let check = std::sync::Mutex::new(check);
    let step = |data: &[u8]| {
        executions.fetch_add(1, Ordering::Relaxed);
        let doc = input(data, &seeds);
        (check.lock().unwrap_or_else(|e| e.into_inner()))(&doc);
    };
    for s in &seeds {
        step(s);
    }
    fuzz(&step);
    println!(
        "fuzz target {target}: {} executions in {:.1} s ({} seeds)",
        executions.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        seeds.len()
    );
}

/// Bolero's engine over `step`, bounded to [`FUZZ_SECONDS`] under `cargo test`.
macro_rules! bolero_engine {
    () => {
        |step| {
            bolero::check!()
                .with_test_time(Duration::from_secs(FUZZ_SECONDS))
                .with_max_len(16 * 1024)
                .for_each(|data: &[u8]| step(data))
        }
    };
}

/// An error's text: must name `path` and show no control character as it is.
#[track_caller]
fn assert_names_file(text: &str, path: &Path) {
    assert!(
        text.contains(&path.display().to_string()),
        "the error does not name {}: {text}",
        path.display()
    );
    assert!(
        !text.chars().any(|c| is_unprintable(c) && c != '\n'),
        "raw control character in: {text:?}"
    );
}

/// Diagnostics of a refused spec file: at least one, each naming `path`.
#[track_caller]
fn assert_diagnostics_name(problems: Vec<tenantform::spec::SpecDiagnostic>, path: &Path) {
    assert!(!problems.is_empty());
    for p in problems {
        assert_eq!(p.file, path);
        assert_names_file(&p.to_string(), path);
    }
}

/// Writes `doc` to `path`, loads it, and checks that an error names the file and that
/// loading left the file as it was; the loaded value, if any.
#[track_caller]
fn load_untouched<T, E: std::fmt::Display>(
    path: &Path,
    doc: &[u8],
    load: impl FnOnce() -> Result<T, E>,
) -> Option<T> {
    std::fs::write(path, doc).unwrap();
    let loaded = load();
    assert_eq!(
        std::fs::read(path).unwrap(),
        doc,
        "the loader changed the file"
    );
    match loaded {
        Ok(v) => Some(v),
        Err(e) => {
            assert_names_file(&e.to_string(), path);
            None
        }
    }
}

#[test]
fn tenant_spec() {
    let specs = example_specs();
    let path = Path::new("specs/tenants/fuzz.toml");
    run_target(
        "tenant_spec",
        |doc| {
            let source = String::from_utf8_lossy(doc);
            match TenantSpec::parse(path, &source, &specs.platform) {
                Ok(parsed) => {
                    // A valid spec gives a blueprint whose names are its own.
                    let bp = tenantform::blueprint::tenant_blueprint(&parsed.spec, &specs.platform);
                    assert!(!bp.resources.is_empty());
                    let identity =
                        TenantIdentity::of(&parsed.spec.id, Some(&parsed.spec), &specs.platform);
                    let own = identity.mismatches(
                        bp.resources
                            .iter()
                            .map(|r| (r.address.clone(), &r.attributes)),
                    );
                    assert!(own.is_empty(), "{own:?}");
                    assert!(!parsed.spec.name.chars().any(is_unprintable));
                }
                Err(problems) => assert_diagnostics_name(problems, path),
            }
        },
        bolero_engine!(),
    );
}

#[test]
fn platform_file() {
    let specs = example_specs();
    let path = repo().join("specs/platform.toml");
    run_target(
        "platform_file",
        |doc| {
            let source = String::from_utf8_lossy(doc);
            match PlatformSpec::parse(&path, &source) {
                Ok(platform) => {
                    // The example tenants against it: parsed or refused, never a panic.
                    for t in specs.tenants.values() {
                        let toml = format!(
                            "id = {:?}\nname = {:?}\ntier = {:?}\nregion = {:?}\nbudget_inr = {}\nowner_email = {:?}\ncost_center = {:?}\ndata_classification = {:?}\n",
                            t.id.as_str(),
                            t.name,
                            t.tier,
                            t.region,
                            t.budget_inr,
                            t.owner_email,
                            t.cost_center,
                            t.data_classification
                        );
                        if let Ok(parsed) = TenantSpec::parse(Path::new("t.toml"), &toml, &platform)
                        {
                            let _ =
                                tenantform::blueprint::tenant_blueprint(&parsed.spec, &platform);
                            let _ =
                                TenantIdentity::of(&parsed.spec.id, Some(&parsed.spec), &platform);
                        }
                    }
                }
                Err(problems) => assert_diagnostics_name(problems, &path),
            }
        },
        bolero_engine!(),
    );
}

#[test]
fn state_file() {
    let specs = example_specs();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let tenant: TenantId = "retail-chain".parse().unwrap();
    let path = store.path_of(&tenant);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = &specs.tenants[&tenant];
    let blueprint = tenantform::blueprint::tenant_blueprint(spec, &specs.platform);
    let identity = TenantIdentity::of(&tenant, Some(spec), &specs.platform);
    run_target(
        "state_file",
        |doc| {
            let Some(state) = load_untouched(&path, doc, || store.load(&tenant)) else {
                return;
            };
            let state = state.expect("the file exists");
            // What the engine does next with a state: check its names, plan it.
            let _ = identity.state_mismatches(&state);
            let no_refresh = Default::default();
            for mode in [PlanMode::Normal, PlanMode::Destroy] {
                let input = TenantInput {
                    tenant: &tenant,
                    spec: Some(spec),
                    blueprint: Some(&blueprint),
                    state: Some(&state),
                    refreshed: &no_refresh,
                    rotate: false,
                };
                if let Ok(p) = plan_tenant(input, mode, &Default::default()) {
                    let plan = tenantform::Plan {
                        format_version: tenantform::plan::PLAN_FORMAT_VERSION.into(),
                        created_at: chrono::Utc::now(),
                        mode,
                        refreshed: false,
                        policy: None,
                        aws_account_id: None,
                        tenants: vec![p],
                    };
                    let _ = tenantform::plan::graph::ActionGraph::build(&plan);
                }
            }
        },
        bolero_engine!(),
    );
}

#[test]
fn terraform_state() {
    use tenantform::Report;
    use tenantform::adopt::{
        AdoptOptions, AdoptionReport, TerraformState, conflicts, map_terraform_state,
    };
    let mut old_naming = example_specs().clone();
    old_naming.platform.naming.s3_bucket = "rag-docs-{id}".into();
    let source = "old.tfstate";
    run_target(
        "terraform_state",
        |doc| {
            let state = match TerraformState::parse(doc, source) {
                Ok(state) => state,
                Err(e) => return assert_names_file(&e.to_string(), Path::new(source)),
            };
            // What adopt does next: map onto the tenants, look for owners, report.
            for specs in [example_specs(), &old_naming] {
                let adoption = map_terraform_state(&state, source, specs, &AdoptOptions::default())
                    .expect("the default module address is valid");
                let _ = conflicts(&adoption, &[]);
                let report = AdoptionReport {
                    adoption,
                    plan: None,
                    dry_run: true,
                    committed: false,
                };
                let text = report.human(tenantform::report::Style { color: false });
                assert!(
                    !text.chars().any(|c| is_unprintable(c) && c != '\n'),
                    "raw control character in: {text:?}"
                );
                let _ = report.handover();
                let _ = report.json();
            }
        },
        bolero_engine!(),
    );
}

#[test]
fn saved_plan() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig {
        specs_dir: repo().join("specs"),
        state_dir: dir.path().join("state"),
        ..EngineConfig::default()
    });
    let path = dir.path().join("fuzz.plan");
    run_target(
        "saved_plan",
        |doc| {
            if let Some(plan) = load_untouched(&path, doc, || {
                engine.load_plan(&path).map_err(|e| e.to_string())
            }) {
                use tenantform::plan::render;
                let _ = render::human(&plan, render::Style { color: false });
                let _ = render::json(&plan);
                let _ = render::markdown(&plan);
            }
        },
        bolero_engine!(),
    );
}
