//! Policy as code over plans: Rego policies, evaluated with an embedded OPA engine
//! (`regorus`), that warn about a plan or refuse it.
//!
//! # What a policy is
//!
//! A `.rego` file (Rego v1 syntax, as OPA 1.x reads it) in the policy directory
//! (`tenantform plan --policy DIR`, or `[policy] dir` in platform.toml). Files ending
//! in `_test.rego` (OPA's unit tests) are not loaded. Every file's package is
//! evaluated with `input` set to the plan's JSON view, the very document
//! `tenantform plan --json` prints (so a policy written against it can be tried with
//! `opa eval -i plan.json` or `conftest test plan.json` as well).
//!
//! # How a policy says how much it matters
//!
//! By the rule it writes to, as conftest does:
//! - `deny` (a set of messages): **mandatory**. A plan with a mandatory violation
//!   exits 1, and `apply` refuses it before anything is changed.
//! - `warn`: **advisory**. Shown in the plan; the plan and apply go on.
//!
//! A message is a string, or an object with a `msg` string (and optionally `tenant`,
//! the tenant it is about). Anything else is shown as its JSON text.
//!
//! # Guarantees
//! - Loading checks every file: a file that does not parse is an error naming the
//!   file and the line (never a panic), and nothing is evaluated.
//! - Evaluation is bounded in time ([`EVALUATION_TIME_LIMIT`]) and never panics the
//!   process: a panic inside the engine becomes a [`PolicyError`].
//! - Results are sorted (level, package, message), so a report does not depend on
//!   the order of files on disk.
//! - No I/O besides reading the policy files in [`PolicySet::load`].

use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How long all policies together may take over one plan.
pub const EVALUATION_TIME_LIMIT: Duration = Duration::from_secs(30);

/// How much a violation matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyLevel {
    /// From a `deny` rule: the plan exits 1 and apply refuses.
    Mandatory,
    /// From a `warn` rule: shown, nothing is refused.
    Advisory,
}

impl PolicyLevel {
    /// The rule a policy writes messages of this level to.
    pub fn rule(self) -> &'static str {
        match self {
            PolicyLevel::Mandatory => "deny",
            PolicyLevel::Advisory => "warn",
        }
    }
}

impl fmt::Display for PolicyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyLevel::Mandatory => "mandatory",
            PolicyLevel::Advisory => "advisory",
        })
    }
}

/// One message of one policy about a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyViolation {
    /// The package, without `data.` (`tenantform.gold_protected`).
    pub policy: String,
    /// The file(s) declaring that package, relative to the policy directory.
    pub files: Vec<String>,
    pub level: PolicyLevel,
    pub message: String,
    /// The tenant the message names, when the policy said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.policy,
            self.files.join(", "),
            self.message
        )
    }
}

/// What the policies said about one plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReport {
    /// The policy directory, as given.
    pub dir: PathBuf,
    /// Every file evaluated, relative to `dir`, sorted.
    pub files: Vec<String>,
    /// Sorted: mandatory first, then by package and message.
    pub results: Vec<PolicyViolation>,
}

impl PolicyReport {
    /// The violations of mandatory policies: any of them refuses the plan.
    pub fn mandatory(&self) -> impl Iterator<Item = &PolicyViolation> {
        self.results
            .iter()
            .filter(|v| v.level == PolicyLevel::Mandatory)
    }

    /// The violations of advisory policies: shown, but they do not refuse the plan.
    pub fn advisory(&self) -> impl Iterator<Item = &PolicyViolation> {
        self.results
            .iter()
            .filter(|v| v.level == PolicyLevel::Advisory)
    }

    /// `Err` when a mandatory policy is violated: the plan must not be applied.
    pub fn enforce(&self) -> Result<(), PolicyError> {
        let violations: Vec<String> = self.mandatory().map(|v| v.to_string()).collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Mandatory {
                dir: self.dir.clone(),
                violations,
            })
        }
    }

    /// `3 policy files: 1 mandatory violation, 2 advisory warnings`.
    pub fn summary(&self) -> String {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{}: {}, {}",
            plural(self.files.len(), "policy file", "policy files"),
            plural(
                self.mandatory().count(),
                "mandatory violation",
                "mandatory violations"
            ),
            plural(
                self.advisory().count(),
                "advisory warning",
                "advisory warnings"
            ),
        )
    }
}

/// Policies that cannot be loaded or evaluated, or that refuse a plan.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    /// The policy directory does not exist.
    #[error(
        "policy directory {} does not exist or is not a directory", dir.display()
    )]
    NoDirectory { dir: PathBuf },
    /// The policy directory has no `.rego` file.
    #[error(
        "policy directory {} has no .rego file", dir.display()
    )]
    NoPolicies { dir: PathBuf },
    /// A policy file cannot be read.
    #[error("cannot read policy {}: {detail}", path.display())]
    Read { path: PathBuf, detail: String },
    /// A policy file is not valid Rego; nothing was evaluated.
    #[error("policy {} is not valid Rego (v1, as OPA 1.x reads it); nothing was evaluated: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
    /// A policy failed while evaluating the plan.
    #[error("policy {policy} ({files}) failed while evaluating the plan; fix the policy: {detail}")]
    Evaluate {
        policy: String,
        files: String,
        detail: String,
    },
    /// Mandatory policies refuse the plan; nothing was changed.
    #[error("{} mandatory policy violation{} (policies in {}); nothing was changed:\n  {}",
        violations.len(), if violations.len() == 1 { "" } else { "s" }, dir.display(), violations.join("\n  "))]
    Mandatory {
        dir: PathBuf,
        violations: Vec<String>,
    },
}

/// One package and the files that declare it.
#[derive(Clone)]
struct Package {
    /// `data.tenantform.gold_protected`.
    path: String,
    files: Vec<String>,
}

/// The policies of one directory, parsed and ready to evaluate plans.
#[derive(Clone)]
pub struct PolicySet {
    dir: PathBuf,
    files: Vec<String>,
    packages: Vec<Package>,
    engine: regorus::Engine,
}

impl fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySet")
            .field("dir", &self.dir)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl PolicySet {
    /// Reads and parses every `.rego` file under `dir` (recursively, `_test.rego`
    /// files left out).
    pub fn load(dir: &Path) -> Result<PolicySet, PolicyError> {
        if !dir.is_dir() {
            return Err(PolicyError::NoDirectory {
                dir: dir.to_owned(),
            });
        }
        let mut paths = Vec::new();
        collect_rego_files(dir, &mut paths)?;
        paths.sort();
        if paths.is_empty() {
            return Err(PolicyError::NoPolicies {
                dir: dir.to_owned(),
            });
        }
        let mut sources = Vec::with_capacity(paths.len());
        for path in &paths {
            let source = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            let name = path
                .strip_prefix(dir)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned();
            sources.push((path.clone(), name, source));
        }
        Self::from_sources(dir, sources)
    }

    /// Parses policies given as (path shown in errors, name relative to `dir`, source).
    fn from_sources(
        dir: &Path,
        sources: Vec<(PathBuf, String, String)>,
    ) -> Result<PolicySet, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVALUATION_TIME_LIMIT,
            check_interval: NonZeroU32::new(256).expect("non-zero"),
        });
        let mut packages: Vec<Package> = Vec::new();
        let mut files = Vec::with_capacity(sources.len());
        for (path, name, source) in sources {
            // The path given to the engine is the one its messages start with
            // (`PATH:LINE:COLUMN: error: ...`).
            let shown = path.display().to_string();
            let package = guarded(|| engine.add_policy(shown.clone(), source))
                .and_then(|r| r.map_err(|e| one_line(&format!("{e:#}"))))
                .map_err(|detail| PolicyError::Parse {
                    path: path.clone(),
                    detail,
                })?;
            match packages.iter_mut().find(|p| p.path == package) {
                Some(p) => p.files.push(name.clone()),
                None => packages.push(Package {
                    path: package,
                    files: vec![name.clone()],
                }),
            }
            files.push(name);
        }
        Ok(PolicySet {
            dir: dir.to_owned(),
            files,
            packages,
            engine,
        })
    }

    /// Evaluates every package's `deny` and `warn` rules over `input` (a plan's
    /// JSON view).
    pub fn evaluate(&self, input: &Value) -> Result<PolicyReport, PolicyError> {
        let mut engine = self.engine.clone();
        let input_text = input.to_string();
        let mut results = Vec::new();
        let mut input_set = false;
        for package in &self.packages {
            let policy = package
                .path
                .strip_prefix("data.")
                .unwrap_or(&package.path)
                .to_owned();
            let failed = |detail: String| PolicyError::Evaluate {
                policy: policy.clone(),
                files: package.files.join(", "),
                detail,
            };
            if !input_set {
                engine
                    .set_input_json(&input_text)
                    .map_err(|e| failed(format!("the plan could not be given as input: {e:#}")))?;
                input_set = true;
            }
            for level in [PolicyLevel::Mandatory, PolicyLevel::Advisory] {
                let query = format!("{}.{}", package.path, level.rule());
                let outcome = guarded(|| engine.eval_query(query, false))
                    .and_then(|r| r.map_err(|e| format!("{e:#}")))
                    .map_err(&failed)?;
                for result in outcome.result {
                    for expression in result.expressions {
                        let value = serde_json::to_value(&expression.value)
                            .map_err(|e| failed(e.to_string()))?;
                        for (message, tenant) in messages(&value, &policy, level) {
                            results.push(PolicyViolation {
                                policy: policy.clone(),
                                files: package.files.clone(),
                                level,
                                message,
                                tenant,
                            });
                        }
                    }
                }
            }
        }
        results.sort_by(|a, b| {
            (a.level, &a.policy, &a.message).cmp(&(b.level, &b.policy, &b.message))
        });
        results.dedup();
        Ok(PolicyReport {
            dir: self.dir.clone(),
            files: self.files.clone(),
            results,
        })
    }
}

/// Runs `f`, turning a panic inside the policy engine into an error message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("the policy engine failed: {what}")
    })
}

/// The engine's diagnostic (`--> FILE:LINE:COL`, the source line, a caret, then
/// `error: ...`) as one line, `FILE:LINE:COL: ...`, for an error message.
fn one_line(diagnostic: &str) -> String {
    let lines: Vec<&str> = diagnostic.lines().map(str::trim).collect();
    let location = lines.iter().find_map(|l| l.strip_prefix("--> "));
    let error = lines.iter().find_map(|l| l.strip_prefix("error: "));
    match (location, error) {
        (Some(location), Some(error)) => format!("{location}: {error}"),
        _ => lines
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The messages in the value of a `deny` or `warn` rule, with the tenant each names.
fn messages(value: &Value, policy: &str, level: PolicyLevel) -> Vec<(String, Option<String>)> {
    let one = |v: &Value| -> Option<(String, Option<String>)> {
        match v {
            Value::String(s) => Some((s.clone(), None)),
            Value::Object(o) => {
                let tenant = o.get("tenant").and_then(Value::as_str).map(str::to_owned);
                let msg = match o.get("msg") {
                    Some(Value::String(s)) => s.clone(),
                    _ => v.to_string(),
                };
                Some((msg, tenant))
            }
            Value::Bool(false) | Value::Null => None,
            Value::Bool(true) => Some((format!("{policy}.{} is true", level.rule()), None)),
            other => Some((other.to_string(), None)),
        }
    };
    match value {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

fn collect_rego_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PolicyError> {
    let read_err = |e: std::io::Error| PolicyError::Read {
        path: dir.to_owned(),
        detail: e.to_string(),
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_dir() {
            collect_rego_files(&path, out)?;
        } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && name.ends_with(".rego")
            && !name.ends_with("_test.rego")
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
