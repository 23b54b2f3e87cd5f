//! Typed, validated input: `platform.toml` and one file per tenant.
//!
//! Loading reads every file, checks everything it can and returns either a complete,
//! consistent [`Specs`] or every problem found ([`SpecErrors`]). Nothing downstream
//! runs on a spec with a problem, so bad input never half-applies.
//!
//! Tenants also come from the registry (requested through `tenantform request`): the
//! engine reads their TOML text from the platform database and hands it to
//! [`Specs::add_registered`], which checks it exactly like a file. A file of the same id
//! wins.
//!
//! Architecture invariant: this module reads files but never touches state or the
//! network; a spec is valid or not on its own.

mod diagnostic;
pub mod limits;
mod platform;
mod tenant;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diagnostic::{
    SourceMap, SpecDiagnostic, SpecErrors, ValidationReport, is_unprintable, line_and_column,
    printable, printable_lines,
};
pub use platform::{
    ApprovalRules, AwsSettings, DashboardSettings, DataClassification, EncryptionSettings,
    KeyProviderKind, LlmSettings, Naming, NotificationSettings, PlatformInfo, PlatformSpec,
    PolicySettings, RateLimits, Region, RunExecutor, RunSettings, STANDARD_IA_DAYS,
    StateBackendKind, StateSettings, Tier, TierFeatures, ValidationSettings, VectorBackend,
    VectorDistance, VectorSettings, WEBHOOK_EVENTS, WebhookSettings, render_name, resolve_path,
};
pub use tenant::TenantSpec;

use crate::resource::TenantId;

/// The platform and every tenant, validated together.
#[derive(Clone, Debug)]
pub struct Specs {
    pub dir: PathBuf,
    pub platform: PlatformSpec,
    pub tenants: BTreeMap<TenantId, TenantSpec>,
}

impl Specs {
    /// Loads `DIR/platform.toml` and `DIR/tenants/*.toml`.
    pub fn load(dir: &Path) -> Result<Specs, SpecErrors> {
        let platform = load_platform(dir)?;

        let tenants_dir = dir.join("tenants");
        let mut files = Vec::new();
        match std::fs::read_dir(&tenants_dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "toml") {
                        files.push(path);
                    }
                }
            }
            // No tenants directory: a platform with no tenants yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SpecErrors(vec![SpecDiagnostic::new(
                    &tenants_dir,
                    format!("cannot list the directory: {e}"),
                    "check that it exists and is readable",
                )]));
            }
        }
        files.sort();

        let mut problems = Vec::new();
        let mut parsed_files = Vec::new();
        for path in files {
            let source = match read(&path) {
                Ok(s) => s,
                Err(d) => {
                    problems.push(*d);
                    continue;
                }
            };
            match TenantSpec::parse(&path, &source, &platform) {
                Ok(parsed) => parsed_files.push((path, source, parsed)),
                Err(mut ds) => problems.append(&mut ds),
            }
        }
        // Files named after their id first: when a file was copied and its id left
        // unchanged, the copy is the one reported as declaring a duplicate.
        let named_after_id = |path: &Path, id: &TenantId| {
            path.file_stem().and_then(|s| s.to_str()) == Some(id.as_str())
        };
        parsed_files.sort_by_key(|(path, _, parsed)| !named_after_id(path, &parsed.spec.id));

        let mut tenants = BTreeMap::new();
        let mut declared_in: BTreeMap<TenantId, (PathBuf, String, usize)> = BTreeMap::new();
        for (path, source, parsed) in parsed_files {
            let id = parsed.spec.id.clone();
            if let Some((first, first_src, first_offset)) = declared_in.get(&id) {
                let (line, _) = line_and_column(first_src, *first_offset);
                problems.push(
                    SpecDiagnostic::new(
                        &path,
                        format!(
                            "tenant id {:?} is already declared in {}:{line}",
                            id.as_str(),
                            first.display()
                        ),
                        "give every tenant its own id, and name its file after it",
                    )
                    .field("id")
                    .at(&source, parsed.id_offset),
                );
                continue;
            }
            if !named_after_id(&path, &id) {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                problems.push(
                    SpecDiagnostic::new(
                        &path,
                        format!(
                            "tenant id {:?} does not match the file name {stem:?}",
                            id.as_str()
                        ),
                        format!("rename the file to {id}.toml or set id = {stem:?}"),
                    )
                    .field("id")
                    .at(&source, parsed.id_offset),
                );
                continue;
            }
            declared_in.insert(id.clone(), (path.clone(), source, parsed.id_offset));
            tenants.insert(id, parsed.spec);
        }
        if problems.is_empty() {
            Ok(Specs {
                dir: dir.to_owned(),
                platform,
                tenants,
            })
        } else {
            Err(SpecErrors(problems))
        }
    }

    /// Adds the tenants requested through the registry, each checked like a file.
    ///
    /// A tenant file of the same id wins: the files (in git) are the reviewed truth, and
    /// `tenantform request export` moves a registered tenant there. A registered tenant
    /// that was exported but has no file in this directory is an error, not a silent
    /// fallback: this machine's specs are not the ones the tenant now lives in, and
    /// planning from the registry's older copy would undo what was changed in git.
    pub fn add_registered(&mut self, registered: &[RegisteredSpec]) -> Result<(), SpecErrors> {
        let mut problems = Vec::new();
        for r in registered {
            let origin = r.origin();
            if let Ok(id) = r.tenant.parse::<TenantId>()
                && self.tenants.contains_key(&id)
            {
                continue;
            }
            if r.exported {
                problems.push(SpecDiagnostic::new(
                    &origin,
                    format!(
                        "tenant {} was exported to specs/tenants/{}.toml, which is not in {}",
                        r.tenant,
                        r.tenant,
                        self.dir.display()
                    ),
                    "run with the specs directory the tenant was exported to (its git checkout)",
                ));
                continue;
            }
            match TenantSpec::parse(&origin, &r.source, &self.platform) {
                Ok(parsed) if parsed.spec.id.as_str() == r.tenant => {
                    self.tenants.insert(parsed.spec.id.clone(), parsed.spec);
                }
                Ok(parsed) => problems.push(
                    SpecDiagnostic::new(
                        &origin,
                        format!(
                            "the registry's spec of tenant {} declares id {:?}",
                            r.tenant,
                            parsed.spec.id.as_str()
                        ),
                        "the registry was changed by hand: restore the id",
                    )
                    .field("id"),
                ),
                Err(mut ds) => problems.append(&mut ds),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors(problems))
        }
    }

    /// The tier of a validated tenant.
    pub fn tier_of(&self, tenant: &TenantSpec) -> &Tier {
        &self.platform.tiers[&tenant.tier]
    }
}

/// Loads `DIR/platform.toml` alone: what is needed to reach the platform (its state,
/// its database) when the tenants' specs do not matter.
pub fn load_platform(dir: &Path) -> Result<PlatformSpec, SpecErrors> {
    let platform_path = dir.join("platform.toml");
    let source = read(&platform_path).map_err(|d| SpecErrors(vec![*d]))?;
    PlatformSpec::parse(&platform_path, &source).map_err(SpecErrors)
}

/// A tenant spec kept in the registry: the TOML text a tenant file would hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredSpec {
    pub tenant: String,
    pub source: String,
    /// Written to `specs/tenants/<id>.toml` by `tenantform request export`: from then on
    /// the file is the tenant's spec.
    pub exported: bool,
}

impl RegisteredSpec {
    /// How messages name it (in place of a file path).
    pub fn origin(&self) -> PathBuf {
        PathBuf::from(format!("registry:tenantform.tenant_specs/{}", self.tenant))
    }
}

fn read(path: &Path) -> Result<String, Box<SpecDiagnostic>> {
    std::fs::read_to_string(path).map_err(|e| {
        let fix = if e.kind() == std::io::ErrorKind::NotFound {
            "create it, or point --specs at the directory that holds platform.toml"
        } else {
            "check the file's permissions and that it is UTF-8 text"
        };
        Box::new(SpecDiagnostic::new(
            path,
            format!("cannot read the file: {e}"),
            fix,
        ))
    })
}
